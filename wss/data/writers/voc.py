"""The user's VOC devkit with segmentation PNGs made from the exported masks.

Under the output directory, at the devkit's own path: ``SegmentationObject/<id>.png`` (a palette
PNG, index ``k`` = the ``k``-th object of the XML, 0 = background, 255 = VOC's void band along
every object's outline) and ``SegmentationClass/<id>.png`` (each pixel the object's class index:
VOC's own for its 20 class names, else the dataset's category id; the same void band), in VOC's
colour map.  ``Annotations/``, ``ImageSets/`` and ``JPEGImages/`` are linked in unchanged, so the
copy is a complete devkit.  Where objects overlap, the smaller is drawn on top.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from wss.core import atomic
from wss.core.masks import VOID, from_rle
from wss.data.fetch import link_or_copy
from wss.data.instances import key
from wss.data.readers.sbd import VOC_CLASSES

BAND = 2  # pixels of void band on each side of an outline; VOC's own is about 5 px wide


@cache
def palette() -> tuple[int, ...]:
    """VOC's colour map: index ``i``'s colour from its bits, as the devkit's ``VOClabelcolormap``."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return tuple(colours)


def _png(index: np.ndarray) -> bytes:
    im = Image.fromarray(index.astype(np.uint8), mode="P")
    im.putpalette(list(palette()))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def maps(objects: list[tuple[int, int, np.ndarray]], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(object index map, class index map)`` of ``objects`` = ``[(k, class index, mask)]``."""
    obj = np.zeros((height, width), np.uint8)
    cls = np.zeros((height, width), np.uint8)
    band = np.zeros((height, width), bool)
    kernel = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)
    for k, c, m in sorted(objects, key=lambda o: -int(o[2].sum())):  # the smaller drawn last, on top
        obj[m == 1] = k
        cls[m == 1] = c
        band |= (cv2.dilate(m, kernel) - cv2.erode(m, kernel)) > 0
    obj[band] = VOID
    cls[band] = VOID
    return obj, cls


def write(table: pd.DataFrame, masks: dict[str, dict], data_root: Path, out: Path, devkit_rel: str) -> dict[str, int]:
    """Write the devkit copy under ``out``; ``masks`` maps an instance key to ``{"segmentation", ...}``
    (``None``: a rejected mask left out, and its object with it)."""
    kit = out / devkit_rel
    for name in ("Annotations", "ImageSets", "JPEGImages"):
        src = data_root / devkit_rel / name
        if src.is_dir():
            for f in sorted(src.rglob("*")):
                if f.is_file():
                    link_or_copy(f, kit / name / f.relative_to(src))
    voc_ids = {n: i for i, n in enumerate(VOC_CLASSES, start=1)}
    counts = {"images": 0, "objects": 0, "dropped": 0}
    for image_id, rows in table.groupby("image_id", sort=True):
        first = rows.iloc[0]
        h, w = int(first.height), int(first.width)
        objects = []
        for r in rows.itertuples():
            m = masks[key(r)]["segmentation"]
            if m is None:  # a rejected mask, dropped: the object is left out of the maps
                counts["dropped"] += 1
                continue
            cls = voc_ids.get(str(r.category_name), int(r.category))
            objects.append((int(r.source_id), min(cls, 254), from_rle(m["counts"], h, w)))
        obj, cls = maps(objects, h, w)
        atomic.write_bytes(kit / "SegmentationObject" / f"{image_id}.png", _png(obj))
        atomic.write_bytes(kit / "SegmentationClass" / f"{image_id}.png", _png(cls))
        counts["images"] += 1
        counts["objects"] += len(objects)
    return counts
