"""COCO instance annotations at the border: boxes and masks in, RLE masks out.

COCO's own conventions are converted here and nowhere else:

* ``bbox`` is ``[x, y, width, height]`` in float pixels; the project's box (``wss/__init__``) is
  integer ``(x1, y1, x2, y2)`` with ``x2``/``y2`` exclusive.  :func:`box_from_bbox` takes the
  smallest integer box that contains the float one, :func:`bbox_from_box` goes back exactly.
* ``segmentation`` is a list of polygons (flat ``[x1, y1, x2, y2, ...]``) or an RLE (``counts``
  a list for ``iscrowd`` annotations, or a compressed string); :func:`wss.core.masks.from_segmentation`
  turns either into the project's mask, and :func:`encode` turns a mask into the compressed RLE
  that pycocotools, Detectron2 and mmdetection read.

:func:`read` checks a whole instances file and says, per annotation, what is wrong with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from wss.core.boxes import Box
from wss.core.masks import to_rle
from wss.data import files
from wss.data.dataset import Annotation, Dataset
from wss.errors import DataError


def box_from_bbox(bbox: list[float]) -> Box:
    """COCO's ``[x, y, w, h]`` (float pixel edges) as the integer box of the pixels whose centres it
    contains: each edge rounded to the nearest pixel edge, so float noise (``20.0000001``) does not
    grow the box by a pixel."""
    x, y, w, h = (float(v) for v in bbox)
    return Box(round_edge(x), round_edge(y), round_edge(x + w), round_edge(y + h))


def round_edge(v: float) -> int:
    """A float pixel edge rounded to the nearest integer, halves up (not Python's banker's rounding)."""
    return math.floor(v + 0.5)


def bbox_from_box(box: Box) -> list[float]:
    """COCO's ``[x, y, w, h]`` of a project box."""
    return [float(box.x1), float(box.y1), float(box.width), float(box.height)]


def encode(mask: np.ndarray) -> dict:
    """The compressed RLE of a mask, JSON-ready (``counts`` as text), as COCO results files hold it."""
    return {"size": [int(v) for v in mask.shape[:2]], "counts": to_rle(mask)}


def annotation(annotation_id: int, image_id: int, category_id: int, box: Box, mask: np.ndarray, **extra: Any) -> dict:
    """One COCO annotation of an instance: its box as ``bbox``, its mask as compressed RLE."""
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox_from_box(box),
        "area": int(np.count_nonzero(mask)),
        "segmentation": encode(mask),
        "iscrowd": 0,
        **extra,
    }


def read(path: str | Path, split: str | None = None) -> Dataset:
    """Read and check a COCO instances JSON whose images all belong to ``split`` (``None``: to be
    split later).

    Raises :class:`~wss.errors.DataError` naming the file when it is not a COCO instances file at
    all (unreadable or malformed JSON, no ``images``/``annotations``/``categories`` lists).
    Otherwise every bad image or annotation becomes a reject row with the reason, and the rest is
    returned: duplicate image, annotation or category ids; an image without a positive size; an
    annotation of an unknown image or category; a box with no area or outside its image; a
    segmentation that is not polygons or RLE, a polygon outside the image, or an RLE whose runs do
    not add up to the image.
    """
    path = Path(path)
    data = files.read_json(path)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)")
    rejects: list[dict] = []

    def reject(image_id: Any, reason: str) -> None:
        rejects.append(
            {"file": str(path), "image_id": image_id if isinstance(image_id, (int, str)) else None, "reason": reason}
        )

    categories: dict[int, str] = {}
    for c in data["categories"]:
        cid, problem = _new_id(c, categories)
        if problem:
            reject(None, f"category {_short(cid)}: {problem}")
            continue
        categories[cid] = str(c.get("name", cid))
    images: dict[int, dict] = {}
    for im in data["images"]:
        iid, problem = _new_id(im, images)
        if problem:
            reject(iid, f"image {_short(iid)}: {problem}")
            continue
        h, w = im.get("height"), im.get("width")
        if (
            not (_integer(h) and _integer(w) and 0 < h < 2**20 and 0 < w < 2**20)
            or not isinstance(im.get("file_name"), str)
            or not im["file_name"]
        ):
            reject(iid, f"image {iid}: needs file_name and a positive height and width")
            continue
        images[iid] = {"file_name": str(im["file_name"]), "height": h, "width": w, "split": split, "coco_id": iid}
    annotations: list[Annotation] = []
    seen: set[int] = set()
    for a in data["annotations"]:
        aid, problem = _new_id(a, seen)
        if problem:
            reject(a.get("image_id") if isinstance(a, dict) else None, f"annotation {_short(aid)}: {problem}")
            continue
        seen.add(aid)
        reason = _check(a, images, categories)
        if reason:
            reject(a.get("image_id"), f"annotation {aid}: {reason}")
            continue
        annotations.append(
            Annotation(
                aid,
                a["image_id"],
                a["category_id"],
                box_from_bbox(a["bbox"]),
                a.get("segmentation") or None,
                bool(a.get("iscrowd", 0)),
                source_file=str(path),
                source_id=str(aid),
            )
        )
    return Dataset(images, categories, annotations, rejects)


