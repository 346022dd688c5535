"""Small helpers shared across fastclf: atomic file writes and the removal of what killed
writers left, checked JSON parsing and installed package versions.

Nothing here imports more than the standard library, so any module may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastclf.errors import FastclfError, write_error


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Create or replace ``path`` atomically: ``write(tmp)`` fills a temporary file beside it,
    (``.NAME.tmp-<pid>-*.tmp``), which is then renamed over ``path``. A reader sees the old file or
    the complete new one, and a failure (or Ctrl-C) leaves ``path`` as it was and no temporary
    file behind; one left by a killed process is removed by the next write (:func:`remove_stale`). The new
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    Raises:
        WriteError: the file system refused the write (an OSError: full, read-only, no permission).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)  # the temporary files of killed writers of this path
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FastclfError):  # disk full, no permission
            raise write_error(path, exc) from None
        raise


STALE_SECONDS = 600  # leftovers without a recorded owner are removed after this long


#: the owner's pid in a leftover's name: ``...-<pid>-<random>[.tmp]`` (mkdtemp's random part has no dash)
_OWNER_RE = re.compile(r"(?:^|-)(\d+)-[a-z0-9_]*(?:\.tmp)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _stale(entry: Path, rest: str, now: float) -> bool:
    """Whether a leftover is abandoned: its owner (the pid in its name) is dead, or, for a
    name without an owner (older fastclf), it is older than :data:`STALE_SECONDS`."""
    m = _OWNER_RE.search(rest)
    if m:
        return not _pid_alive(int(m.group(1)))
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_SECONDS


def remove_stale(path: Path) -> list[Path]:
    """Remove what killed runs left: ``.NAME.tmp-*``, ``.NAME.old-*`` and ``.NAME.staging-*``
    beside the model, and older fastclf's ``.staging-*`` inside it. A concurrent run's folders
    (owner alive, or recent when the name has no owner) are kept. Returns what was removed."""
    path = Path(path)
    now = time.time()
    removed: list[Path] = []
    candidates: list[tuple[Path, str]] = []
    prefixes = (f".{path.name}.tmp-", f".{path.name}.old-", f".{path.name}.staging-")
    try:
        for entry in path.parent.iterdir():
            for prefix in prefixes:
                if entry.name.startswith(prefix):
                    candidates.append((entry, entry.name[len(prefix):]))
    except OSError:
        return removed
    if path.is_dir():
        try:
            candidates += [(e, e.name[len(".staging-"):]) for e in path.iterdir() if e.name.startswith(".staging-")]
        except OSError:
            pass
    for entry, rest in candidates:
        if _stale(entry, rest, now):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def package_versions(packages: Iterable[str], *, include_missing: bool = False) -> dict[str, str | None]:
    """Installed versions of ``packages`` (distribution names). A package that is not
    installed is left out, or given as None with ``include_missing``."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if include_missing:
                out[name] = None
    return out


def load_json_as(text: str, expected: type, error: Callable[[str], Exception],
                 invalid: Callable[[json.JSONDecodeError | RecursionError], str], wrong_type: str) -> Any:
    """``json.loads(text)``, which must give an ``expected`` (``dict``, ``list``).

    Raises:
        ``error(invalid(exc))``: the text is not JSON (or nests too deeply).
        ``error(wrong_type)``: it is JSON of another type.
    """
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise error(invalid(exc)) from None
    if not isinstance(value, expected):
        raise error(wrong_type)
    return value
