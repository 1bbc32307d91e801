"""The evidence on the network that needs no ground truth, measured, and the verdict of :mod:`wss.core.trust`.

``agreement``: the mean IoU, on the training crops of every instance whose teacher label is GrabCut's
own (not a fallback shape), of the model's mask (probability >= 0.5 inside the box) with the
teacher's.  A network that has learnt its teacher's notion of an object agrees with it on most
boxes; an untrained or collapsed one does not.  Crops, not full images: one forward pass per
instance, no paste-back, so ``evaluate`` and ``export`` judge the network by the same number.
``box_agreement``: the same masks' mean IoU with their filled boxes, from the same pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wss.config import EvaluateConfig
from wss.core import trust
from wss.core.metrics import iou
from wss.errors import DataError
from wss.evaluation.predictor import Predictor
from wss.labels import grabcut, shards


def agreement(predictor: Predictor, shard_dir: Path) -> dict:
    """``{"miou", "box_miou", "instances"}``: the mean IoU of the model's crop masks with the
    teacher's crop labels, and with their filled boxes, over every instance of the shards (both
    splits) whose label is not a fallback shape."""
    ious, box_ious = [], []
    for split in ("train", "val"):
        for path in shards.files(shard_dir, split):
            data = shards.read(path, ("image", "box", "teacher", "fallback"))
            keep = np.array([str(f) not in grabcut.FALLBACKS for f in data["fallback"]], bool)
            if not keep.any():
                continue
            probs = predictor.crop_probabilities(data["image"][keep], data["box"][keep], flip=False)
            for prob, box, label in zip(probs, data["box"][keep], data["teacher"][keep]):
                mask = (prob >= 0.5) & (box > 0)
                ious.append(iou(mask, label == 1))
                box_ious.append(iou(mask, box > 0))
    if not ious:
        return {"miou": None, "box_miou": None, "instances": 0}
    return {
        "miou": round(float(np.mean(ious)), 4),
        "box_miou": round(float(np.mean(box_ious)), 4),
        "instances": len(ious),
    }


def judge(predictor: Predictor, shard_dir: Path) -> dict:
    """:func:`wss.core.trust.assess` of the predictor's network: the instances its sidecar says it
    learnt from, and its :func:`agreement` with the teacher on ``shard_dir``, by the ``evaluate.trust_*`` settings."""
    cfg = predictor.cfg
    agree = agreement(predictor, shard_dir)
    verdict = trust.assess(
        predictor.meta.get("instances_used"),
        agree["miou"],
        cfg.trust_min_instances,
        cfg.trust_agreement,
        agree["box_miou"],
    )
    return {**verdict, "box_agreement": agree["box_miou"], "agreement_instances": agree["instances"]}


NUMBERS = ("instances", "agreement", "box_agreement", "model_weight", "weak", "agreement_instances")


def for_metrics(verdict: dict) -> dict:
    """The verdict's numbers, as ``evaluate`` writes them into its metrics file: not its ``line``,
    a sentence that ``dvc metrics diff`` would print in full as a changed metric (:func:`recorded`
    says it again from the numbers)."""
    return {k: verdict[k] for k in NUMBERS if k in verdict}


def recorded(metrics: Path, cfg: EvaluateConfig) -> dict:
    """The verdict ``evaluate`` measured and wrote into its metrics file (``trust`` in
    ``metrics/eval.json``), so that ``export`` judges the same network by the same numbers without a
    second pass over every instance, its ``line`` said again by :func:`wss.core.trust.assess`
    under ``cfg``; a :class:`~wss.errors.DataError` naming the file when it has none."""
    try:
        numbers = json.loads(Path(metrics).read_text())["trust"]
        verdict = trust.assess(
            numbers["instances"],
            numbers["agreement"],
            cfg.trust_min_instances,
            cfg.trust_agreement,
            numbers.get("box_agreement"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{metrics}: no verdict on the model in it ({type(exc).__name__}: {exc}); run evaluate first"
        ) from exc
    return {**numbers, **verdict}
