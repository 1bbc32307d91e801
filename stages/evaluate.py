"""Stage ``evaluate``: the trained model on every val instance, scored at full resolution.

Each val crop (made by the labels stage with the training transform) is predicted in batches,
the probability map is pasted back into the full image through its crop window, thresholded at
``evaluate.threshold`` and compared with the full-resolution ground truth.  The raw GrabCut
labels of the same instances, pasted back the same way, are scored as a training-free
segmenter: the teacher the network should beat.

Writes ``metrics/eval.json`` (model and GrabCut headline numbers), ``metrics/eval_per_class.json``,
and plots under ``metrics/eval/``: ``recall.tsv`` (recall vs IoU threshold), ``per_class.tsv``
and ``overlays/*.png`` (image, box, ground-truth outline, predicted mask).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from stages import atomic, metrics, params, sbd, shards
from stages.boxes import Box
from stages.instances import MaskReader
from stages.draw import overlay
from stages.masks import paste

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` params section."""

    threshold: float = 0.5
    boundary_tolerance: float = 0.008
    batch_size: int = 16
    n_overlays: int = 12
    flip: bool = True  # average with the mirrored crop's prediction


def evaluate(model_path: Path, shard_dir: Path, instances_dir: Path, sbd_root: Path, cfg: EvaluateConfig,
             plots_dir: Path) -> tuple[dict, dict]:
    """Score the model and the GrabCut labels on val; write the plots; return (summary, per-class)."""
    from stages.model import load, predict_proba

    model = load(str(model_path))
    files = shards.files(shard_dir, "val")
    total = sum(s["count"] for s in shards.read_manifest(shard_dir)["shards"] if s["split"] == "val")
    if not total:
        raise SystemExit(f"evaluate: {shard_dir} has no val instances")
    rows, keep = [], {}
    overlay_ids: set[str] = set()
    with MaskReader(instances_dir) as reader, tqdm(total=total, desc="evaluate", unit="inst") as bar:
        for path in files:
            data = shards.read(path, ("image", "box", "grabcut", "window", "box_xyxy", "image_size", "key", "category"))
            probs = predict_proba(model, data["image"], data["box"], cfg.batch_size, cfg.flip)
            for i, key in enumerate(data["key"]):
                image_id, k = key.rsplit("/", 1)
                if len(overlay_ids) < cfg.n_overlays:
                    overlay_ids.add(image_id)
                gt = reader.mask(image_id, int(k))
                h, w = (int(v) for v in data["image_size"][i])
                window = Box(*(int(v) for v in data["window"][i]))
                pred = (paste(probs[i], window, h, w) >= cfg.threshold).astype(np.uint8)
                teacher = (paste(data["grabcut"][i].astype(np.float32), window, h, w) >= 0.5).astype(np.uint8)
                rows.append({
                    "key": key, "category": int(data["category"][i]),
                    "iou": metrics.iou(pred, gt), "boundary_f": metrics.boundary_f(pred, gt, cfg.boundary_tolerance),
                    "iou_grabcut": metrics.iou(teacher, gt),
                    "boundary_f_grabcut": metrics.boundary_f(teacher, gt, cfg.boundary_tolerance),
                })  # fmt: skip
                if image_id in overlay_ids:
                    keep.setdefault(image_id, []).append((Box(*(int(v) for v in data["box_xyxy"][i])), pred, gt))
            bar.update(len(data["key"]))
    table = pd.DataFrame(rows)
    result = metrics.summary(table.iou.to_numpy(), table.boundary_f.to_numpy())
    result["threshold"] = cfg.threshold
    result["flip"] = cfg.flip
    result["grabcut_labels"] = metrics.summary(table.iou_grabcut.to_numpy(), table.boundary_f_grabcut.to_numpy())

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
        (tmp / "overlays").mkdir()
        for image_id, items in sorted(keep.items()):
            image = cv2.imread(str(sbd.image_path(sbd_root, image_id)), cv2.IMREAD_COLOR)
            if image is not None:
                cv2.imwrite(str(tmp / "overlays" / f"{image_id}.png"), overlay(image, items))
    return result, per_class


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/model.keras", type=Path)
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--sbd", default="data/sbd", type=Path)
    ap.add_argument("--metrics", default="metrics/eval.json", type=Path)
    ap.add_argument("--per-class", default="metrics/eval_per_class.json", type=Path)
    ap.add_argument("--plots", default="metrics/eval", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cfg = params.typed(EvaluateConfig, params.load(args.params)["evaluate"], "evaluate")
    result, per_class = evaluate(args.model, args.shards, args.instances, args.sbd, cfg, args.plots)
    atomic.write_json(args.metrics, result)
    atomic.write_json(args.per_class, per_class)
    g = result["grabcut_labels"]
    print(f"evaluate: model mIoU {result['miou']:.4f} recall@0.5 {result['recall@0.5']:.4f} "
          f"boundary F {result['boundary_f']:.4f} | GrabCut labels mIoU {g['miou']:.4f} "
          f"recall@0.5 {g['recall@0.5']:.4f} boundary F {g['boundary_f']:.4f} ({result['instances']} instances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
