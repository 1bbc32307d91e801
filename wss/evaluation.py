"""The trained model on every val instance, scored at full resolution: the ``evaluate`` stage's work.

Each val crop (made by the labels stage with the training transform) is predicted in batches,
the probability map is pasted back into the full image through its crop window, thresholded at
``evaluate.threshold`` and compared with the full-resolution ground truth.  The raw GrabCut
labels of the same instances are scored as a training-free segmenter, the teacher the network
should beat, twice: ``grabcut_labels`` at full resolution, exactly as GrabCut made them (the
number to beat), and ``grabcut_labels_via_crops`` pasted back through the same crops as the
model's predictions (what the crop resolution alone costs).

Results: the headline numbers, per-class numbers, and plots: ``recall.tsv`` (recall vs IoU
threshold), ``per_class.tsv``, ``instances.tsv`` (every instance's scores) and ``overlays/*.png``
(image, box, ground-truth outline, predicted mask).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from wss import atomic, metrics, params, sbd, shards
from wss.boxes import Box
from wss.instances import MaskReader
from wss.draw import overlay
from wss.masks import paste

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` params section (``predict`` uses its ``threshold`` and ``flip`` too)."""

    threshold: float  # on the predicted probability
    boundary_tolerance: float
    batch_size: int
    n_overlays: int
    flip: bool  # average with the mirrored crop's prediction

    def validate(self) -> None:
        req = params.require
        req(0 < self.threshold < 1, "evaluate.threshold", "lie in (0, 1)", self.threshold)
        req(self.boundary_tolerance > 0, "evaluate.boundary_tolerance", "be > 0", self.boundary_tolerance)
        req(self.batch_size >= 1, "evaluate.batch_size", "be >= 1", self.batch_size)
        req(self.n_overlays >= 0, "evaluate.n_overlays", "be >= 0", self.n_overlays)


@dataclass
class Instance:
    """One val instance at full resolution: the model's mask and the teacher's two versions."""

    key: str
    category: int
    box: Box
    pred: np.ndarray  # the model's mask, pasted back through the crop window and thresholded
    teacher: np.ndarray  # the GrabCut label exactly as GrabCut made it
    teacher_via_crop: np.ndarray  # the GrabCut label's crop, pasted back like ``pred``


def predict_val(model, shard_dir: Path, cfg: EvaluateConfig) -> Iterator[Instance]:
    """The model's full-resolution mask for every val instance of the shards, in shard order."""
    from wss.model import predict_proba

    for path in shards.files(shard_dir, "val"):
        data = shards.read(path, ("image", "box", "grabcut", "grabcut_full", "window", "box_xyxy", "image_size",
                                  "key", "category"))  # fmt: skip
        probs = predict_proba(model, data["image"], data["box"], cfg.batch_size, cfg.flip)
        for i, key in enumerate(data["key"]):
            h, w = (int(v) for v in data["image_size"][i])
            window = Box(*(int(v) for v in data["window"][i]))
            yield Instance(
                key=str(key), category=int(data["category"][i]), box=Box(*(int(v) for v in data["box_xyxy"][i])),
                pred=(paste(probs[i], window, h, w) >= cfg.threshold).astype(np.uint8),
                teacher=shards.full_label(data["grabcut_full"][i], data["box_xyxy"][i], data["image_size"][i]),
                teacher_via_crop=(paste(data["grabcut"][i].astype(np.float32), window, h, w) >= 0.5).astype(np.uint8),
            )  # fmt: skip


def evaluate(model, shard_dir: Path, instances_dir: Path, sbd_root: Path, cfg: EvaluateConfig,
             plots_dir: Path) -> tuple[dict, dict]:
    """Score ``model`` (a loaded network, :func:`wss.model.load`) and the GrabCut labels on val;
    write the plots; return (summary, per-class)."""
    total = sum(s["count"] for s in shards.read_manifest(shard_dir)["shards"] if s["split"] == "val")
    if not total:
        raise SystemExit(f"evaluate: {shard_dir} has no val instances")
    rows, keep = [], {}
    overlay_ids: set[str] = set()
    tol = cfg.boundary_tolerance
    with MaskReader(instances_dir) as reader:
        for inst in tqdm(predict_val(model, shard_dir, cfg), total=total, desc="evaluate", unit="inst"):
            image_id, k = inst.key.rsplit("/", 1)
            gt = reader.mask(image_id, int(k))
            rows.append({
                "key": inst.key, "category": inst.category,
                "iou": metrics.iou(inst.pred, gt), "boundary_f": metrics.boundary_f(inst.pred, gt, tol),
                "iou_grabcut": metrics.iou(inst.teacher, gt),
                "boundary_f_grabcut": metrics.boundary_f(inst.teacher, gt, tol),
                "iou_grabcut_crop": metrics.iou(inst.teacher_via_crop, gt),
                "boundary_f_grabcut_crop": metrics.boundary_f(inst.teacher_via_crop, gt, tol),
            })  # fmt: skip
            if len(overlay_ids) < cfg.n_overlays:
                overlay_ids.add(image_id)
            if image_id in overlay_ids:
                keep.setdefault(image_id, []).append((inst.box, inst.pred, gt))
    table = pd.DataFrame(rows)
    result = metrics.summary(table.iou.to_numpy(), table.boundary_f.to_numpy())
    result["threshold"] = cfg.threshold
    result["flip"] = cfg.flip
    result["grabcut_labels"] = metrics.summary(table.iou_grabcut.to_numpy(), table.boundary_f_grabcut.to_numpy())
    result["grabcut_labels_via_crops"] = metrics.summary(table.iou_grabcut_crop.to_numpy(),
                                                         table.boundary_f_grabcut_crop.to_numpy())  # fmt: skip

    per_class = {}
    for c, name in enumerate(sbd.VOC_CLASSES, start=1):
        sel = table[table.category == c]
        per_class[name] = {"iou": round(float(sel.iou.mean()), 4) if len(sel) else None,
                           "iou_grabcut": round(float(sel.iou_grabcut.mean()), 4) if len(sel) else None,
                           "instances": int(len(sel))}  # fmt: skip

    with atomic.target(plots_dir, directory=True) as tmp:
        curve = pd.DataFrame({"threshold": THRESHOLDS,
                              "recall": metrics.recall_at(table.iou, THRESHOLDS).round(4),
                              "recall_grabcut": metrics.recall_at(table.iou_grabcut, THRESHOLDS).round(4)})  # fmt: skip
        curve.to_csv(tmp / "recall.tsv", sep="\t", index=False)
        pc = pd.DataFrame([{"class": n, "iou": v["iou"], "iou_grabcut": v["iou_grabcut"]}
                           for n, v in per_class.items() if v["instances"]])  # fmt: skip
        pc.to_csv(tmp / "per_class.tsv", sep="\t", index=False)
        table.round(4).to_csv(tmp / "instances.tsv", sep="\t", index=False)  # per instance, to dig into
        (tmp / "overlays").mkdir()
        for image_id, items in sorted(keep.items()):
            image = cv2.imread(str(sbd.image_path(sbd_root, image_id)), cv2.IMREAD_COLOR)
            if image is not None:
                cv2.imwrite(str(tmp / "overlays" / f"{image_id}.png"), overlay(image, items))
    return result, per_class
