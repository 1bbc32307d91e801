"""The reviewer's decisions: the file the review gallery saves, and what the pipeline takes from it.

One CSV row per reviewed mask (the gallery writes it; :func:`write` writes the same format)::

    key,source_file,source_id,decision,time,height,width,mask

``key`` is the instance table's ``<image_id>/<instance_id>``, ``source_file`` / ``source_id`` where
the instance stands in the user's own annotation files, ``decision`` ``accept`` or ``reject``,
``time`` when it was made (ISO 8601).  An accepted row carries the mask the reviewer saw, as COCO
compressed RLE (``mask``) of a ``height x width`` image: the decision is about that mask, so it
keeps its meaning after the network that made it is retrained.

``review.decisions`` names one such file or a directory of them (every ``*.csv`` in it, read in name
order); when a mask was decided more than once, the latest ``time`` wins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wss.core import atomic
from wss.core.masks import from_rle, to_rle
from wss.data.instances import by_key
from wss.errors import DataError

COLUMNS = ("key", "source_file", "source_id", "decision", "time", "height", "width", "mask")
DECISIONS = ("accept", "reject")


def files(path: Path) -> list[Path]:
    """The decisions files ``path`` names: itself, or the ``*.csv`` of a directory in name order."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.glob("*.csv") if p.is_file())
    if path.is_file():
        return [path]
    raise DataError(f"{path}: no such decisions file or directory (review.decisions)")


def _read_one(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as a decisions CSV ({exc})") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: not a decisions file from the review gallery: no column {', '.join(missing)}")
    for i, r in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        where = f"{path}, line {i}"
        if r.decision not in DECISIONS:
            raise DataError(f"{where}: decision {r.decision!r} is neither accept nor reject")
        if not r.key:
            raise DataError(f"{where}: no key")
        if pd.isna(pd.to_datetime(r.time, errors="coerce", utc=True, format="ISO8601")):
            raise DataError(f"{where}: time {r.time!r} is not an ISO 8601 time")
        if r.decision == "accept":
            if not (r.height.isdigit() and r.width.isdigit() and int(r.height) > 0 and int(r.width) > 0):
                raise DataError(f"{where}: an accepted mask needs its height and width (got {r.height!r}, {r.width!r})")
            try:
                from_rle(r.mask, int(r.height), int(r.width))
            except Exception as exc:  # pycocotools raises bare exceptions on a broken RLE string
                raise DataError(f"{where}: the accepted mask is not a COCO RLE string of that size ({exc})") from exc
    df["file"] = str(path)
    df["line"] = np.arange(2, len(df) + 2)
    return df


def empty() -> pd.DataFrame:
    """The decisions table with no decision."""
    return pd.DataFrame(columns=[*COLUMNS, "file", "line"])


def read(path: Path) -> pd.DataFrame:
    """Every decision under ``path`` (:func:`files`), the latest per key, sorted by key; an empty
    table when there is none.  Raises :class:`~wss.errors.DataError` naming the file and line of a
    malformed row."""
    frames = [_read_one(p) for p in files(path)]
    if not frames:
        return empty()
    df = pd.concat(frames, ignore_index=True)
    df["_t"] = pd.to_datetime(df.time, utc=True, format="ISO8601")
    df = df.sort_values(["_t"], kind="stable").drop_duplicates("key", keep="last")
    return df.drop(columns="_t").sort_values("key").reset_index(drop=True)


def join(decisions: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``decisions`` checked against the instance ``table``: each key names one of its instances, at
    the same place in the user's files (``source_file``, ``source_id``) and, when accepted, with a
    mask of its image's size.  Raises :class:`~wss.errors.DataError` naming the file and line
    otherwise (decisions saved from another dataset, or from before its annotations changed)."""
    rows = by_key(table)
    for r in decisions.itertuples(index=False):
        where = f"{r.file}, line {r.line}"
        if r.key not in rows:
            raise DataError(
                f"{where}: no instance {r.key!r} in this dataset: decisions from another dataset? "
                "Move the file out of review.decisions"
            )
        t = rows[r.key]
        if (str(t.source_file), str(t.source_id)) != (r.source_file, r.source_id):
            raise DataError(
                f"{where}: instance {r.key!r} is {t.source_file} #{t.source_id} in this dataset, not "
                f"{r.source_file} #{r.source_id}: the annotations changed since the review"
            )
        if r.decision == "accept" and (int(r.height), int(r.width)) != (int(t.height), int(t.width)):
            raise DataError(
                f"{where}: the accepted mask is {r.height}x{r.width}, its image {int(t.height)}x{int(t.width)}"
            )
    return decisions


def masks(decisions: pd.DataFrame) -> dict[str, np.ndarray]:
    """The accepted masks by key, full resolution, uint8 0/1."""
    acc = decisions[decisions.decision == "accept"]
    return {r.key: from_rle(r.mask, int(r.height), int(r.width)) for r in acc.itertuples(index=False)}


def digest_parts(decisions: pd.DataFrame) -> list[tuple[str, str, str]]:
    """What of ``decisions`` shapes what the pipeline makes of them (for fingerprints): key,
    decision and mask; not the time or the file they came from."""
    return [(r.key, r.decision, r.mask if r.decision == "accept" else "") for r in decisions.itertuples(index=False)]


def write(path: Path, rows: pd.DataFrame, decided: dict[str, str], masks: dict[str, np.ndarray], time: str) -> None:
    """Write a decisions file as the gallery does: ``rows`` (instance rows with ``key``,
    ``source_file``, ``source_id``), ``decided`` key -> ``accept`` / ``reject``, the accepted
    ``masks`` by key, all at ``time``."""
    out = []
    for r in rows.itertuples(index=False):
        if r.key not in decided:
            continue
        d = decided[r.key]
        m = masks.get(r.key) if d == "accept" else None
        h, w = m.shape if m is not None else ("", "")
        out.append([r.key, r.source_file, r.source_id, d, time, h, w, to_rle(m) if m is not None else ""])
    atomic.write_text(path, pd.DataFrame(out, columns=list(COLUMNS)).to_csv(index=False))
