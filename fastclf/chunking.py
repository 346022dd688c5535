"""Long texts: cut into token windows before any runtime (every variant embeds the same pieces), each embedded,
then pooled (token-weighted mean, re-normalized when the body normalizes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: at most this many windows of one text are embedded; a longer text gives evenly spaced windows
DEFAULT_MAX_CHUNKS = 16
LONG_TEXT_MODES = ("chunk", "truncate")
#: characters a token covers at most before a text is cut (words average 4-6 characters a token)
CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class Pieces:
    """Pieces to embed, ``owner[i]`` the input of each, ``weight[i]`` its tokens; ``n_long`` inputs split,
    ``n_cut`` cut to :attr:`Chunker.max_chars` first."""

    texts: list[str]
    owner: np.ndarray
    weight: np.ndarray
    n_inputs: int
    n_long: int
    n_cut: int = 0


class Chunker:
    """Cuts texts to their first :attr:`max_chars` characters, then into windows of ``window`` tokens
    (special tokens excluded) with a copy of ``tokenizer``; ``split=False`` (``long_texts: truncate``) only cuts."""

    def __init__(self, tokenizer, window: int, *, max_chunks: int = DEFAULT_MAX_CHUNKS, split: bool = True):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.window = int(window)
        self.max_chunks = int(max_chunks)
        self.max_chars = self.max_chunks * self.window * CHARS_PER_TOKEN
        self.split_long = split
        self._warned = False

    def cut(self, texts: Sequence[str]) -> tuple[list[str], int]:
        """``texts`` cut to their first :attr:`max_chars` characters, and how many were cut (warned once)."""
        cut = [t[: self.max_chars] for t in texts]
        n_cut = sum(len(t) > self.max_chars for t in texts)
        if n_cut and not self._warned:
            self._warned = True
            logging.getLogger("fastclf").warning(
                "texts longer than %d characters are cut to their first %d (%d windows of %d tokens at most "
                "%d characters a token); said once", self.max_chars, self.max_chars, self.max_chunks,
                self.window, CHARS_PER_TOKEN)
        return cut, n_cut

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """The tokens each text costs (at least 1, at most ``max_chunks`` windows), a few texts at a time."""
        out: list[int] = []
        for i in range(0, len(texts), 32):
            encodings = self.tokenizer.encode_batch([t[:self.max_chars] for t in texts[i:i + 32]],
                                                    add_special_tokens=False)
            out += [max(1, min(len(e.ids), self.window * self.max_chunks)) for e in encodings]
        return out

    def split(self, texts: Sequence[str]) -> Pieces:
        """Each text in pieces of at most ``window`` tokens; beyond ``max_chunks`` windows, evenly spaced ones."""
        texts, n_cut = self.cut(texts)
        out: list[tuple[str, int, int]] = []  # (piece, its text, its tokens)
        # a token covers at least one character, so a text of at most `window` characters fits
        long_idx = [i for i, t in enumerate(texts) if len(t) > self.window]
        encodings = dict(zip(long_idx, self.tokenizer.encode_batch([texts[i] for i in long_idx],
                                                                   add_special_tokens=False)))
        n_long = 0
        for i, text in enumerate(texts):
            enc = encodings.get(i)
            if enc is None or len(enc.offsets) <= self.window:
                out.append((text, i, len(enc.offsets) if enc is not None else max(1, len(text.split()))))
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
                    out.append((piece, i, e - s))
        return Pieces([p for p, _, _ in out], np.array([o for _, o, _ in out], dtype=np.int64),
                      np.array([w for _, _, w in out], dtype=np.float64), len(texts), n_long, n_cut)

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Embeddings of ``texts``, ``encode`` run on the pieces and pooled per text."""
        if not self.split_long:
            return encode(self.cut(texts)[0])
        pieces = self.split(texts)
        return pool(encode(pieces.texts), pieces)


def window_of(body) -> tuple[object, int] | None:
    """A body's ``(tokenizers.Tokenizer, max length less special tokens)``, or None (no fast tokenizer or max)."""
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
    """One embedding a text: its pieces' token-weighted mean, re-normalized if they are unit-length."""
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
