"""Long texts: split a text longer than the body's window into windows of tokens, embed each,
and pool the window embeddings into one (mean weighted by tokens, re-normalized when the body
normalizes), so a review or an article is classified on all of its words.

The split happens on the text, before any runtime sees it: every variant (torch, ONNX,
OpenVINO) embeds the same pieces, and a text that fits the window is passed through
unchanged, so short texts cost nothing more. Windows are cut at token boundaries with the
body's own tokenizer (the ``tokenizers`` library, no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: at most this many windows of one text are embedded; a longer text gives evenly spaced windows
DEFAULT_MAX_CHUNKS = 16
LONG_TEXT_MODES = ("chunk", "truncate")


@dataclass(frozen=True)
class Pieces:
    """Texts cut into pieces: ``texts`` to embed, ``owner[i]`` the input each piece belongs to,
    ``weight[i]`` its number of tokens, and ``n_long`` how many inputs were split."""

    texts: list[str]
    owner: np.ndarray
    weight: np.ndarray
    n_inputs: int
    n_long: int


class Chunker:
    """Cuts texts longer than ``window`` tokens (special tokens excluded) into windows."""

    def __init__(self, tokenizer, window: int, *, max_chunks: int = DEFAULT_MAX_CHUNKS):
        """``tokenizer``: a ``tokenizers.Tokenizer``; it is copied, and the copy has truncation
        and padding off."""
        from tokenizers import Tokenizer

        if window < 8:
            raise ValueError(f"the window must be at least 8 tokens, got {window}")
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.window = int(window)
        self.max_chunks = int(max_chunks)

    def split(self, texts: Sequence[str]) -> Pieces:
        """Cut each text into pieces of at most ``window`` tokens; a text that fits stays whole."""
        pieces: list[str] = []
        owner: list[int] = []
        weight: list[int] = []
        # a token covers at least one character, so a text of at most `window` characters fits
        long_idx = [i for i, t in enumerate(texts) if len(t) > self.window]
        encodings = dict(zip(long_idx, self.tokenizer.encode_batch([texts[i] for i in long_idx],
                                                                   add_special_tokens=False)))
        n_long = 0
        for i, text in enumerate(texts):
            enc = encodings.get(i)
            if enc is None or len(enc.offsets) <= self.window:
                pieces.append(text)
                owner.append(i)
                weight.append(len(enc.offsets) if enc is not None else max(1, len(text.split())))
                continue
            n_long += 1
            offsets = enc.offsets
            starts = list(range(0, len(offsets), self.window))
            if len(starts) > self.max_chunks:  # evenly spaced windows over the whole text
                pick = np.linspace(0, len(starts) - 1, self.max_chunks).round().astype(int)
                starts = [starts[k] for k in sorted(set(pick.tolist()))]
            for s in starts:
                e = min(s + self.window, len(offsets))
                piece = text[offsets[s][0]: offsets[e - 1][1]]
                if piece.strip():
                    pieces.append(piece)
                    owner.append(i)
                    weight.append(e - s)
        return Pieces(pieces, np.asarray(owner, dtype=np.int64), np.asarray(weight, dtype=np.float64),
                      len(texts), n_long)

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Embeddings of ``texts``, ``encode`` run on the pieces and pooled per text."""
        pieces = self.split(texts)
        emb = encode(pieces.texts)
        return pool(emb, pieces)


def window_of(body) -> tuple[object, int] | None:
    """``(tokenizers.Tokenizer, window)`` of a body, the window being its max sequence length
    less the special tokens; None when the body has no fast tokenizer or no max length."""
    pipeline = getattr(body, "pipeline", None)
    if pipeline is not None:  # ONNX Runtime and OpenVINO bodies
        tokenizer, max_len = pipeline.tokenizer, pipeline.max_seq_length
    else:  # sentence-transformers bodies
        st_model = getattr(body, "model", None)
        tokenizer = getattr(getattr(st_model, "tokenizer", None), "backend_tokenizer", None)
        max_len = getattr(st_model, "max_seq_length", None)
    if tokenizer is None or not max_len:
        return None
    processor = tokenizer.post_processor
    specials = processor.num_special_tokens_to_add(False) if processor is not None else 0
    window = int(max_len) - specials
    return (tokenizer, window) if window >= 8 else None


def pool(emb: np.ndarray, pieces: Pieces) -> np.ndarray:
    """One embedding a text: the token-weighted mean of its pieces' embeddings, re-normalized
    when the pieces' embeddings are unit-length (the body normalizes)."""
    emb = np.asarray(emb, dtype=np.float32)
    if len(pieces.texts) == pieces.n_inputs:  # nothing was split
        return emb
    dim = emb.shape[1]
    sums = np.zeros((pieces.n_inputs, dim), dtype=np.float64)
    np.add.at(sums, pieces.owner, emb.astype(np.float64) * pieces.weight[:, None])
    totals = np.bincount(pieces.owner, weights=pieces.weight, minlength=pieces.n_inputs)
    out = sums / np.maximum(totals, 1e-12)[:, None]
    norms = np.linalg.norm(emb, axis=1)
    if len(norms) and np.allclose(norms, 1.0, atol=1e-3):
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)
