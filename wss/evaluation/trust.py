"""How far to trust the network, from evidence that needs no ground truth, and what that makes of fusion.

The fused masks (``export.masks: fused``) average the model's probability with the teacher's label
and let a graph cut decide where they disagree (:mod:`wss.evaluation.refine`).  That gains where the
network is good and loses where it is not: a network that learnt from a handful of boxes, or from
too few updates, pulls the teacher's masks down.  So the model's weight in the average is earned:

* ``instances``: how many instances the network learnt from (the model's sidecar, written by
  ``train``).  Below ``evaluate.trust_min_instances`` the network is weak, whatever it agrees with.
* ``agreement``: the mean IoU, on the training crops of every instance whose teacher label is
  GrabCut's own (not a fallback shape), of the model's mask (probability >= 0.5 inside the box)
  with the teacher's.  A network that has learnt its teacher's notion of an object agrees with it
  on most boxes; an untrained or collapsed one does not.  Below ``evaluate.trust_agreement[0]`` the
  network is weak; from ``trust_agreement[1]`` on it is trusted in full; in between its weight grows
  linearly.

The model's weight ``w`` in the fused probability ``w * p + (1 - w) * teacher`` is half the trust:
0.5 (the plain average) for a trusted network, and 0 for a weak one, whose fused masks are then the
teacher's labels themselves (:func:`wss.evaluation.refine.Refiner.fused`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wss.config import EvaluateConfig
from wss.core.metrics import iou
from wss.labels import grabcut, shards


def agreement(model, shard_dir: Path, batch_size: int) -> dict:
    """``{"miou", "instances"}``: the mean IoU of the model's crop masks with the teacher's crop
    labels over every instance of the shards (both splits) whose label is not a fallback shape."""
    from wss.net.model import predict_proba

    ious = []
    for split in ("train", "val"):
        for path in shards.files(shard_dir, split):
            data = shards.read(path, ("image", "box", "teacher", "fallback"))
            keep = np.array([str(f) not in grabcut.FALLBACKS for f in data["fallback"]], bool)
            if not keep.any():
                continue
            probs = predict_proba(model, data["image"][keep], data["box"][keep], batch_size, False)
            for prob, box, label in zip(probs, data["box"][keep], data["teacher"][keep]):
                ious.append(iou((prob >= 0.5) & (box > 0), label == 1))
    return {"miou": round(float(np.mean(ious)), 4) if ious else None, "instances": len(ious)}


def weight(instances: int | None, agreement_miou: float | None, cfg: EvaluateConfig) -> float:
    """The model's weight in the fused average (module docstring), from 0 (the teacher alone) to 0.5."""
    if instances is not None and instances < cfg.trust_min_instances:
        return 0.0
    if agreement_miou is None:
        return 0.0
    lo, hi = cfg.trust_agreement
    if hi <= lo:
        return 0.5 if agreement_miou >= hi else 0.0
    return round(0.5 * float(np.clip((agreement_miou - lo) / (hi - lo), 0.0, 1.0)), 4)


def assess(instances: int | None, agreement_miou: float | None, cfg: EvaluateConfig) -> dict:
    """The verdict on the network: its evidence, the fusion weight, and ``weak`` with a line saying
    why and what to do (``""`` for a trusted network)."""
    w = weight(instances, agreement_miou, cfg)
    reasons = []
    if instances is not None and instances < cfg.trust_min_instances:
        reasons.append(f"it learnt from {instances} instances (evaluate.trust_min_instances: {cfg.trust_min_instances})")
    if agreement_miou is None:
        reasons.append("no instance could measure its agreement with the teacher")
    elif agreement_miou < cfg.trust_agreement[1]:
        reasons.append(f"its masks agree with the teacher's at {agreement_miou:.2f} mIoU (trusted in full from "
                       f"{cfg.trust_agreement[1]:g}, evaluate.trust_agreement)")
    line = ""
    if w < 0.5:
        hands = ("the fused masks are the teacher's alone" if w == 0 else
                 f"the fused masks lean on the teacher (model weight {w:g} of 0.5)")
        line = (f"weak network: {'; '.join(reasons)}, so {hands}. Give it more to learn from: more images or boxes "
                f"(train.holdout: auto lets every box without a mask teach), or more updates (train.steps).")
    return {"instances": instances, "agreement": agreement_miou, "model_weight": w, "weak": w < 0.5, "line": line}


def few_instances_line(instances: int, cfg: EvaluateConfig) -> str:
    """What ``train`` says when the network learnt from fewer than ``evaluate.trust_min_instances``
    instances (``""`` otherwise): ``evaluate`` and ``export`` will not trust it."""
    if instances >= cfg.trust_min_instances:
        return ""
    return (f"weak network: it learnt from {instances} instances (evaluate.trust_min_instances: "
            f"{cfg.trust_min_instances}), so export will hand back the teacher's masks as the fused ones. Give it "
            f"more to learn from: more images or boxes (train.holdout: auto lets every box without a mask teach).")
