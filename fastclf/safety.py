"""What fastclf trusts in a model folder: data, never code.

sentence-transformers imports any class that a body's ``modules.json`` names (a ``.py`` file
beside it is enough), and transformers runs remote code when a config asks for it and the
caller allows it. :func:`check_body` is run before any runtime sees a body folder, by every
path that loads one (``load_body`` and ``export_variant`` for every variant, the trainer for a
local base model, the setfit baseline): it accepts only sentence-transformers' own module
classes, module paths inside the folder, no ``auto_map``/``trust_remote_code`` at any depth of
any JSON file, no Python files, and, in a model folder, only regular files that stay inside
it, with JSON and tokenizer files under :func:`size_limit`.

:func:`inside` keeps the paths named in ``fastclf.json`` inside the model folder, and
:func:`check_file` the files a model folder holds.

Only the standard library is imported here.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from fastclf._util import load_json_as
from fastclf.errors import ModelFormatError, first_line

#: sentence-transformers' module classes that read only data (weights, JSON, vocabularies).
#: Router and Asym are left out on purpose: they name further module classes in their own
#: configs. A model that needs another class can be loaded with sentence-transformers itself.
TRUSTED_MODULE_CLASSES = (
    "Transformer", "Pooling", "Normalize", "Dense", "LayerNorm", "Dropout", "WordEmbeddings",
    "StaticEmbedding", "CNN", "LSTM", "WeightedLayerPooling", "WordWeights", "BoW", "CLIPModel",
)
#: the packages sentence-transformers 5.x writes in ``modules.json`` ("type"): the legacy
#: ``sentence_transformers.models.Pooling`` and the 5.x ``...sentence_transformer.modules.pooling.Pooling``
#: and ``...base.modules.transformer.Transformer``
TRUSTED_MODULE_PACKAGES = (
    "sentence_transformers.models",
    "sentence_transformers.sentence_transformer.modules",
    "sentence_transformers.base.modules",
)
_TYPE_RE = re.compile(
    r"^(?P<pkg>" + "|".join(re.escape(p) for p in TRUSTED_MODULE_PACKAGES) + r")(\.[a-z_][a-z0-9_]*)?\.(?P<cls>\w+)$"
)
_CODE_KEYS = ("auto_map", "trust_remote_code")


def trusted_module_type(type_name: Any) -> bool:
    """Whether a ``modules.json`` "type" names one of sentence-transformers' own data-only modules."""
    if not isinstance(type_name, str):
        return False
    m = _TYPE_RE.match(type_name)
    return m is not None and m.group("cls") in TRUSTED_MODULE_CLASSES


def inside(root: Path, relative: Any, what: str, source: Path) -> Path:
    """``root / relative`` when it stays inside ``root`` (no absolute path, no ``..``, no
    symbolic link that leads out); the resolved path.

    Raises:
        ModelFormatError: ``relative`` is not a string or escapes ``root``.
    """
    if not isinstance(relative, str) or "\x00" in relative:
        raise ModelFormatError(f"{source}: {what} must be a relative path string, got {relative!r}")
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ModelFormatError(f"{source}: {what} {relative!r} leads outside {root}; a model folder must be self-contained")
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / rel))
    if target != base and base not in target.parents:
        raise ModelFormatError(f"{source}: {what} {relative!r} leads outside {root} (through a symbolic link)")
    return target


