"""The trained model on every val instance, scored at full resolution: the ``evaluate`` stage's work.

Each val crop (made by the labels stage with the training transform) is predicted in batches,
the probability map is pasted back into the full image through its crop window, thresholded at
``evaluate.threshold`` and compared with the full-resolution ground truth.  The labels the
network learnt from (``teacher``, made by ``labels.method``, recorded as ``teacher_method``) are
scored as a training-free segmenter, the number the network should beat, twice: ``teacher`` at
full resolution, exactly as the labels stage made them, and ``teacher_via_crops`` pasted back
through the same crops as the model's predictions (what the crop resolution alone costs).

Only instances with a ground-truth mask are scored against it (a boxes-only dataset has none;
the counts are reported).  Every instance, with a mask or not, gets the model's agreement with its
teacher (``agreement_with_teacher``: IoU of the two masks) and the distribution of the model's
scores (``score``): a boxes-only dataset's evaluation is those.  Next to mIoU, recall@t and
boundary F: COCO's mask AP (``COCOeval``, ``segm``) with one predicted mask per ground-truth box,
scored by the model's mean foreground probability inside the mask; the filled box as a
segmenter; and mIoU per COCO object size.

Results: the headline numbers, per-class numbers (the dataset's own categories), and plots:
``recall.tsv`` (recall vs IoU threshold), ``per_class.tsv``, ``instances.tsv`` (the scores of
every instance with a mask), ``instances_all.tsv`` (agreement and score of every val instance) and ``overlays/*.png``
(image, box, ground-truth outline, predicted mask).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from wss.core import atomic, metrics
from wss.core.boxes import fill
from wss.core.draw import overlay
from wss.core.image import read as read_image
from wss.data.instances import by_key, gt_mask, read_categories, read_table
from wss.data.readers import coco
from wss.errors import StageInputError
from wss.evaluation.mask_ap import mask_ap
from wss.evaluation.predictor import Instance, Predictor
from wss.evaluation.refine import score
from wss.evaluation import trust
from wss.labels import shards

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.05), 2)


def evaluate(
    predictor: Predictor,
    shard_dir: Path,
    instances_dir: Path,
    data_root: Path,
    plots_dir: Path,
    verdict: dict | None = None,
) -> tuple[dict, dict]:
    """Score the network of ``predictor`` (its masks as ``refine.apply`` makes them), its teacher
    labels, the fused masks (the model weighted as ``verdict``, :func:`wss.evaluation.trust.judge`,
    says; the plain average without one) and the filled box on the val instances that have a mask;
    write the plots; return (summary, per-class), the summary carrying the ``verdict`` as ``trust``.

    Every val instance, with a mask or not, also gets what needs no ground truth: the model's
    agreement with its teacher (IoU of the two masks) and its score.  A boxes-only dataset gets
    just those, with ``instances_with_masks`` 0."""
    total = shards.count(shard_dir, "val")
    if not total:
        raise StageInputError(f"{shard_dir} has no val instances")
    table = read_table(instances_dir)
    val = by_key(table[table.split == "val"])
    rows, free, keep, gts, dts, teacher, fused_dts = [], [], {}, [], [], [], []
    overlay_ids: set[str] = set()
    cfg = predictor.cfg
    tol = cfg.boundary_tolerance
    weight = verdict["model_weight"] if verdict else 0.5
    files = {key: r.file for key, r in val.items()}
    for inst in tqdm(predictor.instances(shard_dir, "val", files), total=total, desc="evaluate", unit="inst"):
        r = val[inst.key]
        free.append(
            {
                "key": inst.key,
                "category": r.category_name,
                "area": r.area,
                "score": inst.score,
                "agreement": metrics.iou(inst.mask, inst.teacher),
            }
        )
        image_id = inst.key.rsplit("/", 1)[0]
        if len(overlay_ids) < cfg.n_overlays:
            overlay_ids.add(image_id)
        gt = gt_mask(r)
        if image_id in overlay_ids:
            keep.setdefault(image_id, []).append((inst.box, inst.mask, gt))
        if gt is None:
            continue
        fused = predictor.fused(inst, weight)
        rows.append({"key": inst.key, "category": r.category_name, "area": r.area, **_scored(inst, fused, gt, tol)})
        gts.append(coco.annotation(len(gts) + 1, int(r.coco_image_id), int(r.category), inst.box, gt))
        det = {"image_id": int(r.coco_image_id), "category_id": int(r.category)}
        dts.append({**det, "segmentation": coco.encode(inst.mask), "score": inst.score})
        fused_dts.append({**det, "segmentation": coco.encode(fused), "score": score(inst.prob, fused)})
        # The teacher has no confidence: its AP ranks every mask alike (score 1).
        teacher.append({**det, "segmentation": coco.encode(inst.teacher), "score": 1.0})
    free = pd.DataFrame(free)
    # The labels the model learnt from, named by their role; which method made them is recorded beside.
    result = {
        "instances_with_masks": len(rows),
        "instances_without_masks": total - len(rows),
        "teacher_method": shards.read_manifest(shard_dir)["method"],
        "threshold": cfg.threshold,
        "flip": cfg.flip,
        "refine": predictor.cut.apply,
        "agreement_with_teacher": _agreement(free),
        "score": _scores(free),
        "cut_ms_per_instance": predictor.refiner.ms_per_instance(),
    }
    if verdict:
        result["trust"] = trust.for_metrics(verdict)
    categories = read_categories(instances_dir)
    per, per_class = None, {}
    if rows:
        per = pd.DataFrame(rows)
        images = {int(r.coco_image_id): (int(r.height), int(r.width)) for r in val.values()}
        result |= _with_masks(per, images, categories, gts, dts, teacher, fused_dts)
        per_class = _per_class(per, categories)
    pictures = {image_id: data_root / r.file for r in val.values() for image_id in [r.image_id] if image_id in keep}
    _write_plots(plots_dir, free, keep, pictures, per, per_class)
    return result, per_class


def _write_plots(
    plots_dir: Path, free: pd.DataFrame, keep: dict, pictures: dict, per: pd.DataFrame | None, per_class: dict
) -> None:
    """``plots_dir``, made whole: every val instance's mask-free numbers, the overlays of the images
    in ``keep`` (read from ``pictures``) and, with masks, the per-instance and per-class tables."""
    with atomic.target(plots_dir, directory=True) as tmp:
        free.round(4).to_csv(tmp / "instances_all.tsv", sep="\t", index=False)  # every val instance, masks or not
        (tmp / "overlays").mkdir()
        for image_id, items in sorted(keep.items()):
            picture = read_image(pictures[image_id])
            cv2.imwrite(str(tmp / "overlays" / f"{image_id.replace('/', '_')}.png"), overlay(picture, items))
        if per is not None:
            _write_tables(tmp, per, per_class)


def _scored(inst: Instance, fused: np.ndarray, gt: np.ndarray, tol: float) -> dict:
    """IoU and boundary F against ``gt`` of the instance's masks: the model's (as ``refine.apply``
    makes it, and ``unrefined``), the ``fused`` one, the teacher's (and via the crops) and the filled box."""
    masks = {
        "": inst.mask,
        "_unrefined": inst.unrefined,
        "_fused": fused,
        "_teacher": inst.teacher,
        "_teacher_crop": inst.teacher_via_crops,
        "_box": fill(inst.box, *gt.shape),
    }
    out = {}
    for suffix, mask in masks.items():
        out[f"iou{suffix}"] = metrics.iou(mask, gt)
        out[f"boundary_f{suffix}"] = metrics.boundary_f(mask, gt, tol)
    return out


