"""Data and helpers shared by the tests.

SPORT, FOOD: a tiny two-class data set (6 texts a class; SPORT_EXTRA and FOOD_EXTRA add 2).
CALIBRATION: calibration texts for the static int8 exports (disjoint from conftest's TEXTS).
"""

from __future__ import annotations

from pathlib import Path

SPORT = ["the striker scored twice", "a late goal won the match", "the keeper saved a penalty",
         "the team lost the final", "fans cheered the winning goal", "the coach praised the defence"]
FOOD = ["the soup was too salty", "fresh bread and butter", "a spicy curry with rice",
        "the cake tasted of lemon", "grilled fish with herbs", "the pasta was overcooked"]
SPORT_EXTRA = ["a red card for a late tackle", "the league title was decided on goal difference"]
FOOD_EXTRA = ["a bowl of ramen with a soft egg", "cheese, olives and a glass of wine"]


def tiny_data(sport: list[str] = SPORT, food: list[str] = FOOD):
    """The SPORT/FOOD texts as labeled data."""
    from fastclf.data import LabeledData

    return LabeledData(sport + food, ["sport"] * len(sport) + ["food"] * len(food), source="tiny")


def train_tiny(body_dir: Path, data=None):
    """A classifier trained for one epoch on ``data`` (default: :func:`tiny_data`) with ``body_dir``."""
    from fastclf.training.trainer import TrainConfig, train

    config = TrainConfig(model=str(body_dir), num_epochs=1, head_c=1.0, show_progress=False)
    return train(tiny_data() if data is None else data, config).classifier


def fit_tiny_head(body):
    """A head fit on ``body``'s embeddings of :func:`tiny_data` (for a variant with its own head)."""
    import numpy as np

    from fastclf.head import LogisticHead

    data = tiny_data()
    return LogisticHead.fit(body.encode(data.texts), np.array([data.classes.index(c) for c in data.labels]), C=10.0)


def run(*args) -> tuple[int, str]:
    """Run the fastclf CLI in-process: (exit code, output)."""
    from click.testing import CliRunner

    from fastclf.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


CALIBRATION = [
    "An instant classic, with a score that lingers long after the credits.",
    "The script is a mess and the leads have no chemistry at all.",
    "Funny, touching and surprisingly smart about grief.",
    "Two hours of noise and explosions in search of a story.",
    "A documentary that follows three families through a hard winter in Maine.",
    "The director's best work in a decade: tense, lean and gorgeous to look at.",
    "It wants to be profound but settles for being merely pretentious.",
    "A retired boxer agrees to train the son of his old rival.",
    "Charming performances cannot save a plot this thin.",
    "Every frame looks like a painting, and the acting matches it.",
    "I laughed, I cried, and then I laughed again at the ending.",
    "A bloated, joyless franchise entry that nobody asked for.",
    "After a plane crash, survivors on a remote island must learn to trust each other.",
    "Smart, sharp and never condescending to its young audience.",
    "The twist is obvious from the first ten minutes.",
    "A moving portrait of an immigrant family in 1950s New York.",
    "Slow, but rewarding if you give it the patience it asks for.",
    "Cheap jokes, cheaper effects, and a running time that feels endless.",
    "A heist movie with more style than substance, but what style.",
    "The animation is lovely; the songs are forgettable.",
    "A young chef opens a restaurant in her late grandmother's house.",
    "Brave, angry, necessary filmmaking.",
    "Nothing here you have not seen done better elsewhere.",
    "It is the rare sequel that improves on the original in every way.",
]