def rle_string_counts(counts: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), or ``None``
    when it is cut off mid-number or holds a character outside the encoding."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                return None
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: Any) -> str:
    return repr(v)[:40]


def _new_id(entry: Any, seen: dict | set) -> tuple[Any, str]:
    """``entry``'s integer ``id`` and ``""``, or the id and why it is unusable (bad, or already in ``seen``)."""
    if not isinstance(entry, dict):
        return None, f"not an object ({type(entry).__name__})"
    eid = entry.get("id")
    if not _integer(eid):
        return eid, "bad id"
    return eid, "duplicate id" if eid in seen else ""


def _check(a: dict, images: dict[int, dict], categories: dict[int, str]) -> str:
    """Why annotation ``a`` is unusable, or ``""``."""
    if not _integer(a.get("image_id")) or a["image_id"] not in images:
        return f"unknown image id {_short(a.get('image_id'))}"
    if not _integer(a.get("category_id")) or a["category_id"] not in categories:
        return f"unknown category id {_short(a.get('category_id'))}"
    if a.get("iscrowd", 0) not in (0, 1, True, False):
        return f"iscrowd must be 0 or 1, not {_short(a.get('iscrowd'))}"
    bbox = a.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
        return f"bbox must be [x, y, w, h] of finite numbers, not {_short(bbox)}"
    im = images[a["image_id"]]
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"zero-area box {bbox}"
    if x >= im["width"] or y >= im["height"] or x + w <= 0 or y + h <= 0:
        return f"box {bbox} outside the {im['width']}x{im['height']} image"
    seg = a.get("segmentation")
    if seg in (None, [], {}):
        return ""
    if isinstance(seg, list):
        for poly in seg:
            if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(_finite(v) for v in poly)):
                return "a polygon must be a flat list of at least 3 x, y pairs"
            xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
            # One pixel of slack: COCO polygons trace pixel edges, so x == width is on the border.
            if xs.min() < -1 or ys.min() < -1 or xs.max() > im["width"] + 1 or ys.max() > im["height"] + 1:
                return f"polygon outside the {im['width']}x{im['height']} image"
        return ""
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        counts = seg["counts"]
        if not (isinstance(counts, str) or isinstance(counts, list) and all(_integer(c) and c >= 0 for c in counts)):
            return "RLE counts must be a string or a list of run lengths"
        if not isinstance(seg["size"], list) or seg["size"] != [im["height"], im["width"]]:
            return f"RLE size {_short(seg['size'])} is not the image's {[im['height'], im['width']]}"
        runs = counts if isinstance(counts, list) else rle_string_counts(counts)
        # pycocotools decodes runs that fall short of the image into uninitialised memory
        if runs is None or any(r < 0 for r in runs) or sum(runs) != im["height"] * im["width"]:
            return f"RLE counts do not add up to the image's {im['height']}x{im['width']} pixels"
        return ""
    return "segmentation must be polygons or an RLE"
