"""What every dataset reader returns (:class:`Dataset`), and how it becomes the instance table.

The readers (:mod:`wss.data.readers.sbd`, :mod:`wss.data.readers.coco`,
:mod:`wss.data.readers.yolo`, :mod:`wss.data.readers.voc`) convert their format's conventions at
the border: boxes in the project's convention, masks as COCO-form
segmentations, categories as the file has them.  :func:`table` then checks every image the
same way, assigns splits and numbers the instances, whatever the source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from wss.core.boxes import Box, clip
from wss.core.image import CEILING as image_ceiling
from wss.core.image import problem as image_problem
from wss.core.masks import from_segmentation, to_rle
from wss.data import files
from wss.data.instances import COLUMNS, SPLITS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what the readers look for


@dataclass(frozen=True)
class Annotation:
    """One usable annotation, in the project's box convention with a COCO-form segmentation."""

    annotation_id: int
    image_id: int | str
    category_id: int
    box: Box
    segmentation: Any  # polygons or RLE as COCO has them; None for an annotation without a mask
    iscrowd: bool
    difficult: bool = False  # VOC's flag
    # Where the annotation stands in the user's own files, so exported masks join back to them:
    # the annotation file (a path as the reader opened it; relative to the dataset root once tabled)
    # and the id within it (COCO: the annotation id; YOLO: the line number; VOC: the object's index
    # in the XML; SBD: the instance).
    source_file: str = ""
    source_id: str = ""


@dataclass(frozen=True)
class Dataset:
    """A detection/segmentation dataset as every reader returns it."""

    # id -> {"file_name" (relative to the dataset root), "height", "width", "split", and optionally "name",
    # the image id the table uses when the dataset's own id is not one (COCO's numbers: the file stem),
    # and "coco_id", the id in the COCO file it came from}
    images: dict[int | str, dict]
    categories: dict[int, str]  # id -> name, as the file has them
    annotations: list[Annotation]
    rejects: list[dict]  # {"file", "image_id", "reason"}


def val_images(image_ids: list[str] | set[str], fraction: float) -> set[str]:
    """The ``round(fraction * n)`` of the ``n`` image ids that go to val: the ids ranked by a hash of
    the id and cut at the fraction, so the share is exact on a small dataset too and the choice
    never depends on file order."""
    ranked = sorted(set(image_ids), key=lambda i: (hashlib.sha256(str(i).encode()).digest(), str(i)))
    return set(ranked[: round(fraction * len(ranked))])


def table(
    ds: Dataset, root: Path, val_fraction: float, keep_ids: bool, max_pixels: int = image_ceiling
) -> tuple[pd.DataFrame, list[dict]]:
    """The instance table (:mod:`wss.data.instances`) of ``ds`` whose files lie under ``root``, and the rejects.

    Crowd annotations are left out, as COCO's evaluation does.  When no image is in ``val``, a
    ``val_fraction`` of the images go there by :func:`val_images`; images in other splits (``test``)
    are left out.  ``keep_ids`` keeps the dataset's own integer image ids for export (COCO);
    otherwise images are numbered 1, 2, ... in image-id order.  An image of more than ``max_pixels``
    pixels is a reject (:func:`wss.core.image.problem`).
    """
    rejects = list(ds.rejects)
    has_val = any(im["split"] == "val" for im in ds.images.values())
    by_image: dict[Any, list[Annotation]] = {}
    for a in ds.annotations:
        if not a.iscrowd:
            by_image.setdefault(a.image_id, []).append(a)
    numbers = {iid: n for n, iid in enumerate(sorted(ds.images, key=str), start=1)}
    todo = []
    names: set[str] = set()
    to_split = {str(ds.images[i].get("name", i)) for i in by_image if ds.images[i]["split"] in (None, "train")}
    val = set() if has_val else val_images(to_split, val_fraction)
    for iid, anns in by_image.items():
        im = ds.images[iid]
        name = str(im.get("name", iid))
        split = im["split"]
        if not has_val and split in (None, "train"):
            split = "val" if name in val else "train"
        if split not in SPLITS:
            continue
        path = root / im["file_name"]
        if not files.inside(path, root):
            reason = f"image {files.excerpt(str(im['file_name']))} lies outside the dataset"
            rejects.append({"file": str(root), "image_id": name, "reason": reason})
            continue
        if name in names:
            rejects.append({"file": str(path), "image_id": name, "reason": f"a second image named {name}"})
            continue
        names.add(name)
        todo.append((iid, name, split, path, anns))
    # Decoding every image dominates on large datasets; OpenCV and PIL release the GIL.
    reasons = Parallel(n_jobs=-1, prefer="threads")(
        delayed(image_problem)(path, ds.images[iid]["height"], ds.images[iid]["width"], max_pixels)
        for iid, _, _, path, _ in todo
    )
    rows = []
    for (iid, name, split, path, anns), reason in zip(todo, reasons):
        im = ds.images[iid]
        if reason:
            rejects.append({"file": str(path), "image_id": name, "reason": reason})
            continue
        h, w = im["height"], im["width"]
        for a in anns:
            row, reason = _row(a, h, w)
            if reason:
                rejects.append(
                    {"file": str(path), "image_id": name, "reason": f"annotation {a.annotation_id}: {reason}"}
                )
                continue
            row.update(
                image_id=name,
                split=split,
                category_name=ds.categories[a.category_id],
                height=h,
                width=w,
                file=im["file_name"],
                coco_image_id=int(im["coco_id"]) if keep_ids else numbers[iid],
                source_file=_relative(a.source_file, root),
                source_id=str(a.source_id),
            )
            rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "instance_id"])
    out["instance_id"] = out.groupby("image_id", sort=False).cumcount() + 1
    return out[COLUMNS], rejects


def _relative(file: str, root: Path) -> str:
    """``file`` (a reader's path, absolute or relative to the working directory) relative to the
    dataset root."""
    if not file:
        return ""
    try:
        return str(Path(file).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(file)


def _row(a: Annotation, h: int, w: int) -> tuple[dict, str]:
    """The table fields of one annotation, or why it is unusable."""
    box = clip(a.box, h, w)
    if box.width <= 0 or box.height <= 0:
        return {}, f"box {tuple(a.box)} outside the {w}x{h} image"
    counts, area = "", box.area
    if a.segmentation is not None:
        try:
            mask = from_segmentation(a.segmentation, h, w)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:  # pycocotools' answer to a bad RLE
            return {}, f"unreadable segmentation ({type(exc).__name__}: {str(exc)[:80]})"
        area = int(np.count_nonzero(mask))
        if not area:
            return {}, "mask has no pixels"
        if not mask[box.y1 : box.y2, box.x1 : box.x2].any():
            return {}, f"mask has no pixel inside its box {tuple(a.box)}"
        counts = to_rle(mask)
    return {
        "category": int(a.category_id),
        "x1": box.x1,
        "y1": box.y1,
        "x2": box.x2,
        "y2": box.y2,
        "area": area,
        "mask": counts,
        "difficult": bool(a.difficult),
    }, ""


def files_under(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files under ``root`` with one of ``suffixes`` (lower-case), in sorted order."""
    return (p for p in sorted(root.rglob("*")) if p.suffix.lower() in suffixes and p.is_file())
