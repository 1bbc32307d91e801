"""Instance masks for a new image and its boxes, with a trained model (the ``predict`` command's work).

Boxes are pixel ``x1,y1,x2,y2`` with ``x2``/``y2`` exclusive.  A boxes file is CSV with a header
containing ``x1,y1,x2,y2`` (other columns are ignored) or JSON: a list of ``[x1, y1, x2, y2]`` or of
objects with those keys.  Bad input raises :class:`InputError`, whose message names the file or
box and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from wss import config
from wss.config import EvaluateConfig
from wss.core import image
from wss.core.boxes import Box, clip, is_degenerate
from wss.core.image import size as image_size
from wss.core.masks import crop_instance, paste
from wss.data.dataset import IMAGE_SUFFIXES
from wss.data.readers import coco
from wss.data.readers.yolo import parse_line as yolo_parse
from wss.errors import DataError
from wss.evaluation.refine import inside_box, refine
from wss.labels import boundaries


class InputError(DataError):
    """Bad user input; the message says which file or box and what is wrong."""


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as :func:`wss.core.image.read` reads it for every stage (upright, 8-bit BGR)."""
    try:
        return image.read(path)
    except DataError as exc:
        raise InputError(str(exc)) from None


def parse_box(text: str) -> Box:
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
            items = json.loads(path.read_text())
            rows = [[item[k] for k in ("x1", "y1", "x2", "y2")] if isinstance(item, dict) else item for item in items]
        else:
            table = pd.read_csv(path)
            rows = table[["x1", "y1", "x2", "y2"]].to_numpy().tolist()
        boxes = [Box(*(int(round(float(v))) for v in row)) for row in rows]
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read boxes ({type(exc).__name__}: {exc}); expected x1,y1,x2,y2 per box") from exc
    if not boxes:
        raise InputError(f"{path}: holds no boxes")
    return boxes


def check_box(box: Box, k: int, height: int, width: int) -> Box:
    """The box clipped to the image; an error if nothing of it is inside or it has no area."""
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        raise InputError(f"box {k} {tuple(box)}: zero area (need x1 < x2 and y1 < y2)")
    inside = clip(box, height, width)
    if inside.area == 0:
        raise InputError(f"box {k} {tuple(box)}: outside the {width}x{height} image")
    if is_degenerate(inside):
        raise InputError(f"box {k} {tuple(box)}: too small to segment inside the {width}x{height} image")
    return inside


def load_model(path: Path):
    from wss.net.model import load, sidecar

    if not path.is_file():
        raise InputError(f"{path}: no such model file (train one with `dvc repro train`)")
    meta = sidecar(path)
    if not meta.is_file():
        raise InputError(f"{meta}: missing; it records the crop transform and is written next to the model by the train stage")
    try:
        net = load(str(path))
        info = json.loads(meta.read_text())
        size, margin = int(info["crop_size"]), float(info["context_margin"])
    except Exception as exc:  # keras raises many types for a file that is not a model
        raise InputError(f"{path}: not a wss model ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(net.output, dict) or "fused" not in net.output:
        raise InputError(f"{path}: not a wss model (no 'fused' output)")
    return net, size, margin


def settings(params: str | Path, threshold: float | None, flip: bool | None, refine: bool | None):
    """``(threshold, flip, cut)`` for ``predict``: each as given, else from the ``evaluate`` section
    of ``params``; ``cut`` is that section when the masks go through the refinement cut, else None."""
    if threshold is not None and flip is not None and refine is False:
        return threshold, flip, None
    if not Path(params).is_file():
        raise InputError(f"{params}: no such params file; give --params, or --threshold, --flip/--no-flip "
                         "and --no-refine")  # fmt: skip
    cfg = config.typed(EvaluateConfig, config.section(config.load(params), "evaluate"), "evaluate")
    return (cfg.threshold if threshold is None else threshold, cfg.flip if flip is None else flip,
            cfg if (cfg.refine if refine is None else refine) else None)  # fmt: skip


def hed_for(cut: EvaluateConfig | None):
    """HED, when the refinement cut's pairwise term needs boundary maps of new images; else None."""
    return boundaries.load_model() if cut is not None and cut.cut_pairwise == "hed" else None


def predict(net, size: int, margin: float, image_bgr: np.ndarray, boxes: list[Box], threshold: float,
            flip: bool, cut: EvaluateConfig | None = None, hed=None) -> list[np.ndarray]:
    """Full-resolution uint8 masks, one per box.  With ``cut`` (the ``evaluate`` settings), each
    probability map goes through :func:`wss.evaluation.refine.refine` instead of the threshold;
    its ``hed`` pairwise term needs ``hed`` (:func:`wss.labels.boundaries.load_model`)."""
    from wss.net.model import predict_proba

    h, w = image_bgr.shape[:2]
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    crops = [crop_instance(rgb, b, size, margin) for b in boxes]
    probs = predict_proba(net, np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]), flip=flip)
    full = [inside_box(paste(p, c[2], h, w), b) for p, c, b in zip(probs, crops, boxes)]
    if cut is None:
        return [(p >= threshold).astype(np.uint8) for p in full]
    edges = boundaries.detect(hed, [image_bgr])[0] if cut.cut_pairwise == "hed" else None
    return [refine(image_bgr, p, b, edges, cut.cut_gamma, cut.cut_sigma, cut.cut_max_side) for p, b in zip(full, boxes)]


