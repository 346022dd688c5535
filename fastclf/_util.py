"""Small helpers any module may use (standard library only): atomic file writes, the removal of what killed
writers left and installed package versions."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from fastclf.errors import FastclfError, write_error

STALE_SECONDS = 600  # leftovers whose name records no owner are removed after this long
#: the owner's pid in a leftover's name: ``...-<pid>-<random>[.tmp]`` (mkdtemp's random part has no dash)
_OWNER_RE = re.compile(r"(?:^|-)(\d+)-[a-z0-9_]*(?:\.tmp)?$")


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Create or replace ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, renamed over
    ``path`` with the usual permissions; a failure leaves ``path`` as it was (an OSError raises WriteError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
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


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _stale(entry: Path, rest: str) -> bool:
    """Whether a leftover's owner (the pid in its name) is dead or, without one, it is older than STALE_SECONDS."""
    m = _OWNER_RE.search(rest)
    try:
        if m:
            os.kill(int(m.group(1)), 0)
            return False
        return time.time() - entry.lstat().st_mtime > STALE_SECONDS
    except PermissionError:  # the owner runs as another user
        return False
    except (OSError, OverflowError):
        return m is not None


def remove_stale(path: Path) -> list[Path]:
    """Remove what killed runs left (``.NAME.tmp-*``, ``.NAME.old-*`` and ``.NAME.staging-*`` beside the model,
    older fastclf's ``.staging-*`` inside it), keeping a live run's; returns what was removed."""
    path = Path(path)
    prefixes = (f".{path.name}.tmp-", f".{path.name}.old-", f".{path.name}.staging-")
    candidates: list[tuple[Path, str]] = []
    with contextlib.suppress(OSError):
        candidates += [(e, e.name[len(p):]) for e in path.parent.iterdir() for p in prefixes if e.name.startswith(p)]
        if path.is_dir():
            candidates += [(e, e.name[len(".staging-"):]) for e in path.iterdir() if e.name.startswith(".staging-")]
    removed = [entry for entry, rest in candidates if _stale(entry, rest)]
    for entry in removed:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return removed


def package_versions(packages: Iterable[str], *, include_missing: bool = False) -> dict[str, str | None]:
    """Installed versions of ``packages`` (distribution names); one not installed is left out, or None."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if include_missing:
                out[name] = None
    return out
