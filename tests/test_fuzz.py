"""Fuzzing the readers of untrusted input: the data reader, the model loader (fastclf.json, the head,
modules.json, and the body's tokenizer.json and config files under torch-fp32 and onnx-fp32) and the
server's request body.

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
#: a model folder's files: each example loads torch-fp32 and onnx-fp32 (FASTCLF_FUZZ_VARIANTS)
FUZZ_FOLDER = settings(FUZZ, max_examples=int(os.environ.get("FASTCLF_FUZZ_EXAMPLES", "40")))

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
    cfg: object = json.loads((pristine / "fastclf.json").read_text())
    for path, value, delete in edits:
        cfg = _edit(cfg, path, value, delete)
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
    from fastclf.scoring.serve import parse_predict_body
    from fastclf.scoring.serve.protocol import RequestError

    try:
        texts, single, top_k, _ = parse_predict_body(body.encode("utf-8", "surrogatepass") if isinstance(body, str)
                                                  else body, max_inputs=4)
    except RequestError as exc:
        assert exc.status in (413, 422) and "\n" not in exc.message
        return
    assert 1 <= len(texts) <= 4 and all(isinstance(t, str) and t.strip() for t in texts)
    assert (not single or len(texts) == 1) and (top_k is None or top_k >= 1)


# -- a model folder's tokenizer and config files --------------------------------------------------

@pytest.fixture(scope="module")
def exported_pristine(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with onnx-fp32 exported (read only: the fuzzed copy is `exported_victim`)."""
    from samples import CALIBRATION

    from fastclf.accelerate.export import accelerate

    path = tmp_path_factory.mktemp("fuzz-exported") / "model"
    shutil.copytree(tiny_model, path)
    accelerate(path, ["onnx-fp32"], calibration_texts=CALIBRATION, max_accuracy_loss=100)
    return path


