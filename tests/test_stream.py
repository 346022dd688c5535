"""Streaming batch prediction (fastclf.scoring.stream, fastclf predict --input): every format in and
out, folders and globs, chunking, atomic outputs and one-line errors."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest
from samples import CALIBRATION, FOOD, SPORT, SPORT_EXTRA, run, train_tiny

from fastclf.data import LabeledData
from fastclf.errors import DataError, DataFileNotFound
from fastclf.model import Classifier
from fastclf.scoring import stream

TEXTS = SPORT + FOOD + CALIBRATION  # 36 texts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_body_dir):
    path = tmp_path_factory.mktemp("stream") / "model"
    train_tiny(tiny_body_dir).save(path)
    return path


@pytest.fixture(scope="module")
def clf(model_dir):
    return Classifier.load(model_dir)


def _frame(n: int = len(TEXTS)) -> pd.DataFrame:
    texts = [TEXTS[i % len(TEXTS)] + ("" if i < len(TEXTS) else f" ({i})") for i in range(n)]
    return pd.DataFrame({"id": [str(i) for i in range(n)], "text": texts})


def _write(df: pd.DataFrame, path) -> None:
    name = path.name
    if ".parquet" in name:
        df.to_parquet(path, index=False)
    elif ".jsonl" in name:
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif ".tsv" in name:
        df.to_csv(path, sep="\t", index=False)
    else:
        df.to_csv(path, index=False)


def _read(path) -> pd.DataFrame:
    name = path.name
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if ".jsonl" in name:
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if ".tsv" in name else ",", dtype={"id": str})


def _check_scored(out: pd.DataFrame, source: pd.DataFrame, clf) -> None:
    classes = [str(c) for c in clf.classes_]
    assert list(out.columns) == [*source.columns, "predicted", *[f"proba_{c}" for c in classes]]
    assert out["id"].astype(str).tolist() == source["id"].tolist()  # every row, in order
    assert out["text"].tolist() == source["text"].tolist()
    texts = source["text"].tolist()
    assert out["predicted"].tolist() == clf.predict(texts)
    np.testing.assert_allclose(out[[f"proba_{c}" for c in classes]].to_numpy(dtype=float), clf.predict_proba(texts),
                               atol=1e-5)


def _no_temp_files(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.jsonl", "in.parquet", "in.csv.gz", "in.jsonl.gz",
                                  "in.tsv.bz2"])
def test_each_input_format(tmp_path, model_dir, clf, name):
    source = _frame()
    path = tmp_path / name
    _write(source, path)
    out = tmp_path / "out.parquet"
    code, text = run("predict", model_dir, "--input", path, "--output", out, "-q")
    assert code == 0, text
    assert f"wrote {len(source)} rows to {out}" in text
    _check_scored(pd.read_parquet(out), source, clf)
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.jsonl", "out.parquet", "out.csv.gz", "out.jsonl.xz"])
def test_each_output_format(tmp_path, model_dir, clf, name):
    source = _frame()
    path = tmp_path / "in.csv"
    _write(source, path)
    out = tmp_path / name
    code, text = run("predict", model_dir, "--input", path, "--output", out, "-q", "--chunk-size", "10")
    assert code == 0, text
    if name.endswith(".gz"):
        assert gzip.open(out).read(4) == b"id,t"  # really gzip-compressed
    _check_scored(_read(out), source, clf)


def test_output_is_what_the_whole_file_would_give(tmp_path, clf):
    """Chunked CSV output is byte for byte the CSV of the whole table scored at once."""
    source = _frame(100)
    path = tmp_path / "in.csv"
    _write(source, path)
    stream.predict_files(clf, path, tmp_path / "chunked.csv", chunk_size=7)
    whole = source.copy()
    proba = clf.predict_proba(whole["text"].tolist())
    stream.add_predictions(whole, proba, clf.labels_from_proba(proba), [str(c) for c in clf.classes_], False)
    expected = pd.read_csv(io.StringIO(whole.to_csv(index=False)), dtype=object)
    got = pd.read_csv(tmp_path / "chunked.csv", dtype=object)
    assert got.columns.tolist() == expected.columns.tolist()
    assert got[["id", "text", "predicted"]].equals(expected[["id", "text", "predicted"]])


def test_big_file_streams_in_chunks(tmp_path, model_dir, clf, monkeypatch):
    source = _frame(5200)
    path = tmp_path / "big.parquet"
    _write(source, path)
    sizes: list[int] = []
    original = Classifier.predict_proba

    def counting(self, texts, **kwargs):
        sizes.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Classifier, "predict_proba", counting)
    result = stream.predict_files(clf, path, tmp_path / "big.jsonl", chunk_size=1000)
    assert result.rows == 5200 and result.outputs == [tmp_path / "big.jsonl"]
    assert sizes == [1000] * 5 + [200]
    monkeypatch.undo()
    out = pd.read_json(tmp_path / "big.jsonl", lines=True, dtype=False)
    assert len(out) == 5200 and out["id"].tolist() == source["id"].tolist()
    sample = [0, 999, 1000, 2500, 5199]
    assert out["predicted"].iloc[sample].tolist() == clf.predict(source["text"].iloc[sample].tolist())

    # the CLI option drives the same chunking, for a CSV too
    _write(source, tmp_path / "big.csv")
    sizes.clear()
    monkeypatch.setattr(Classifier, "predict_proba", counting)
    code, text = run("predict", model_dir, "--input", tmp_path / "big.csv", "--output", tmp_path / "big-out.csv",
                     "--chunk-size", "2000", "--workers", "1", "-q")
    assert code == 0, text
    assert sizes == [2000, 2000, 1200]


def test_folder_and_glob_inputs_write_one_file_per_input(tmp_path, model_dir, clf):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    parts = {"a.parquet": _frame(10), "b.csv": _frame(20).iloc[5:], "c.jsonl": _frame(7)}
    for name, df in parts.items():
        _write(df.reset_index(drop=True), corpus / name)
    (corpus / "notes.txt").write_text("not data")
    (corpus / "sub").mkdir()

    code, text = run("predict", model_dir, "--input", corpus, "--output", str(tmp_path / "scored") + "/", "-q")
    assert code == 0, text
    assert f"wrote 32 rows to 3 files in {tmp_path / 'scored'}" in text
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == sorted(parts)
    for name, df in parts.items():
        _check_scored(_read(tmp_path / "scored" / name), df.reset_index(drop=True), clf)

    code, text = run("predict", model_dir, "--input", str(corpus / "*.parquet"), "--output", tmp_path / "globbed",
                     "-q")
    assert code == 0, text
    assert [p.name for p in (tmp_path / "globbed").iterdir()] == ["a.parquet"]

    # a glob of inputs with the same columns into one file: their rows one after the other
    _write(_frame(4), corpus / "d.parquet")
    code, text = run("predict", model_dir, "--input", str(corpus / "*.parquet"), "--output", tmp_path / "all.csv",
                     "-q")
    assert code == 0, text
    both = pd.concat([_frame(10), _frame(4)], ignore_index=True)
    _check_scored(_read(tmp_path / "all.csv"), both, clf)


def test_no_output_prints_csv_once_with_one_header(tmp_path, model_dir, clf):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write(_frame(5), corpus / "a.csv")
    _write(_frame(3), corpus / "b.csv")
    from click.testing import CliRunner

    from fastclf.cli.main import cli

    result = CliRunner().invoke(cli, ["predict", str(model_dir), "--input", str(corpus), "-q"])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(io.StringIO(result.stdout), dtype={"id": str})
    _check_scored(out, pd.concat([_frame(5), _frame(3)], ignore_index=True), clf)


def test_multi_label_labels_are_joined(tmp_path, tiny_body_dir):
    texts = SPORT + FOOD + ["a picnic at the stadium", "hot dogs at the match", "beer and a football game"]
    labels = [["sport"]] * 6 + [["food"]] * 6 + [["food", "sport"]] * 3
    clf = train_tiny(tiny_body_dir, LabeledData(texts, labels, multi_label=True))
    clf.threshold = 0.3  # some rows get both labels, some one
    path = tmp_path / "in.csv"
    pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts}).to_csv(path, index=False)
    stream.predict_files(clf, path, tmp_path / "out.csv", chunk_size=4)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["predicted"].tolist() == ["|".join(row) for row in clf.predict(texts)]
    assert any("|" in p for p in out["predicted"])


def test_failure_leaves_no_output_and_no_temp_file(tmp_path, model_dir, clf, monkeypatch):
    source = _frame(3000)
    source.loc[2500, "text"] = ""
    path = tmp_path / "in.csv"
    _write(source, path)
    out = tmp_path / "out.parquet"
    code, text = run("predict", model_dir, "--input", path, "--output", out, "--chunk-size", "500", "-q")
    assert code == 1 and text.startswith("error:") and len(text.strip().splitlines()) == 1
    assert "row 2501" in text and "empty or missing text" in text
    assert not out.exists() and _no_temp_files(tmp_path)

    # Ctrl-C in the middle: the old output is kept as it was, no temp file
    good = tmp_path / "good.csv"
    _write(_frame(3000), good)
    out.write_bytes(b"old")
    calls = []
    original = Classifier.predict_proba

    def interrupted(self, texts, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Classifier, "predict_proba", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stream.predict_files(clf, good, out, chunk_size=500)
    assert out.read_bytes() == b"old" and _no_temp_files(tmp_path)


@pytest.mark.parametrize("setup, args, message", [
    (None, ["missing.csv"], "data file not found"),
    (None, ["nothing/*.csv"], "no file matches"),
    ("empty_dir", ["empty"], "no .csv, .tsv, .jsonl or .parquet file"),
    ("txt", ["notes.txt"], "unknown file type '.txt'"),
    ("no_text", ["words.csv"], "no text column found"),
    ("header_only", ["header.csv"], "has no data rows"),
    ("bad_json", ["bad.jsonl"], "cannot read as jsonl"),
    ("latin1", ["latin.csv"], "is not UTF-8"),
    ("good", ["in.csv", "--output", "in.csv"], "is an input"),
    ("good", ["in.csv", "--output", "out.zip"], "cannot write .zip"),
    ("good", ["in.csv", "--text-column", "body"], "no column 'body'"),
    ("mixed", ["mixed", "--output", "all.csv"], "has other columns"),
    # a blank line in a one-column file is an empty text at its row, not a row that vanishes
    ("blank_line", ["one.csv", "--output", "out.csv"], "at rows 2, 3 "),
])
def test_bad_inputs_one_line_error(tmp_path, model_dir, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    if setup == "empty_dir":
        (tmp_path / "empty").mkdir()
    elif setup == "txt":
        (tmp_path / "notes.txt").write_text("text\nhello\n")
    elif setup == "no_text":
        (tmp_path / "words.csv").write_text("words,other\na,b\n")
    elif setup == "header_only":
        (tmp_path / "header.csv").write_text("text,id\n")
    elif setup == "bad_json":
        (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    elif setup == "latin1":
        (tmp_path / "latin.csv").write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    elif setup == "good":
        _write(_frame(3), tmp_path / "in.csv")
    elif setup == "blank_line":
        (tmp_path / "one.csv").write_text("text\nhello\n\n   \nworld\n")
    elif setup == "mixed":
        (tmp_path / "mixed").mkdir()
        _write(_frame(3), tmp_path / "mixed" / "a.csv")
        _write(_frame(3).rename(columns={"id": "key"}), tmp_path / "mixed" / "b.csv")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, text = run("predict", model_dir, "--input", *args, "-q")
    assert code == 1, text
    assert text.startswith("error:") and len(text.strip().splitlines()) == 1 and message in text
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_progress_counts_rows_when_known_else_bytes(tmp_path):
    _write(_frame(30), tmp_path / "a.parquet")
    _write(_frame(30), tmp_path / "b.csv")
    parquet = stream.plan(tmp_path / "a.parquet", None)
    both = stream.plan(tmp_path, tmp_path / "out")
    assert parquet[0].rows == 30 and both[1].rows is None
    with stream.progress_bar(parquet, by_bytes=True, enabled=False) as bar:
        assert bar.total == 30  # rows
    with stream.progress_bar(both, by_bytes=True, enabled=False) as bar:
        assert bar.total == sum(p.stat().st_size for p in (tmp_path / "a.parquet", tmp_path / "b.csv"))
    assert [j.target for j in both] == [tmp_path / "out" / "a.parquet", tmp_path / "out" / "b.csv"]


def test_resolve_inputs(tmp_path):
    for name in ("b.csv", "a.parquet", "c.jsonl.gz", ".hidden.csv", "notes.md"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in stream.resolve_inputs(tmp_path)] == ["a.parquet", "b.csv", "c.jsonl.gz"]
    assert [p.name for p in stream.resolve_inputs(str(tmp_path / "*.csv"))] == ["b.csv"]
    with pytest.raises(DataFileNotFound):
        stream.resolve_inputs(tmp_path / "none" / "*.csv")
    with pytest.raises(DataError, match="matches no .csv"):
        stream.resolve_inputs(tmp_path / "*.md")


def test_json_array_input(tmp_path, clf):
    source = _frame(9)
    (tmp_path / "arr.json").write_text(json.dumps(source.to_dict(orient="records")))
    stream.predict_files(clf, tmp_path / "arr.json", tmp_path / "out.csv", chunk_size=4)
    _check_scored(_read(tmp_path / "out.csv"), source, clf)


THREE = SPORT + SPORT_EXTRA + FOOD + CALIBRATION[:3]  # imbalanced: sport 8 texts, food 6, film 3


@pytest.fixture(scope="module")
def three_class_dir(tmp_path_factory, tiny_body_dir):
    from fastclf.training.trainer import TrainConfig, train

    config = TrainConfig(model=str(tiny_body_dir), num_epochs=1, head_c=1000.0, show_progress=False)
    path = tmp_path_factory.mktemp("three") / "model"
    train(LabeledData(THREE, ["sport"] * 8 + ["food"] * 6 + ["film"] * 3), config).classifier.save(path)
    return path


def test_workers_write_what_one_process_writes_in_input_order(tmp_path, three_class_dir):
    source = pd.DataFrame({"id": [str(i) for i in range(300)], "text": [THREE[i % 17] for i in range(300)]})
    path = tmp_path / "in.csv"
    _write(source, path)
    for workers in ("1", "2"):
        code, text = run("predict", three_class_dir, "--input", path, "--output", tmp_path / f"w{workers}.parquet",
                         "--workers", workers, "--chunk-size", "16", "-q")
        assert code == 0 and "wrote 300 rows" in text, text
    one, two = pd.read_parquet(tmp_path / "w1.parquet"), pd.read_parquet(tmp_path / "w2.parquet")
    probas = ["proba_film", "proba_food", "proba_sport"]
    assert two.columns.tolist() == ["id", "text", "predicted", *probas]
    assert two["id"].tolist() == source["id"].tolist()  # the order of the input, chunk after chunk
    assert two["predicted"].tolist() == one["predicted"].tolist()
    assert one["predicted"].nunique() >= 2
    np.testing.assert_allclose(two[probas].to_numpy(), one[probas].to_numpy(), atol=1e-6)
    # the library: a Classifier passed in is loaded again by each worker from its folder
    clf = Classifier.load(three_class_dir)
    result = stream.predict_files(clf, path, tmp_path / "lib.csv", workers=2, chunk_size=50)
    assert result.rows == 300
    assert pd.read_csv(tmp_path / "lib.csv", dtype={"id": str})["predicted"].tolist() == one["predicted"].tolist()


def test_an_error_in_a_workers_chunk_is_one_line_and_writes_nothing(tmp_path, three_class_dir):
    source = _frame(200)
    source.loc[150, "text"] = ""
    path = tmp_path / "in.csv"
    _write(source, path)
    out = tmp_path / "out.jsonl"
    code, text = run("predict", three_class_dir, "--input", path, "--output", out, "--workers", "2",
                     "--chunk-size", "16", "-q")
    assert code == 1 and text.startswith("error:") and len(text.strip().splitlines()) == 1, text
    assert str(path) in text and "row 151" in text and "empty or missing text" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no output, no temporary file