def _per_class(per: pd.DataFrame, categories: dict) -> dict:
    """mIoU of the model and of the teacher per category of the dataset (None where it has no val instance)."""
    out = {}
    for name in categories.values():
        sel = per[per.category == name]
        out[name] = {
            "iou": round(float(sel.iou.mean()), 4) if len(sel) else None,
            "iou_teacher": round(float(sel.iou_teacher.mean()), 4) if len(sel) else None,
            "instances": int(len(sel)),
        }
    return out


def _write_tables(tmp: Path, per: pd.DataFrame, per_class: dict) -> None:
    """The plots' tables: recall against the IoU threshold, per class, and every instance's scores."""
    curve = pd.DataFrame(
        {
            "threshold": THRESHOLDS,
            "recall": metrics.recall_at(per.iou, THRESHOLDS).round(4),
            "recall_teacher": metrics.recall_at(per.iou_teacher, THRESHOLDS).round(4),
        }
    )
    curve.to_csv(tmp / "recall.tsv", sep="\t", index=False)
    pc = pd.DataFrame(
        [{"class": n, "iou": v["iou"], "iou_teacher": v["iou_teacher"]} for n, v in per_class.items() if v["instances"]]
    )
    pc.to_csv(tmp / "per_class.tsv", sep="\t", index=False)
    per.round(4).to_csv(tmp / "instances.tsv", sep="\t", index=False)  # per instance, to dig into


def _with_masks(
    per: pd.DataFrame, images: dict, categories: dict, gts: list, dts: list, teacher: list, fused: list
) -> dict:
    """The scores against the ground truth, each with mIoU per COCO size: the model's (as
    ``refine.apply`` makes its masks, and ``unrefined``), the ``fused`` masks', the teacher's
    and the filled box's."""
    sizes = metrics.size_buckets(per.area.to_numpy())

    def scored(suffix: str) -> dict:
        ious = per[f"iou{suffix}"]
        out = metrics.summary(ious.to_numpy(), per[f"boundary_f{suffix}"].to_numpy())
        out["by_size"] = {s: round(float(ious[sel].mean()), 4) if sel.any() else None for s, sel in sizes.items()}
        return out

    result = scored("") | mask_ap(images, categories, gts, dts)
    result["unrefined"] = scored("_unrefined")
    result["fused"] = scored("_fused") | mask_ap(images, categories, gts, fused)
    result["teacher"] = scored("_teacher") | mask_ap(images, categories, gts, teacher)
    result["teacher_via_crops"] = scored("_teacher_crop")
    result["filled_box"] = scored("_box")
    return result


def _agreement(free: pd.DataFrame) -> dict:
    """How closely the model's masks follow its teacher's (mean IoU between the two), overall and per size."""
    sizes = metrics.size_buckets(free.area.to_numpy())
    return {
        "miou": round(float(free.agreement.mean()), 4),
        **{s: round(float(free.agreement[sel].mean()), 4) if sel.any() else None for s, sel in sizes.items()},
    }


def _scores(free: pd.DataFrame) -> dict:
    """The distribution of the model's scores (mean foreground probability inside its mask)."""
    q = free.score.quantile([0.1, 0.5, 0.9]).round(4).tolist()
    return {
        "mean": round(float(free.score.mean()), 4),
        "p10": q[0],
        "median": q[1],
        "p90": q[2],
        "empty_masks": int((free.score == 0).sum()),
    }