@dataclass(frozen=True)
class Job:
    """One image of a batch and its boxes, with where each box stands in the user's boxes file."""

    image: Path
    boxes: list[Box]
    categories: list[int]
    ids: list[str]  # COCO: annotation ids; YOLO: line numbers; CSV: row numbers


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
        for k, line in enumerate(txt.read_text().splitlines(), start=1):
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
        raise InputError(f"{path}: cannot read boxes ({type(exc).__name__}: {exc}); expected columns image, x1, y1, "
                         f"x2, y2") from exc  # fmt: skip
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
        raise InputError(f"{images / name}: no such image" if not hits else f"{name}: several images of that name "
                         f"under {images}")  # fmt: skip
    return hits[0]


def predict_many(net, size: int, margin: float, jobs: list[Job], threshold: float, flip: bool,
                 cut: EvaluateConfig | None = None, hed=None):
    """``(job, masks)`` for every job, one image in memory at a time, the model loaded once
    (``cut``, ``hed``: as :func:`predict`)."""
    for job in jobs:
        image = read_image(job.image)
        h, w = image.shape[:2]
        boxes = [check_box(b, k, h, w) for k, b in enumerate(job.boxes)]
        yield job, predict(net, size, margin, image, boxes, threshold, flip, cut, hed) if boxes else []


def jobs_of(boxes: Path, images: Path) -> tuple[str, list[Job]]:
    """The kind of a boxes source (``coco`` JSON, ``yolo`` labels directory, ``csv``) and its jobs."""
    if boxes.is_dir():
        return "yolo", yolo_jobs(boxes, images)
    if not boxes.is_file():
        raise InputError(f"{boxes}: no such boxes file or directory")
    if boxes.suffix.lower() == ".json":
        return "coco", coco_jobs(boxes, images)[0]
    return "csv", csv_jobs(boxes, images)


def write_batch(kind: str, boxes: Path, results: list[tuple[Job, list[np.ndarray]]], out: Path) -> dict[str, int]:
    """Write the masks of a batch in the boxes source's own format, as ``export`` does:
    COCO: ``out/<file>.json``, the user's file with ``segmentation`` and ``area`` filled in;
    YOLO: ``out/labels/...``, one polygon line per box line, in order; CSV: ``out/masks.json``, a COCO
    file of the masks with ``row``, the CSV row each came from."""
    from wss.core import atomic
    from wss.data.writers import coco as coco_writer
    from wss.data.writers import yolo as yolo_writer

    count = sum(len(m) for _, m in results)
    if kind == "coco":
        rows, masks = [], {}
        for n, (job, ms) in enumerate(results):
            for k, (aid, m) in enumerate(zip(job.ids, ms), start=1):
                rows.append({"image_id": str(n), "instance_id": k, "source_file": boxes.name, "source_id": aid})
                masks[f"{n}/{k}"] = {"segmentation": coco.encode(m), "area": int(m.sum()), "score": None,
                                     "quality": None, "source": "model"}  # fmt: skip
        coco_writer.write(pd.DataFrame(rows), masks, boxes.parent, out)
    elif kind == "yolo":
        for job, ms in results:
            lines = [yolo_writer.polygon_line(c, m) for c, m in zip(job.categories, ms)]
            text = "".join(f"{line}\n" for line in lines if line)
            atomic.write_text(out / "labels" / f"{job.image.stem}.txt", text)
    else:
        images, anns = [], []
        for n, (job, ms) in enumerate(results, start=1):
            h, w = ms[0].shape if ms else (0, 0)
            images.append({"id": n, "file_name": job.image.name, "height": int(h), "width": int(w)})
            for b, c, row, m in zip(job.boxes, job.categories, job.ids, ms):
                anns.append(coco.annotation(len(anns) + 1, n, c, b, m, row=int(row)))
        cats = sorted({a["category_id"] for a in anns})
        atomic.write_json(out / "masks.json", {"images": images, "annotations": anns,
                                               "categories": [{"id": c, "name": str(c)} for c in cats]})  # fmt: skip
    return {"images": len(results), "masks": count}
