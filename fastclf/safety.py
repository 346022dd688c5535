"""What fastclf trusts in a model folder: data, never code. :func:`check_body` runs before any runtime sees a
body folder; :func:`inside` keeps the paths fastclf.json names inside the model folder."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from fastclf.errors import ModelFormatError, first_line

#: sentence-transformers' module classes that read only data (Router and Asym name further classes: left out)
TRUSTED_MODULE_CLASSES = (
    "Transformer", "Pooling", "Normalize", "Dense", "LayerNorm", "Dropout", "WordEmbeddings",
    "StaticEmbedding", "CNN", "LSTM", "WeightedLayerPooling", "WordWeights", "BoW", "CLIPModel",
)
#: the packages sentence-transformers writes in ``modules.json`` "type" (legacy and 5.x layouts)
TRUSTED_MODULE_PACKAGES = ("sentence_transformers.models", "sentence_transformers.sentence_transformer.modules",
                           "sentence_transformers.base.modules")
_TYPE_RE = re.compile(
    r"^(?P<pkg>" + "|".join(re.escape(p) for p in TRUSTED_MODULE_PACKAGES) + r")(\.[a-z_][a-z0-9_]*)?\.(?P<cls>\w+)$"
)
_MB = 1024 * 1024
TOKENIZER_LIMIT = 64 * _MB  # the largest tokenizer.json read (the tokenizer holds it in memory several times over)
JSON_LIMIT = 16 * _MB  # the largest other JSON or vocabulary file read


def trusted_module_type(type_name: Any) -> bool:
    """Whether a ``modules.json`` "type" names one of sentence-transformers' own data-only modules."""
    m = _TYPE_RE.match(type_name) if isinstance(type_name, str) else None
    return m is not None and m.group("cls") in TRUSTED_MODULE_CLASSES


def inside(root: Path, relative: Any, what: str, source: Path) -> Path:
    """The resolved ``root / relative``, refused (ModelFormatError) when it is not a relative path string or
    leads outside ``root`` (``..``, an absolute path, a symbolic link)."""
    if not isinstance(relative, str) or "\x00" in relative:
        raise ModelFormatError(f"{source}: {what} must be a relative path string, got {relative!r}")
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ModelFormatError(f"{source}: {what} {relative!r} leads outside {root}; "
                               "a model folder must be self-contained")
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / rel))
    if target != base and base not in target.parents:
        raise ModelFormatError(f"{source}: {what} {relative!r} leads outside {root} (through a symbolic link)")
    return target


def _code_key(obj: Any) -> str | None:
    """The first key at any depth of ``obj`` that asks for custom code (iterative: bounded by the file's size)."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if (key == "auto_map" and value) or (key == "trust_remote_code" and value not in (False, None)):
                    return key
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return None


def check_file(path: Path, root: Path | None = None) -> None:
    """Refuse (ModelFormatError) a model folder's file that resolves outside ``root`` (None: anywhere), is not a
    regular file, or is a JSON, tokenizer or vocabulary file over its size limit; checked before it is read."""
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
    name = Path(path).name
    limit = JSON_LIMIT if name.endswith((".json", ".txt", ".model")) else None
    limit = TOKENIZER_LIMIT if name == "tokenizer.json" else limit
    if limit is not None and st.st_size > limit:
        raise ModelFormatError(f"{path} is {st.st_size // _MB} MB, more than fastclf reads for this file "
                               f"({limit // _MB} MB)")


def _check_modules(modules_path: Path, root: Path, within: Path | None) -> None:
    """Every ``modules.json`` entry names a trusted module class and a path inside ``root``."""
    check_file(modules_path, within)
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{modules_path} is corrupted: {first_line(exc)}") from None
    if not isinstance(modules, list):
        raise ModelFormatError(f"{modules_path} is corrupted: expected a list of modules")
    for i, entry in enumerate(modules):
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{modules_path}: entry {i} is not an object")
        if not trusted_module_type(entry.get("type")):
            raise ModelFormatError(f"{modules_path}: entry {i} has module type {entry.get('type')!r}, which is not one "
                                   "of sentence-transformers' own modules; fastclf does not load custom module code")
        inside(root, entry.get("path", ""), f"entry {i} path", modules_path)


def check_body(body_dir: str | Path, *, contained: bool = True) -> None:
    """Refuse (ModelFormatError) a sentence-transformers folder whose loading would run code or read outside it
    (unless not ``contained``: a Hugging Face cache links to its blobs) or without bound."""
    body = Path(body_dir)
    if not body.is_dir():
        raise ModelFormatError(f"model body not found: {body} is not a folder")
    root = Path(os.path.realpath(body))
    within = root if contained else None
    if (body / "modules.json").is_file():
        _check_modules(body / "modules.json", root, within)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames:  # a linked folder is not walked: it must lead inside, where it is
            if contained and os.path.islink(here / name):
                inside(root, str((here / name).relative_to(root)), "folder", body)
        for path in (here / name for name in filenames):
            if path.name.endswith((".py", ".pyc", ".pyw", ".so")):
                raise ModelFormatError(f"{body}: {path.relative_to(root)} is code; fastclf loads only model data, "
                                       "never code from a model folder")
            check_file(path, within)
            if path.name.endswith(".json"):
                try:
                    key = _code_key(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    continue  # not fastclf's to judge here: the loader reports a damaged file
                if key:
                    raise ModelFormatError(f"{path}: {key!r} asks to run custom model code; "
                                           "fastclf loads only model data")
