from __future__ import annotations

import json

import pandas as pd
import pytest

from fastclf.data import read_labeled, read_texts, sample_shots, split_holdout, validate_for_training
from fastclf.errors import DataError, DataFileNotFound


def write_csv(path, rows, header=("text", "label")):
    pd.DataFrame(rows, columns=list(header)).to_csv(path, index=False)
    return path


ROWS = [("good film", "pos"), ("bad film", "neg"), ("great acting", "pos"), ("awful plot", "neg")]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_reads_every_format(tmp_path, suffix):
    df = pd.DataFrame(ROWS, columns=["sentence", "category"])
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    data = read_labeled(path)
    assert data.texts == [r[0] for r in ROWS]
    assert data.labels == [r[1] for r in ROWS]
    assert data.classes == ["neg", "pos"]
    assert (data.text_column, data.label_columns) == ("sentence", ["category"])
    assert not data.multi_label


@pytest.mark.parametrize("name, sep", [("tabs.csv", "\t"), ("semicolons.csv", ";"), ("commas.tsv", ","),
                                       ("tabs.csv.gz", "\t")])
def test_separator_is_read_from_the_header(tmp_path, name, sep):
    """A spreadsheet's tab- or semicolon-separated .csv (texts with commas in them), or a comma
    file named .tsv, reads as it is, for training and for scoring with --input."""
    from fastclf.scoring import stream

    rows = [("good, even great film", "pos"), ("bad; dull film", "neg"), ("great acting, fine", "pos"),
            ("awful plot, sadly", "neg")]
    df = pd.DataFrame(rows, columns=["text", "label"])
    path = tmp_path / name
    df.to_csv(path, sep=sep, index=False)
    data = read_labeled(path)
    assert data.texts == [r[0] for r in rows] and data.labels == [r[1] for r in rows]
    job = stream.inspect_file(path)
    assert job.columns == ["text", "label"] and job.sep == sep
    scored = pd.concat([chunk for chunk, _ in stream.iter_chunks(job)])
    assert scored["text"].tolist() == [r[0] for r in rows]


def test_explicit_columns_and_missing_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS, header=("body", "y"))
    with pytest.raises(DataError, match="no text column found.*--text-column"):
        read_labeled(path)
    data = read_labeled(path, text_column="body", label_column="y")
    assert data.counts() == {"neg": 2, "pos": 2}
    with pytest.raises(DataError, match="no column 'nope'"):
        read_labeled(path, text_column="nope", label_column="y")


def test_ambiguous_column(tmp_path):
    df = pd.DataFrame({"text": ["a", "b"], "review": ["c", "d"], "label": ["x", "y"]})
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="several possible text columns \\(text, review\\)"):
        read_labeled(tmp_path / "d.csv")


def test_empty_and_nan_cells_name_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\n,neg\n   ,pos\nfine,\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty or missing text in column 'text' at rows 2, 3"):
        read_labeled(path)
    path.write_text("text,label\ngood,pos\nbad,\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing label in column 'label' at row 2"):
        read_labeled(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_labeled(path)
    with pytest.raises(DataFileNotFound, match="data file not found"):
        read_labeled(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        read_labeled(tmp_path / "x.xlsx")


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label"\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_labeled(path)


def test_validation_one_class_and_singletons(tmp_path):
    one = read_labeled(write_csv(tmp_path / "a.csv", [("a", "x"), ("b", "x")]))
    with pytest.raises(DataError, match="only one class"):
        validate_for_training(one)
    single = read_labeled(write_csv(tmp_path / "b.csv", [("a", "x"), ("b", "x"), ("c", "y")]))
    with pytest.raises(DataError, match="'y' have a single example"):
        validate_for_training(single)


def test_multilabel_separator_list_and_binary_columns(tmp_path):
    data = read_labeled(write_csv(tmp_path / "m.csv", [("a", "sports|news"), ("b", "news"), ("c", "sports")]))
    assert data.multi_label and data.labels == [["news", "sports"], ["news"], ["sports"]]
    assert data.label_matrix().tolist() == [[1, 1], [1, 0], [0, 1]]

    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"text": "a", "labels": ["x", "y"]}, {"text": "b", "labels": ["x"]}]), encoding="utf-8")
    data = read_labeled(path)
    assert data.multi_label and data.labels == [["x", "y"], ["x"]]

    df = pd.DataFrame({"text": ["a", "b", "c"], "sports": [1, 0, 1], "news": [0, 1, 1]})
    df.to_csv(tmp_path / "b.csv", index=False)
    data = read_labeled(tmp_path / "b.csv")
    assert data.multi_label and data.classes == ["sports", "news"]
    assert data.labels == [["sports"], ["news"], ["sports", "news"]]
    df["news"] = [0, 2, 1]
    df.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match="must hold 0 or 1"):
        read_labeled(tmp_path / "c.csv", label_columns=["sports", "news"])


def test_shots_are_seeded_and_per_class(tmp_path):
    rows = [(f"text {i}", "a" if i % 3 else "b") for i in range(60)]
    data = read_labeled(write_csv(tmp_path / "d.csv", rows))
    s1, rest = sample_shots(data, 8, seed=1)
    s2, _ = sample_shots(data, 8, seed=1)
    s3, _ = sample_shots(data, 8, seed=2)
    assert s1.counts() == {"a": 8, "b": 8}
    assert s1.texts == s2.texts and s1.texts != s3.texts
    assert len(rest) == 60 - 16 and not set(rest.texts) & set(s1.texts)


def test_holdout_is_stratified(tmp_path):
    rows = [(f"text {i}", "a" if i % 2 else "b") for i in range(40)]
    train, held = split_holdout(read_labeled(write_csv(tmp_path / "d.csv", rows)), 0.25, seed=0)
    assert held.counts() == {"a": 5, "b": 5} and len(train) == 30


def test_read_texts_single_column(tmp_path):
    (tmp_path / "t.csv").write_text("snippet\nhello\nworld\n", encoding="utf-8")
    df, col = read_texts(tmp_path / "t.csv")
    assert col == "snippet" and df[col].tolist() == ["hello", "world"]


def test_one_text_check_names_the_file_rows_or_the_item():
    from fastclf.texts import check_texts

    with pytest.raises(DataError, match=r"d\.csv: empty or missing text in column 'body' at rows 12, 14"):
        check_texts(["a", None, "b", "  ", "c"], "d.csv", column="body", offset=10)
    with pytest.raises(DataError, match=r"lone surrogate\) in column 'text' at row 11 "):
        check_texts(["ok", "x\udc80"], "d.csv", offset=9)
    with pytest.raises(DataError, match="list or object instead of a text at row 1 "):
        check_texts([["a"], "b"], "d.csv")
    with pytest.raises(DataError, match=r"^text 2 \(counted from 0\) is not valid Unicode"):
        check_texts(["ok", "fine", "x\udc80"])
    assert check_texts(["a", 5, 1.5], "d.csv") == ["a", "5", "1.5"]  # the readers keep scalar cells as text
    with pytest.raises(TypeError, match="item 1 is int"):
        check_texts(["a", 5])  # the API does not
