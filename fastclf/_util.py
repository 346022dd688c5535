"""Small helpers shared across fastclf: atomic file writes, checked JSON parsing and installed
package versions.

Nothing here imports more than the standard library, so any module may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import FastclfError, write_error


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Create or replace ``path`` atomically: ``write(tmp)`` fills a temporary file beside it,
    which is then renamed over ``path``. A reader sees the old file or the complete new one,
    and a failure (or Ctrl-C) leaves ``path`` as it was and no temporary file behind. The new
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    Raises:
        WriteError: the file system refused the write (an OSError: full, read-only, no permission).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
