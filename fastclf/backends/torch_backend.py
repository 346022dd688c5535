"""PyTorch bodies: fp32 eager (the reference), bf16 and int8."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import VariantSpec


class TorchBody:
    """A sentence-transformers model run in PyTorch fp32 eager mode."""

    def __init__(self, body_dir: Path, spec: VariantSpec):
        from sentence_transformers import SentenceTransformer

        self.variant = spec.name
        self.model = SentenceTransformer(str(body_dir), device="cpu", local_files_only=True)
        self.model.eval()

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        with torch.inference_mode():
            out = self.model.encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(out, dtype=np.float32)


def load(body_dir: Path, spec: VariantSpec) -> TorchBody:
    if spec.name == "torch-fp32":
        return TorchBody(body_dir, spec)
    raise NotImplementedError(spec.name)


def export(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None:
    raise NotImplementedError(spec.name)
