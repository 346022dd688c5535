"""Atomic model directories.

A model directory is never changed in place. A writer (save, accelerate) builds the new
version in a staging folder beside it (``.NAME.tmp-<pid>-*``) and swaps it with the live one
in one rename. A reader notes the directory's identity (device, inode) before and after
reading: a change means it read across a swap, and it reads again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ._util import current_umask
from .config import CONFIG_FILE
from .config_sections import BODY_DIR, HEAD_FILE

#: what a model directory holds (fastclf.json, the head, the body folder); anything else is the user's
MODEL_ENTRIES = frozenset({CONFIG_FILE, HEAD_FILE, BODY_DIR})
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output_dir(path: Path, *, overwrite: bool = True) -> None:
    """Refuse to write a model over something that is not a fastclf model.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty directory without ``fastclf.json``
            (or any existing model when ``overwrite`` is False).
    """
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
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
    """Serialize the writers of models in ``path``'s parent folder (an advisory ``flock`` on
    the folder itself: no lock file is left behind). Readers never wait."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def make_staging(path: Path) -> Path:
    """A new, empty staging folder beside ``path``, named with this process's id."""
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "tmp"), dir=path.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when the system
    cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_dir(staging: Path, path: Path) -> None:
    """Put the complete folder ``staging`` at ``path``: a rename when ``path`` is absent or an
    empty folder, else an atomic swap; the old version is then deleted. ``staging`` is gone
    afterwards."""
    if not path.exists():
        os.replace(staging, path)
        return
    if _exchange(staging, path):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old version
        return
    try:  # a folder that is empty can be renamed over
        os.replace(staging, path)
        return
    except OSError:
        pass
    # no atomic swap on this system: a short moment without a folder at ``path``
    old = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "old"), dir=path.parent))
    os.replace(path, old / "model")
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def fix_permissions(root: Path) -> None:
    """Give the files below ``root`` 0666 and its folders 0777, less the umask (temporary
    files are created 0600, which would hide a model from the other users of a server)."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def staging_prefix(path: Path, what: str) -> str:
    """The name prefix of a staging folder beside the model ``path`` (``tmp``, or
    ``staging-<variant>`` for an export), with this process's id as its owner."""
    return f".{Path(path).name}.{what}-{os.getpid()}-"


def link_copy(src: Path, dst: Path, *, skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy the folder ``src`` to ``dst`` with hard links where possible (cheap, same bytes);
    the copy must then only be changed by replacing files (rename), never by writing in place."""

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if skip(Path(directory) / n)]

    shutil.copytree(src, dst, copy_function=copy, ignore=ignore, symlinks=True, dirs_exist_ok=True)
