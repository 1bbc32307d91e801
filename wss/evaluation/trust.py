"""The evidence on the network that needs no ground truth, measured, and the verdict of :mod:`wss.core.trust`.

``agreement``: the mean IoU, on the training crops of every instance whose teacher label is GrabCut's
own (not a fallback shape), of the model's mask (probability >= 0.5 inside the box) with the
teacher's.  A network that has learnt its teacher's notion of an object agrees with it on most
boxes; an untrained or collapsed one does not.  Crops, not full images: one forward pass per
instance, no paste-back, so ``evaluate`` and ``export`` judge the network by the same number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wss.config import EvaluateConfig
from wss.core import trust
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


def judge(model, model_path: Path, shard_dir: Path, cfg: EvaluateConfig) -> dict:
    """:func:`wss.core.trust.assess` of the model at ``model_path`` (loaded as ``model``): the instances
    its sidecar says it learnt from, and its :func:`agreement` with the teacher on ``shard_dir``."""
    from wss.net.model import sidecar

    side = sidecar(model_path)
    used = json.loads(side.read_text()).get("instances_used") if side.is_file() else None
    agree = agreement(model, shard_dir, cfg.batch_size)
    verdict = trust.assess(used, agree["miou"], cfg.trust_min_instances, cfg.trust_agreement)
    return {**verdict, "agreement_instances": agree["instances"]}
