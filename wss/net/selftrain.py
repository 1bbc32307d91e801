"""Self-training, the recursive training of "Simple Does It": a trained model relabels the train set.

Round ``r + 1`` trains on the ``self`` label (:mod:`wss.net.inputs`): the round-``r`` model's mask on
each train crop, clamped to the box (the box is known to enclose the object), kept where it agrees
with the label round ``r`` trained on and ``VOID`` where the two disagree, so the loss ignores the
pixels either label is unsure of.  Instances whose GrabCut fell back (left out of round ``r``
with ``train.skip_fallbacks``) take part: their fallback shape is the label the prediction is
checked against, and the pixels both call foreground are what is learnt of them.

:func:`relabel` writes the train shards again with a ``self_label`` field, next to the round's
checkpoints; ``train.rounds`` in ``params.yaml`` sets how many rounds the train stage runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wss.core import atomic, provenance, resumable
from wss.core.masks import VOID
from wss.core.metrics import iou
from wss.labels import shards
from wss.net.inputs import box_in_crop, instance_label, training_files


def combine(prob: np.ndarray, label: np.ndarray, box: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The ``self`` label of one crop: the prediction ``prob >= threshold`` inside the box channel
    ``box``, where it equals ``label`` (0, 1 or ``VOID``); ``VOID`` elsewhere."""
    pred = (prob >= threshold) & (box > 0)
    agree = (label != VOID) & (pred == (label == 1))
    return np.where(agree, label, VOID).astype(np.uint8)


def weights_digest(net) -> str:
    """SHA-256 of a model's weights (a saved ``.keras`` file also holds a date)."""
    return provenance.digest(*(np.ascontiguousarray(w).tobytes() for w in net.get_weights()))


def relabel(
    net,
    shard_dir: Path,
    out: Path,
    labels: str,
    fg: float,
    bg: float,
    core: float,
    holdout: str = "split",
    batch_size: int = 32,
) -> dict:
    """Write ``out``: the shards of ``shard_dir`` that training reads under ``holdout``
    (:func:`wss.net.inputs.training_files`: the train split, and with ``auto`` the val shards with
    instances that have no mask) with the ``self`` label made from the model ``net`` and the labels
    ``labels`` (a ``train.labels`` value; ``fg``, ``bg``, ``core`` are its ``train`` params),
    and a manifest whose fingerprints also name ``net``'s weights.  A finished ``out`` made from the
    same shards, weights and settings is reused (:mod:`wss.core.resumable`), so a resumed
    self-training run does not relabel again.

    Returns the new labels' statistics: the share of box pixels left ``VOID``, and the mean IoU with
    the ground truth (train instances that have one) of the round's label and of the clamped
    prediction.
    """
    from wss.net.model import predict_proba

    manifest = shards.read_manifest(shard_dir)
    read = {Path(f).name for f in training_files(shard_dir, holdout)[0]}
    model_fp = weights_digest(net)
    fp = provenance.digest(manifest["params_fingerprint"], model_fp, labels, fg, bg, core, holdout)
    done = resumable.finished(out, fp)
    if done is not None:
        return done["self_labels"]
    field = shards.LABEL_FIELDS[labels]
    void_px = box_px = 0
    iou_label, iou_pred = [], []
    entries = []
    with atomic.target(out, directory=True) as tmp:
        for entry in manifest["shards"]:
            if entry["file"] not in read:
                continue
            data = shards.read(Path(shard_dir) / entry["file"])
            side = data["image"].shape[1]
            boxes = box_in_crop(data["window"], data["box_xyxy"], side)
            probs = predict_proba(net, data["image"], data["box"], batch_size)
            relabelled = []
            for i in range(len(probs)):
                base = instance_label(data, i, labels, field, boxes[i], fg, bg, core)
                # A mask a reviewer accepted stays the label: self-training does not second-guess it.
                new = base if "reviewed" in data and data["reviewed"][i] else combine(probs[i], base, data["box"][i])
                relabelled.append(new)
                inside = data["box"][i] > 0
                box_px += int(inside.sum())
                void_px += int((new[inside] == VOID).sum())
                if data["has_gt"][i]:
                    iou_label.append(iou(base == 1, data["gt"][i]))
                    iou_pred.append(iou((probs[i] >= 0.5) & inside, data["gt"][i]))
            data["self_label"] = np.stack(relabelled)
            shard_fp = provenance.digest(entry["fingerprint"], model_fp, labels, fg, bg, core)
            shards.write(tmp / entry["file"], data, shard_fp)
            entries.append({**entry, "fingerprint": shard_fp})
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
        stats = {
            "void_share_in_box": round(void_px / max(box_px, 1), 4),
            "miou_label_crops": mean(iou_label),
            "miou_prediction_crops": mean(iou_pred),
            "instances": sum(e["count"] for e in entries),
        }
        resumable.mark(tmp, fp)
        resumable.finish(
            tmp,
            {
                **manifest,
                "shards": entries,
                "params_fingerprint": provenance.digest(manifest["params_fingerprint"], model_fp),
                "relabelled_by": model_fp,
                "self_labels": stats,
            },
        )
    return stats
