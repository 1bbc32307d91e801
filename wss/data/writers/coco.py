"""The user's COCO instances files, with the exported masks filled in.

For every instances file the dataset was read from, a copy at the same path under the output
directory, in which each annotation the pipeline used (joined by its annotation ``id``) gets
``segmentation`` (compressed RLE) and ``area`` (mask pixels) from its exported mask, plus
``wss_score`` (the model's mean probability inside its mask), ``wss_quality`` (the review's
quality, :mod:`wss.evaluation.review`) and ``wss_masks`` (which masks: ``model``, ``teacher`` or
``fused``, as ``export.masks``), and ``wss_review`` (``accepted`` or ``rejected``) on the
masks a reviewer decided on.  A rejected mask under ``review.rejected: drop`` is not written: its
annotation keeps what it had.  Everything else (images, categories, licences, other
annotations, every other field, the order of keys) is exactly as in the user's file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from wss.core import atomic
from wss.data.instances import key
from wss.errors import DataError


def write(table: pd.DataFrame, masks: dict[str, dict], data_root: Path, out: Path) -> dict[str, int]:
    """Write the filled copies under ``out``; ``masks`` maps an instance key to ``{"segmentation",
        "area", "score", "masks", "review"}`` (``masks``: which masks, as ``export.masks``; ``segmentation``
    ``None``: dropped).  Returns the number of
        annotations filled per file."""
    counts = {}
    for source_file, rows in table.groupby("source_file", sort=True):
        path = data_root / source_file
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the COCO file the instances came from ({exc})") from exc
        by_id = {str(r.source_id): key(r) for r in rows.itertuples()}
        filled = 0
        for ann in data.get("annotations", []):
            k = by_id.get(str(ann.get("id")))
            if k is None or k not in masks:
                continue
            m = masks[k]
            if m.get("review"):
                ann["wss_review"] = m["review"]
            if m["segmentation"] is None:  # a rejected mask, dropped: the annotation stays as it was
                continue
            ann.update(
                segmentation=m["segmentation"],
                area=m["area"],
                wss_score=m["score"],
                wss_quality=m["quality"],
                wss_masks=m["masks"],
            )
            filled += 1
        atomic.write_text(out / source_file, json.dumps(data))
        counts[str(source_file)] = filled
    return counts