@pytest.fixture(scope="module")
def exported_victim(exported_pristine, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-exported-victim") / "model"
    shutil.copytree(exported_pristine, path)
    return path


VARIANTS = [v for v in os.environ.get("FASTCLF_FUZZ_VARIANTS", "torch-fp32,onnx-fp32").split(",") if v]


def _load_variants(victim: Path) -> None:
    """Load every fuzzed variant (sizes in the configs stay small: a huge one is a memory test)."""
    for variant in VARIANTS:
        try:
            Classifier.load(victim, variant=variant)
        except FastclfError:
            pass


def _mutate_bytes(data: bytes, mode: str, cut: int, junk: bytes) -> bytes:
    if mode == "truncate":
        return data[: cut % (len(data) + 1)]
    if mode == "prefix":
        return junk + data[cut % len(data):]
    if mode == "insert":
        i = cut % len(data)
        return data[:i] + junk + data[i:]
    i = cut % len(data)
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def _edit(doc: object, path: tuple, value: object, delete: bool) -> object:
    """``doc`` with ``path`` set to ``value`` (or deleted); a missing or non-container step is made a dict."""
    if not path:
        return value
    node = doc if isinstance(doc, dict) else {}
    root = node
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return root


_byte_mutation = st.tuples(st.sampled_from(["truncate", "prefix", "insert", "flip"]),
                           st.integers(min_value=0, max_value=10**6), st.binary(max_size=32))
_small = st.one_of(st.none(), st.booleans(), st.integers(-2, 600), st.floats(-10, 10), st.text(max_size=8),
                   st.lists(st.one_of(st.integers(-2, 600), st.text(max_size=4)), max_size=3), st.sampled_from([-1, 0, 1, 2, 3, 8, 16, 32, 128, 512, "bert", "BertModel", [],
                                                 {}, "[CLS]", "[PAD]", "WordPiece", "BPE", "Unigram"]))
_tokenizer_paths = st.sampled_from([
    (), ("model",), ("model", "type"), ("model", "vocab"), ("model", "unk_token"), ("model", "max_input_chars_per_word"),
    ("model", "continuing_subword_prefix"), ("normalizer",), ("normalizer", "type"), ("normalizer", "lowercase"),
    ("pre_tokenizer",), ("pre_tokenizer", "type"), ("post_processor",), ("post_processor", "type"),
    ("post_processor", "special_tokens"), ("post_processor", "single"), ("decoder",), ("added_tokens",),
    ("truncation",), ("padding",), ("version",),
])
_config_paths = st.sampled_from([
    ("config.json", "hidden_size"), ("config.json", "num_hidden_layers"), ("config.json", "num_attention_heads"),
    ("config.json", "intermediate_size"), ("config.json", "vocab_size"), ("config.json", "model_type"),
    ("config.json", "architectures"), ("config.json", "max_position_embeddings"), ("config.json", "hidden_act"),
    ("config.json", "type_vocab_size"), ("config.json", "pad_token_id"), ("config.json", "torch_dtype"),
    ("config.json", "layer_norm_eps"), ("config.json", "position_embedding_type"),
    ("tokenizer_config.json", "do_lower_case"), ("tokenizer_config.json", "tokenizer_class"),
    ("tokenizer_config.json", "pad_token"), ("tokenizer_config.json", "model_max_length"),
    ("tokenizer_config.json", "strip_accents"), ("tokenizer_config.json", "padding_side"),
    ("special_tokens_map.json", "pad_token"), ("sentence_bert_config.json", "max_seq_length"),
    ("sentence_bert_config.json", "do_lower_case"), ("1_Pooling/config.json", "pooling_mode"),
    ("1_Pooling/config.json", "word_embedding_dimension"), ("1_Pooling/config.json", "pooling_mode_mean_tokens"),
])


def _fuzz_file(pristine: Path, victim: Path, name: str, write) -> None:
    try:
        write(victim / "body" / name, (pristine / "body" / name).read_bytes())
        _load_variants(victim)
    finally:
        shutil.copy(pristine / "body" / name, victim / "body" / name)


@FUZZ_FOLDER
@given(mutation=_byte_mutation)
def test_loader_on_mutated_tokenizer_bytes(exported_pristine, exported_victim, mutation):
    _fuzz_file(exported_pristine, exported_victim, "tokenizer.json",
               lambda path, data: path.write_bytes(_mutate_bytes(data, *mutation)))


@FUZZ_FOLDER
@given(edits=st.lists(st.tuples(_tokenizer_paths, _small, st.booleans()), min_size=1, max_size=3))
def test_loader_on_mutated_tokenizer_structure(exported_pristine, exported_victim, edits):
    def write(path: Path, data: bytes) -> None:
        doc: object = json.loads(data)
        for key_path, value, delete in edits:
            doc = _edit(doc, key_path, value, delete)
        path.write_text(json.dumps(doc))

    _fuzz_file(exported_pristine, exported_victim, "tokenizer.json", write)


@FUZZ_FOLDER
@given(edits=st.lists(st.tuples(_config_paths, _small, st.booleans()), min_size=1, max_size=3),
       mutation=st.one_of(st.none(), _byte_mutation))
def test_loader_on_mutated_config_files(exported_pristine, exported_victim, edits, mutation):
    names = sorted({path[0] for path, _v, _d in edits})
    try:
        for name in names:
            doc: object = json.loads((exported_pristine / "body" / name).read_text())
            for (file, *key_path), value, delete in edits:
                if file == name:
                    doc = _edit(doc, tuple(key_path), value, delete)
            data = json.dumps(doc).encode()
            (exported_victim / "body" / name).write_bytes(data if mutation is None else _mutate_bytes(data, *mutation))
        _load_variants(exported_victim)
    finally:
        for name in names:
            shutil.copy(exported_pristine / "body" / name, exported_victim / "body" / name)


@FUZZ_LOADER
@given(mutation=_byte_mutation)
def test_loader_on_mutated_fastclf_json_bytes(pristine, victim, mutation):
    data = (pristine / "fastclf.json").read_bytes()
    (victim / "fastclf.json").write_bytes(_mutate_bytes(data, *mutation))
    try:
        _load(victim)
    finally:
        _restore(pristine, victim, "fastclf.json")
