"""Outputs a killed stage resumes: a directory stamped with the fingerprint of what fills it.

HED maps, shards, checkpoints and self-training's relabelled shards are all made item by item
into one directory, and all follow one protocol:

1. :func:`start` opens the directory for a fingerprint (:func:`wss.core.provenance.digest` of the
   params, inputs and code that make it).  It removes what a killed run left half-written and the
   manifest, so the directory reads "in progress".  When the stamp (:data:`STAMP`) holds another
   fingerprint, nothing in it was made by this code from these inputs, and it is emptied.  Then
   the stamp is written.
2. The stage skips the items already there and makes the rest, each written atomically
   (:mod:`wss.core.atomic`).
3. :func:`finish` writes the manifest, last: its presence marks a finished run.

A rerun with the same fingerprint after a kill therefore redoes only the missing items, and ends
with the output an uninterrupted run makes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wss.core import atomic

STAMP = "fingerprint.json"
MANIFEST = "manifest.json"


def stamp(directory: Path) -> str | None:
    """The fingerprint ``directory`` was filled for, or ``None`` (no stamp, or an unreadable one)."""
    try:
        return json.loads((Path(directory) / STAMP).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start(directory: Path, fingerprint: str, manifest: str = MANIFEST, keep: tuple[str, ...] = ()) -> bool:
    """Open ``directory`` to be filled for ``fingerprint`` (module docstring, step 1); return whether
    what an earlier run made there can be reused (its stamp matched).  The entries named in ``keep``
    are never cleared (outputs with fingerprints of their own)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic.clean_leftovers(directory)
    (directory / manifest).unlink(missing_ok=True)
    reusable = stamp(directory) == fingerprint
    if not reusable:
        clear(directory, keep)
        mark(directory, fingerprint)
    return reusable


def mark(directory: Path, fingerprint: str) -> None:
    """Stamp ``directory`` as filled for ``fingerprint`` (for an output made whole in a temporary
    directory, which needs no :func:`start`)."""
    atomic.write_json(Path(directory) / STAMP, {"fingerprint": fingerprint})


def clear(directory: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove everything in ``directory`` but its stamp and the entries named in ``keep``."""
    for p in Path(directory).iterdir():
        if p.name != STAMP and p.name not in keep:
            atomic.remove(p)


def finish(directory: Path, content: dict[str, Any], manifest: str = MANIFEST) -> None:
    """Write the manifest ``content``, last (module docstring, step 3)."""
    atomic.write_json(Path(directory) / manifest, content)


def finished(directory: Path, fingerprint: str, manifest: str = MANIFEST) -> dict[str, Any] | None:
    """The manifest of a finished run for ``fingerprint`` in ``directory``, or ``None``."""
    path = Path(directory) / manifest
    if stamp(directory) != fingerprint or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