def _code_key(obj: Any) -> str | None:
    """The first key of ``obj`` (nested dicts and lists included, at any depth) that asks for
    custom code; iterative, so its work is bounded by the size of the (size-capped) file."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "auto_map" and value:
                    return key
                if key == "trust_remote_code" and value not in (False, None):
                    return key
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return None


_MB = 1024 * 1024
#: the largest files of these kinds read from a model folder (a 2 GB tokenizer.json took 2.5 GB)
TOKENIZER_LIMIT = 64 * _MB
JSON_LIMIT = 16 * _MB


def size_limit(name: str) -> int | None:
    """The largest size read for a model folder's file called ``name``: tokenizer.json
    :data:`TOKENIZER_LIMIT`, other JSON and vocabularies (.txt, .model) :data:`JSON_LIMIT`;
    None for weights and graphs."""
    if name == "tokenizer.json":
        return TOKENIZER_LIMIT
    return JSON_LIMIT if name.endswith((".json", ".txt", ".model")) else None


def check_file(path: Path, root: Path | None = None) -> None:
    """Refuse a model folder's file that resolves outside ``root`` (None: anywhere is fine),
    is not a regular file (a device, a pipe), or is larger than :func:`size_limit` allows;
    checked before the file is read.

    Raises:
        ModelFormatError: naming the file and why.
    """
    real = os.path.realpath(path)
    if root is not None and not real.startswith(os.path.join(os.path.realpath(root), "")):
        raise ModelFormatError(f"{path} leads outside {root} (a symbolic link to {real}); "
                               "a model folder must be self-contained")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise ModelFormatError(f"{path} cannot be read: {first_line(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFormatError(f"{path} is not a regular file")
    limit = size_limit(Path(path).name)
    if limit is not None and st.st_size > limit:
        raise ModelFormatError(f"{path} is {st.st_size // _MB} MB, more than fastclf reads for this file "
                               f"({limit // _MB} MB)")


def check_body(body_dir: str | Path, *, contained: bool = True) -> None:
    """Refuse a sentence-transformers folder that would make loading it run code, or read
    outside it or without bound.

    Checked before anything is imported: every ``modules.json`` entry names a trusted
    sentence-transformers module class (:data:`TRUSTED_MODULE_CLASSES`) and a ``path``
    inside the folder; no JSON file in the folder asks for ``auto_map`` or
    ``trust_remote_code``; the folder holds no ``.py`` file; every file passes
    :func:`check_file` (inside the folder when ``contained``: a base model in the Hugging Face
    cache links its files to the cache's blobs).

    Raises:
        ModelFormatError: naming the file and the entry that is refused.
    """
    body = Path(body_dir)
    if not body.is_dir():
        raise ModelFormatError(f"model body not found: {body} is not a folder")
    root = Path(os.path.realpath(body))
    within = root if contained else None
    modules_path = body / "modules.json"
    if modules_path.is_file():
        check_file(modules_path, within)
        try:
            text = modules_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{modules_path} is corrupted: {first_line(exc)}") from None
        modules = load_json_as(text, list, ModelFormatError,
                               lambda exc: f"{modules_path} is corrupted: {first_line(exc)}",
                               f"{modules_path} is corrupted: expected a list of modules")
        for i, entry in enumerate(modules):
            if not isinstance(entry, dict):
                raise ModelFormatError(f"{modules_path}: entry {i} is not an object")
            type_name = entry.get("type")
            if not trusted_module_type(type_name):
                raise ModelFormatError(
                    f"{modules_path}: entry {i} has module type {type_name!r}, which is not one of "
                    "sentence-transformers' own modules; fastclf does not load custom module code"
                )
            inside(root, entry.get("path", ""), f"entry {i} path", modules_path)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames:  # a linked folder is not walked: it must lead inside, where it is
            if contained and os.path.islink(here / name):
                inside(root, str((here / name).relative_to(root)), "folder", body)
        for name in filenames:
            path = here / name
            if name.endswith((".py", ".pyc", ".pyw", ".so")):
                raise ModelFormatError(
                    f"{body}: {path.relative_to(root)} is code; fastclf loads only model data, never code from a model folder"
                )
            check_file(path, within)
            if name.endswith(".json"):
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    continue  # not fastclf's to judge here: the loader reports a damaged file
                key = _code_key(data)
                if key:
                    raise ModelFormatError(
                        f"{path}: {key!r} asks to run custom model code; fastclf loads only model data"
                    )
