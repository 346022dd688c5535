"""Static bodies: model2vec's distillation of the transformer into one vector a token, a text the normalized
mean of its tokens' vectors as ``StaticModel.encode`` computes it; exporting needs model2vec (``fastclf[static]``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastclf.backends import VariantSpec, publish
from fastclf.errors import missing_dependency

MAX_TOKENS = 512  # model2vec's default window


class StaticBody:
    """One vector a token, averaged over the text: batch-independent by construction (a lookup and a mean:
    no thread pool to size, so ``threads`` is not used)."""

    def __init__(self, body_dir: Path, spec: VariantSpec, threads: int | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.variant = spec.name
        folder = Path(body_dir) / Path(spec.files[0]).parent
        tensors = load_file(str(folder / "model.safetensors"))
        vectors = tensors["embeddings"].astype(np.float32)
        if "mapping" in tensors:  # one vector a token, as model2vec's token mapping and weights give it
            vectors = vectors[tensors["mapping"]]
        if "weights" in tensors:
            vectors = vectors * tensors["weights"].astype(np.float32)[:, None]
        self.vectors = vectors
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.normalize = bool(json.loads((folder / "config.json").read_text()).get("normalize", True))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        unk = json.loads(self.tokenizer.to_str())["model"].get("unk_token")
        self.unk_id = self.tokenizer.token_to_id(unk) if isinstance(unk, str) else None

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Float32 ``(n, dim)``: each text's mean token vector (zeros for a text without tokens)."""
        texts = list(texts)  # checked by the caller
        ids = [[i for i in e.ids if i != self.unk_id][:MAX_TOKENS]
               for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        counts = np.array([len(i) for i in ids], dtype=np.int64)
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        filled = counts > 0
        if filled.any():
            flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(counts.sum()))
            starts = np.concatenate(([0], np.cumsum(counts[filled])[:-1]))
            out[filled] = np.add.reduceat(self.vectors[flat], starts, axis=0) / counts[filled, None]
        if self.normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out


load = StaticBody


def export(body_dir: Path, spec: VariantSpec, texts: list[str]) -> None:
    """Distill the body into ``spec.files``' folder (model2vec, offline, from the local folder)."""
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise missing_dependency("model2vec", spec.extra) from exc
    with tempfile.TemporaryDirectory(prefix="fastclf-static-") as tmp:
        distill(model_name=str(body_dir), pca_dims=int(spec.option["pca_dims"])).save_pretrained(tmp)
        publish({body_dir / f: Path(tmp) / Path(f).name for f in spec.files}, "model2vec's distillation")
