"""Files written atomically: :func:`atomic_path` (and :func:`write_text` over it), the one way sitewatch writes
a file that someone else may be reading.

The content goes to a temporary file beside the destination, under a unique name (two writers never share
one), and is renamed over the destination (:func:`os.replace`) only once complete: a reader (a web server
serving the feed, a GIS opening an export) sees the old file or the new one, never half of one.  When the
writing fails, the temporary file is removed and the destination keeps its old content.

The file gets the mode a plain ``open(path, "w")`` would give it, ``0o666`` less the process umask (``0o644``
under the usual umask 022): reports, the Atom feed, GeoJSON, exports and rasters are meant to be read by
others, a web server among them.  ``private=True`` gives ``0o600`` instead, for a file holding a secret.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_text"]

_ATTEMPTS = 100  # unique names tried before giving up (8 random hex digits each: one is always enough)


@contextmanager
def atomic_path(dest: str | Path, *, folder: bool = False, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest`` to write; rename it over ``dest`` when the block succeeds.

    The temporary file exists (empty) when the block starts, named ``.<name>.<random>.tmp`` in ``dest``'s
    folder (created if missing).  With ``folder`` it is ``<name>`` inside a fresh temporary folder instead, and
    does not exist yet: for writers that must create the file themselves or leave side files next to it (a
    GeoPackage's SQLite journal); the folder and whatever is left in it are removed afterwards.

    The file's mode is set before the rename: what ``open(path, "w")`` would give (``0o666`` less the umask),
    or ``0o600`` with ``private``.  If the block raises, the temporary file (or folder) is removed and ``dest``
    is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    box: Path | None = None
    if folder:
        box = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        tmp = box / dest.name
        mode = _create(tmp, private)  # learns the mode open() gives; the name is then left to the writer
        tmp.unlink()
    else:
        tmp, mode = _create_unique(dest, private)
    try:
        yield tmp
        os.chmod(tmp, mode)  # the writer may have replaced the file, or a driver chosen its own mode
        os.replace(tmp, dest)
    finally:
        if box is not None:
            shutil.rmtree(box, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text(dest: str | Path, text: str, *, private: bool = False) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``dest`` atomically (:func:`atomic_path`); returns ``dest``."""
    dest = Path(dest)
    with atomic_path(dest, private=private) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    return dest


def _create_unique(dest: Path, private: bool) -> tuple[Path, int]:
    """A new empty file with a unique temporary name beside ``dest``, and its mode."""
    for _ in range(_ATTEMPTS):
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, _create(tmp, private)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {dest} after {_ATTEMPTS} tries")


def _create(path: Path, private: bool) -> int:
    """Create ``path``, which must not exist, as ``open(path, "w")`` would (or private); return its mode.

    The kernel applies the umask, so the mode is learnt without reading the umask (``os.umask`` can only be
    read by setting it, which races with other threads creating files).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
