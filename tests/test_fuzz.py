"""Fuzzing the readers of untrusted input: the data reader, the model loader and the server's request body.

Whatever bytes or shapes they are given, they raise nothing but a FastclfError (one line in
the CLI). CI runs a fixed, derandomized budget; a long run sets FASTCLF_FUZZ_EXAMPLES::

    FASTCLF_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastclf import Classifier, FastclfError
from fastclf.data import read_labeled, read_texts

EXAMPLES = int(os.environ.get("FASTCLF_FUZZ_EXAMPLES", "150"))
LOADER_EXAMPLES = int(os.environ.get("FASTCLF_FUZZ_EXAMPLES", "80"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
FUZZ_LOADER = settings(FUZZ, max_examples=LOADER_EXAMPLES)

SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".parquet"]
COMPRESSIONS = ["", ".gz", ".bz2", ".xz", ".zip", ".zst"]


def _compress(data: bytes, compression: str) -> bytes:
    if compression == ".gz":
        return gzip.compress(data)
    if compression == ".bz2":
        return bz2.compress(data)
    if compression == ".xz":
        return lzma.compress(data)
    if compression == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("data", data)
        return buf.getvalue()
    return data  # "" and .zst (written raw: a damaged zstd file, or zstandard missing)


def _read_both(path: Path, **kwargs) -> None:
    for read in (lambda: read_labeled(path, **kwargs), lambda: read_texts(path)):
        try:
            read()
        except FastclfError:
            pass


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- the data reader ----------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(SUFFIXES), compression=st.sampled_from(COMPRESSIONS),
       wrap=st.booleans())
def test_data_reader_on_random_bytes(scratch, data, suffix, compression, wrap):
    path = scratch / f"random{suffix}{compression}"
    path.write_bytes(_compress(data, compression) if wrap else data)
    _read_both(path)


_cell = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "|", "a|b", "sport", "food", "0", "1", "true", "\t", '"', "\n", "1.0", "nan", "NULL"]),
)
_names = st.sampled_from(["text", "label", "labels", "sentence", "category", "a", "b", "Text", " label ", "", "x\ty"])


@FUZZ
@given(header=st.lists(_names, min_size=1, max_size=4), rows=st.lists(st.lists(_cell, max_size=5), max_size=12),
       tsv=st.booleans(), compression=st.sampled_from(COMPRESSIONS[:5]), separator=st.sampled_from(["|", ",", ";"]))
def test_data_reader_on_csv_shapes(scratch, header, rows, tsv, compression, separator):
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if tsv else ",")
    writer.writerow(header)
    writer.writerows(rows)
    path = scratch / f"shape{'.tsv' if tsv else '.csv'}{compression}"
    path.write_bytes(_compress(buf.getvalue().encode("utf-8", "surrogatepass"), compression))
    _read_both(path, label_separator=separator)


_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
              st.sampled_from(["sport", "food", "a|b", ""])),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_names, children, max_size=4),
    max_leaves=12,
)
_record = st.one_of(st.dictionaries(_names, _json_value, max_size=4), _json_value)


@FUZZ
@given(records=st.lists(_record, max_size=10), as_array=st.booleans(), suffix=st.sampled_from([".jsonl", ".json"]),
       compression=st.sampled_from(COMPRESSIONS[:5]))
def test_data_reader_on_json_shapes(scratch, records, as_array, suffix, compression):
    if as_array:
        text = json.dumps(records)
    else:
        text = "\n".join(json.dumps(r) for r in records)
    path = scratch / f"shape{suffix}{compression}"
    path.write_bytes(_compress(text.encode("utf-8", "surrogatepass"), compression))
    _read_both(path)


@FUZZ
@given(texts=st.lists(st.one_of(st.text(max_size=20), st.lists(st.text(max_size=5), max_size=2)), min_size=1,
                      max_size=8),
       labels=st.lists(st.one_of(st.text(max_size=10), st.lists(st.sampled_from(["a", "b", ""]), max_size=3)),
                       min_size=1, max_size=8))
def test_data_reader_on_parquet_shapes(scratch, texts, labels):
    import pandas as pd

    n = min(len(texts), len(labels))
    path = scratch / "shape.parquet"
    try:
        pd.DataFrame({"text": texts[:n], "label": labels[:n]}).to_parquet(path)
    except Exception:  # pyarrow cannot store every mix of types: nothing to read then
        return
    _read_both(path)


# -- the model loader ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tiny_model) -> Path:
    return tiny_model  # read only: the fuzzed copy is `victim`


@pytest.fixture(scope="module")
def victim(pristine, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-victim") / "model"
    shutil.copytree(pristine, path)
    return path


def _restore(pristine: Path, victim: Path, *names: str) -> None:
    for name in names:
        shutil.copy(pristine / name, victim / name)


def _load(victim: Path) -> None:
    try:
        Classifier.load(victim)
    except FastclfError:
        pass


_paths = st.sampled_from([
    ("labels",), ("threshold",), ("multi_label",), ("head",), ("head", "file"), ("head", "kind"), ("body",),
    ("body", "path"), ("variants",), ("default_variant",), ("format_version",), ("format",), ("variants", "onnx-fp32"),
    ("variants", "onnx-fp32", "files"),
])
_weird = st.one_of(_json_value, st.sampled_from(["../x", "/etc/passwd", "head.safetensors", "body", "onnx-fp32",
                                                  ["a", "b"], ["a", "a"], 0.5, -1, 2, "torch-bf16"]))


@FUZZ_LOADER
@given(edits=st.lists(st.tuples(_paths, _weird, st.booleans()), min_size=1, max_size=3))
def test_loader_on_mutated_fastclf_json(pristine, victim, edits):
    cfg = json.loads((pristine / "fastclf.json").read_text())
    for path, value, delete in edits:
        node = cfg
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    (victim / "fastclf.json").write_text(json.dumps(cfg))
    try:
        _load(victim)
    finally:
        _restore(pristine, victim, "fastclf.json")


@FUZZ_LOADER
@given(cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=64), mode=st.sampled_from(
    ["truncate", "prefix", "flip", "metadata"]), kind=st.text(max_size=12))
def test_loader_on_mutated_head(pristine, victim, cut, junk, mode, kind):
    data = (pristine / "head.safetensors").read_bytes()
    if mode == "truncate":
        data = data[: cut % (len(data) + 1)]
    elif mode == "prefix":
        data = junk + data[cut % len(data):]
    elif mode == "flip":
        i = cut % len(data)
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    else:
        from safetensors.numpy import load_file, save_file

        save_file(load_file(str(pristine / "head.safetensors")), str(victim / "head.safetensors"),
                  metadata={"kind": kind})
        data = None
    if data is not None:
        (victim / "head.safetensors").write_bytes(data)
    try:
        _load(victim)
    finally:
        _restore(pristine, victim, "head.safetensors")


_module_entry = st.one_of(
    _json_value,
    st.fixed_dictionaries({
        "idx": st.one_of(st.integers(-2, 5), st.text(max_size=3)),
        "name": st.text(max_size=3),
        "path": st.sampled_from(["", "1_Pooling", "2_Normalize", "..", "/tmp", "nope", "1_Pooling/../.."]),
        "type": st.sampled_from([
            "sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize", "sentence_transformers.models.Dense",
            "sentence_transformers.sentence_transformer.modules.pooling.Pooling", "os.system", "evil.Evil",
            "sentence_transformers.util.misc.import_from_string", "sentence_transformers.models.Router", ""]),
    }),
)


@FUZZ_LOADER
@given(modules=st.one_of(st.lists(_module_entry, max_size=4), _json_value))
def test_loader_on_mutated_modules_json(pristine, victim, modules):
    (victim / "body" / "modules.json").write_text(json.dumps(modules))
    try:
        _load(victim)
    finally:
        _restore(pristine, victim, "body/modules.json")


# -- the server's request body --------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_inputs = st.one_of(st.text(max_size=20), st.lists(st.text(max_size=20), max_size=6), _json)
_body = st.one_of(
    st.binary(max_size=300),
    _json.map(json.dumps),
    st.fixed_dictionaries({"inputs": _inputs}, optional={"top_k": _json | st.integers(), "truncate": _json,
                                                         "extra": _json}).map(json.dumps),
    st.tuples(st.sampled_from("[{"), st.integers(1, 3000)).map(lambda c: c[0] * c[1]),
    st.integers(1, 6000).map(lambda n: '{"inputs": "x", "top_k": ' + "9" * n + "}"),
)


@FUZZ
@given(body=_body)
def test_server_body_parser_raises_only_request_errors(body):
    from fastclf.serve import parse_predict_body
    from fastclf.serve.protocol import RequestError

    try:
        texts, single, top_k, _ = parse_predict_body(body.encode("utf-8", "surrogatepass") if isinstance(body, str)
                                                  else body, max_inputs=4)
    except RequestError as exc:
        assert exc.status in (413, 422) and "\n" not in exc.message
        return
    assert 1 <= len(texts) <= 4 and all(isinstance(t, str) and t.strip() for t in texts)
    assert (not single or len(texts) == 1) and (top_k is None or top_k >= 1)
