"""The masks ``predict`` makes: for one image, PNGs (:func:`write_pngs`); for a batch of images,
in the boxes' own format (:func:`write`, :func:`wss.data.readers.boxes.jobs_of`), as ``export``
writes a dataset's.

For a batch, COCO: ``out/<file>.json``, the user's file with ``segmentation`` and ``area`` filled in; YOLO:
``out/labels/<stem>.txt``, one polygon line per box line, in order; CSV: ``out/masks.json``, a
COCO file of the masks with ``row``, the CSV row each came from.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wss.core import atomic
from wss.core.boxes import Box
from wss.core.draw import overlay
from wss.data.readers import coco
from wss.data.readers.boxes import Job
from wss.data.writers import coco as coco_writer
from wss.data.writers import yolo as yolo_writer


def write(kind: str, boxes: Path, results: list[tuple[Job, list[np.ndarray]]], out: Path) -> dict[str, int]:
    """Write the masks of ``results`` (each job with one mask per box) for the boxes source ``boxes``
    of ``kind`` (``coco``, ``yolo`` or ``csv``) under ``out``; return the counts of images and masks."""
    if kind == "coco":
        rows, masks = [], {}
        for n, (job, ms) in enumerate(results):
            for k, (aid, m) in enumerate(zip(job.ids, ms), start=1):
                rows.append({"image_id": str(n), "instance_id": k, "source_file": boxes.name, "source_id": aid})
                masks[f"{n}/{k}"] = {
                    "segmentation": coco.encode(m),
                    "area": int(m.sum()),
                    "score": None,
                    "quality": None,
                    "masks": "model",
                }
        coco_writer.write(pd.DataFrame(rows), masks, boxes.parent, out)
    elif kind == "yolo":
        for job, ms in results:
            lines = [yolo_writer.polygon_line(c, m) for c, m in zip(job.categories, ms)]
            atomic.write_text(out / "labels" / f"{job.image.stem}.txt", "".join(f"{line}\n" for line in lines if line))
    else:
        images, anns = [], []
        for n, (job, ms) in enumerate(results, start=1):
            h, w = ms[0].shape if ms else (0, 0)
            images.append({"id": n, "file_name": job.image.name, "height": int(h), "width": int(w)})
            for b, c, row, m in zip(job.boxes, job.categories, job.ids, ms):
                anns.append(coco.annotation(len(anns) + 1, n, c, b, m, row=int(row)))
        cats = sorted({a["category_id"] for a in anns})
        atomic.write_json(
            out / "masks.json",
            {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cats]},
        )
    return {"images": len(results), "masks": sum(len(m) for _, m in results)}


def write_pngs(out: Path, stem: str, image: np.ndarray, boxes: list[Box], masks: list[np.ndarray]) -> None:
    """``<stem>_mask_<k>.png`` (0/255, the image's size) for each box and ``<stem>_overlay.png``
    (the masks drawn over the 8-bit BGR ``image``) under ``out``, each written atomically."""
    for k, m in enumerate(masks):
        atomic.write_bytes(out / f"{stem}_mask_{k}.png", cv2.imencode(".png", m * 255)[1].tobytes())
    drawn = overlay(image, [(b, m, None) for b, m in zip(boxes, masks)])
    atomic.write_bytes(out / f"{stem}_overlay.png", cv2.imencode(".png", drawn)[1].tobytes())
