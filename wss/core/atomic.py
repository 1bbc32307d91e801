"""Atomic outputs: write under a temporary name in the same directory, then rename.

A stage killed halfway leaves either the old output or none, never a truncated file that a
later stage would take for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def target(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    With ``directory=True`` the temporary path is an existing empty directory.  On an
    exception the temporary path is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_MARK}{path.name}-", dir=path.parent))
    else:
        # Keep the full suffix (".weights.h5", ".keras"): some writers check the file name.
        fd, name = tempfile.mkstemp(prefix=f"{TMP_MARK}{path.name}-", suffix="".join(path.suffixes), dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            # A directory cannot be replaced by rename(2) unless empty: move the old one aside
            # first, so that at every instant either the old or the new tree is in place.
            old = None
            if path.exists():
                old = path.with_name(f"{TMP_MARK}{path.name}-old-{os.getpid()}")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                remove(old)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with target(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def clean_leftovers(directory: str | Path) -> None:
    """Remove temporary files an interrupted run left in ``directory``."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.glob(f"{TMP_MARK}*"):
            remove(p)
