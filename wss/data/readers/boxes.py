"""Boxes to segment on images of the user's own (the ``predict`` command's input), one reader per kind.

Boxes are pixel ``x1,y1,x2,y2`` with ``x2``/``y2`` exclusive, as everywhere in the pipeline.
For one image: ``--box`` text (:func:`parse_box`) or a boxes file (:func:`read_boxes`): CSV with a
header containing ``x1,y1,x2,y2`` (other columns are ignored) or JSON, a list of
``[x1, y1, x2, y2]`` or of objects with those keys.  For a directory of images (:func:`jobs_of`):
a COCO instances JSON, a directory of YOLO label files, or a CSV with ``image, x1, y1, x2, y2``
(and optionally ``category``), each box keeping where it stands in the user's file.

Bad input raises :class:`InputError`, whose message names the file or box and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wss.core.boxes import Box, clip, is_degenerate
from wss.core.image import size as image_size
from wss.data import files
from wss.data.dataset import IMAGE_SUFFIXES
from wss.data.readers import coco
from wss.data.readers.yolo import parse_line as yolo_parse
from wss.errors import DataError


class InputError(DataError):
    """Bad input to ``predict``: an image, a box or a boxes file; the message names which and what is wrong."""


def parse_box(text: str) -> Box:
    """The box of ``--box`` text ``x1,y1,x2,y2`` (numbers rounded to pixels)."""
    try:
        values = [int(round(float(v))) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(f"--box {text!r}: expected four numbers x1,y1,x2,y2")
    return Box(*values)


def read_boxes(path: Path) -> list[Box]:
    """Boxes from a CSV (header with x1,y1,x2,y2) or JSON file."""
    if not path.is_file():
        raise InputError(f"{path}: no such boxes file")
    try:
        if path.suffix.lower() == ".json":
            items = files.read_json(path)
            rows = [[item[k] for k in ("x1", "y1", "x2", "y2")] if isinstance(item, dict) else item for item in items]
        else:
            table = pd.read_csv(path)
            rows = table[["x1", "y1", "x2", "y2"]].to_numpy().tolist()
        boxes = [Box(*(int(round(float(v))) for v in row)) for row in rows]
    except DataError as exc:  # the file's own problem, already named: said once
        raise InputError(f"{exc}; expected x1,y1,x2,y2 per box") from exc
    except (ValueError, KeyError, TypeError, OverflowError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: cannot read boxes ({type(exc).__name__}: {exc}); expected x1,y1,x2,y2 per box"
        ) from exc
    if not boxes:
        raise InputError(f"{path}: holds no boxes")
    return boxes


def inside_image(box: Box, k: int, height: int, width: int) -> Box:
    """Box ``k`` clipped to the image; an error if nothing of it is inside or it has no area."""
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        raise InputError(f"box {k} {tuple(box)}: zero area (need x1 < x2 and y1 < y2)")
    inside = clip(box, height, width)
    if inside.area == 0:
        raise InputError(f"box {k} {tuple(box)}: outside the {width}x{height} image")
    if is_degenerate(inside):
        raise InputError(f"box {k} {tuple(box)}: too small to segment inside the {width}x{height} image")
    return inside


@dataclass(frozen=True)
class Job:
    """One image of a batch and its boxes, with where each box stands in the user's boxes file."""

    image: Path
    boxes: list[Box]
    categories: list[int]
    ids: list[str]  # COCO: annotation ids; YOLO: line numbers; CSV: row numbers


def jobs_of(boxes: Path, images: Path) -> tuple[str, list[Job]]:
    """The kind of a boxes source (``coco`` JSON, ``yolo`` labels directory, ``csv``) and its jobs,
    the images looked up under ``images``."""
    if boxes.is_dir():
        return "yolo", yolo_jobs(boxes, images)
    if not boxes.is_file():
        raise InputError(f"{boxes}: no such boxes file or directory")
    if boxes.suffix.lower() == ".json":
        return "coco", coco_jobs(boxes, images)[0]
    return "csv", csv_jobs(boxes, images)


def coco_jobs(path: Path, images: Path) -> tuple[list[Job], Any]:
    """The jobs of a COCO file of boxes (its images looked up under ``images``) and the dataset read."""
    ds = coco.read(path)
    if ds.rejects:
        first = ds.rejects[0]
        raise InputError(f"{path}: {len(ds.rejects)} unusable entries, e.g. {first['reason']}")
    jobs: dict[Any, Job] = {}
    for a in ds.annotations:
        if a.iscrowd:
            continue
        im = ds.images[a.image_id]
        job = jobs.setdefault(a.image_id, Job(_find(images, im["file_name"]), [], [], []))
        job.boxes.append(a.box)
        job.categories.append(a.category_id)
        job.ids.append(str(a.annotation_id))
    return list(jobs.values()), ds


def yolo_jobs(labels: Path, images: Path) -> list[Job]:
    """The jobs of a directory of YOLO label files, each beside an image of the same stem under ``images``."""
    by_stem = {p.stem: p for p in sorted(images.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
    jobs = []
    for txt in sorted(labels.rglob("*.txt")):
        if txt.stem not in by_stem:
            raise InputError(f"{txt}: no image {txt.stem}.* under {images}")
        h, w = image_size(by_stem[txt.stem])
        job = Job(by_stem[txt.stem], [], [], [])
        for k, line in enumerate(files.read_text(txt).splitlines(), start=1):
            if not line.strip():
                continue
            ann, reason = yolo_parse(line, _AnyClass(), h, w, txt.stem, k)
            if reason:
                raise InputError(f"{txt}: line {k}: {reason}")
            job.boxes.append(ann.box)
            job.categories.append(ann.category_id)
            job.ids.append(str(k))
        jobs.append(job)
    if not jobs:
        raise InputError(f"{labels}: no YOLO label files (*.txt)")
    return jobs


def csv_jobs(path: Path, images: Path) -> list[Job]:
    """The jobs of a CSV with columns ``image, x1, y1, x2, y2`` (and optionally ``category``)."""
    try:
        table = pd.read_csv(path)
        missing = {"image", "x1", "y1", "x2", "y2"} - set(table.columns)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        jobs: dict[str, Job] = {}
        for n, r in enumerate(table.itertuples(), start=2):  # row numbers as a spreadsheet shows them
            job = jobs.setdefault(str(r.image), Job(_find(images, str(r.image)), [], [], []))
            job.boxes.append(Box(*(int(round(float(v))) for v in (r.x1, r.y1, r.x2, r.y2))))
            job.categories.append(int(getattr(r, "category", 1)))
            job.ids.append(str(n))
    except (ValueError, KeyError, TypeError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: cannot read boxes ({type(exc).__name__}: {exc}); expected columns image, x1, y1, x2, y2"
        ) from exc
    return list(jobs.values())


class _AnyClass(dict):
    """YOLO class ids are whatever the user's yaml names: any id is known."""

    def __contains__(self, item: object) -> bool:
        return True


def _find(images: Path, name: str) -> Path:
    path = images / name
    if path.is_file():
        return path
    hits = list(images.rglob(Path(name).name))
    if len(hits) != 1:
        raise InputError(
            f"{images / name}: no such image" if not hits else f"{name}: several images of that name under {images}"
        )
    return hits[0]
