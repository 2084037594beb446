"""The one way fitlib writes a file that others may read at any moment: atomically.

The bytes go to a temporary file of their own in the target's folder (a unique name per writer,
so concurrent writers never share one), are synced to disk, and the temporary file is renamed
over the target; the folder is synced too, so that the rename survives a power cut. A reader
sees the old file or the new one, never a part; a writer killed midway leaves the old file and
no stray temporary file (except after kill -9, when a ``.<name>.*.tmp`` may stay behind; it is
never read).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open ``path`` for writing bytes, atomically (see the module doc).

    Usage::

        with atomic_write("fit.json") as fh:
            fh.write(data)

    The target appears only if the block finishes without an exception; the parent folder must
    exist. Raises what the file system raises (e.g. ``OSError`` for a full disk), with the
    temporary file removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it is durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
