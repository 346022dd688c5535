"""Atomic model folders: a writer builds the new version in a staging folder beside the live one and
swaps them in one rename; a reader that sees the folder's identity change reads again."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from fastclf import backends
from fastclf._util import current_umask
from fastclf.config import BODY_DIR, CONFIG_FILE, HEAD_FILE, ModelConfig
from fastclf.errors import VariantNotExported

#: what a model directory holds (fastclf.json, the head, the body folder); anything else is the user's
MODEL_ENTRIES = frozenset({CONFIG_FILE, HEAD_FILE, BODY_DIR})
#: file suffixes of weights (and the model card) in a body folder: none is a tokenizer or config file
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pt2", ".pth", ".onnx", ".onnx_data", ".h5", ".msgpack", ".ckpt",
                   ".xml", ".md")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def identity(path: Path) -> tuple[int, int] | None:
    """The folder's (device, inode), or None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output_dir(path: Path, *, overwrite: bool = True) -> None:
    """FileExistsError unless ``path`` is absent, an empty folder, or (with ``overwrite``) a fastclf model
    holding nothing else."""
    path = Path(path)
    if not path.exists() or path.is_dir() and not any(path.iterdir()):
        return
    if not path.is_dir() or not overwrite or not (path / CONFIG_FILE).is_file():
        raise FileExistsError(f"{path} exists and is not a fastclf model; choose another output directory")
    # a new model replaces the whole folder: refuse to take the user's own files with it
    others = sorted(p.name for p in path.iterdir() if p.name not in MODEL_ENTRIES and not p.name.startswith("."))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise FileExistsError(f"{path} is a fastclf model that also holds other files ({shown}), which writing a new "
                              "model there would delete; move them, or choose another output directory")


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Serialize the writers of models in ``path``'s parent folder (``flock`` on the folder: no lock file)."""
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A new staging folder beside ``path`` (named with this process's id) that replaces it, with the umask's
    permissions, when the block ends without an error (removed when it raises)."""
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "tmp"), dir=path.parent))
    try:
        yield staging
        mask = current_umask()  # files 0666 and folders 0777 less the umask (temporary files are 0600)
        os.chmod(staging, 0o777 & ~mask)
        for dirpath, dirnames, filenames in os.walk(staging):
            for name, mode in [(d, 0o777) for d in dirnames] + [(f, 0o666) for f in filenames]:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, mode & ~mask)
        commit_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_dir(staging: Path, path: Path) -> None:
    """Put the complete folder ``staging`` at ``path`` (a rename, or an atomic swap) and delete the old version."""
    with contextlib.suppress(OSError):  # nothing there, or an empty folder: a rename
        os.replace(staging, path)
        return
    if _exchange(staging, path):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old version
        return
    # no atomic swap on this system: a short moment without a folder at ``path``
    old = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "old"), dir=path.parent))
    os.replace(path, old / "model")
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def staging_prefix(path: Path, what: str) -> str:
    """The name prefix of a staging folder beside the model ``path``, with this process's id as its owner."""
    return f".{Path(path).name}.{what}-{os.getpid()}-"


def link_copy(src: Path, dst: Path, *, skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy the folder ``src`` to ``dst`` with hard links where possible; change the copy only by renames."""

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:  # another file system
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy, ignore=lambda d, names: [n for n in names if skip(Path(d) / n)],
                    symlinks=True, dirs_exist_ok=True)


class ModelDir:
    """One model folder and the one rule for which variant runs in it: one recorded in fastclf.json with its
    files there (torch-fp32 always); by default the recorded default, or its CPU fallback, else torch-fp32."""

    def __init__(self, path: str | Path, config: ModelConfig | None = None):
        self.path = Path(path)
        self.config = ModelConfig.read(self.path) if config is None else config
        self.body_dir = self.path / BODY_DIR

    def exported(self) -> list[str]:
        """torch-fp32 and every recorded variant whose files exist, in the registry's order."""
        ref, recorded = backends.REFERENCE, self.config.variants
        return [ref] + [v for v in backends.VARIANTS
                        if v != ref and v in recorded and backends.is_exported(self.body_dir, v)]

    def default(self) -> str:
        """The variant that runs when none is named."""
        chosen, exported = self.config.default_variant, self.exported()
        if chosen is None or chosen not in exported:
            return backends.REFERENCE
        fallback = backends.variant_for_this_cpu(chosen, dict(self.config.default_variant_choice or {}) or None)
        return fallback if fallback in exported else backends.REFERENCE  # exported always holds torch-fp32

    def resolve(self, variant: str | None = None) -> str:
        """The variant that runs for ``variant`` (None: :meth:`default`); UnknownVariant, VariantNotExported."""
        if variant is None:
            return self.default()
        if not backends.get_spec(variant).files or variant in self.exported():
            return variant
        why = "its files are missing" if variant in self.config.variants else "not recorded in fastclf.json"
        command = backends.export_command(variant).replace("MODEL_DIR", str(self.path))
        raise VariantNotExported(f"variant {variant!r} is not exported in {self.path} ({why}); "
                                 f"create it with: {command}")

    def head_path(self, variant: str) -> Path:
        """The head ``variant`` runs with."""
        own = backends.get_spec(variant).head  # a variant whose body is a new model has its own head
        return self.body_dir / own if own else self.config.head_path(self.path)

    def files(self, variant: str) -> list[Path]:
        """The files running ``variant`` reads: its own, the weights if it :attr:`~VariantSpec.loads_weights`,
        the tokenizer and config files of the body, its head and fastclf.json."""
        spec, body = backends.get_spec(variant), self.body_dir
        files = [body / f for f in spec.files]
        if spec.loads_weights:
            files += [p for p in (body / "model.safetensors", body / "pytorch_model.bin") if p.is_file()][:1]
        files += [p for p in sorted(body.rglob("*")) if p.is_file() and p.suffix.lower() not in WEIGHT_SUFFIXES
                  and p.relative_to(body).parts[0] not in backends.RUNTIME_DIRS]
        files += [self.head_path(variant), self.path / CONFIG_FILE]
        return [p for p in dict.fromkeys(files) if p.is_file()]
