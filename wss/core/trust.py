"""How far to trust the network: the rule, from two numbers that need no ground truth.

The fused masks (``export.masks: fused``) average the model's probability with the teacher's label
and let a graph cut decide where they disagree (:mod:`wss.evaluation.refine`).  That gains where the
network is good and loses where it is not: a network that learnt from a handful of boxes, or from
too few updates, pulls the teacher's masks down.  So the model's weight in the average is earned:

* ``instances``: how many instances the network learnt from (the model's sidecar, written by
  ``train``).  Below ``min_instances`` (``evaluate.trust_min_instances``) the network is weak,
  whatever it agrees with.
* ``agreement``: its mean agreement (IoU) with the teacher's masks, measured by
  :func:`wss.evaluation.trust.agreement`.  Below ``agreement_range[0]`` (``evaluate.trust_agreement``)
  the network is weak; from ``agreement_range[1]`` on it is trusted in full; in between its weight
  grows linearly.
* ``box_agreement``: the mean IoU of its masks with their filled boxes.  A network whose masks are
  closer to their boxes than to the teacher's has learnt to fill its boxes, not its teacher's
  objects (BoxInst's box terms pull an undertrained network there): it is weak, however well a
  filled box happens to agree with the teacher.

The model's weight ``w`` in the fused probability ``w * p + (1 - w) * teacher`` is half the trust:
0.5 (the plain average) for a trusted network, 0 for a weak one, whose fused masks are then the
teacher's labels themselves.
"""

from __future__ import annotations

import numpy as np

ADVICE = (
    "Give it more to learn from: more images or boxes (train.holdout: auto lets every box without a mask "
    "teach), or more updates (train.steps)."
)


def fills_its_boxes(agreement: float | None, box_agreement: float | None) -> bool:
    """Whether the network's masks are closer to their filled boxes than to the teacher's masks
    (strictly: a network with empty masks agrees with neither, and the agreement judges it)."""
    return agreement is not None and box_agreement is not None and box_agreement > agreement


def weight(
    instances: int | None,
    agreement: float | None,
    min_instances: int,
    agreement_range: tuple[float, float],
    box_agreement: float | None = None,
) -> float:
    """The model's weight in the fused average (module docstring), from 0 (the teacher alone) to 0.5;
    ``instances`` ``None`` (not recorded) lets the agreement decide alone, and ``box_agreement``
    ``None`` (not measured) leaves the box out of it."""
    if instances is not None and instances < min_instances or agreement is None:
        return 0.0
    if fills_its_boxes(agreement, box_agreement):
        return 0.0
    lo, hi = agreement_range
    if hi <= lo:
        return 0.5 if agreement >= hi else 0.0
    return round(0.5 * float(np.clip((agreement - lo) / (hi - lo), 0.0, 1.0)), 4)


def assess(
    instances: int | None,
    agreement: float | None,
    min_instances: int,
    agreement_range: tuple[float, float],
    box_agreement: float | None = None,
) -> dict:
    """The verdict: the evidence, the fusion weight, ``weak``, and a ``line`` saying why and what to
    do (``""`` for a trusted network)."""
    w = weight(instances, agreement, min_instances, agreement_range, box_agreement)
    reasons = []
    if instances is not None and instances < min_instances:
        reasons.append(f"it learnt from {instances} instances (evaluate.trust_min_instances: {min_instances})")
    if agreement is None:
        reasons.append("no instance could measure its agreement with the teacher")
    elif agreement < agreement_range[1]:
        reasons.append(
            f"its masks agree with the teacher's at {agreement:.2f} mIoU (trusted in full from "
            f"{agreement_range[1]:g}, evaluate.trust_agreement)"
        )
    if fills_its_boxes(agreement, box_agreement):
        reasons.append(
            f"its masks are closer to their boxes ({box_agreement:.2f} mIoU) than to the teacher's "
            f"({agreement:.2f}): it learnt to fill its boxes"
        )
    line = ""
    if w < 0.5:
        hands = (
            "the fused masks are the teacher's alone"
            if w == 0
            else f"the fused masks lean on the teacher (model weight {w:g} of 0.5)"
        )
        line = f"weak network: {'; '.join(reasons)}, so {hands}. {ADVICE}"
    return {"instances": instances, "agreement": agreement, "model_weight": w, "weak": w < 0.5, "line": line}


def few_instances_line(instances: int, min_instances: int) -> str:
    """What ``train`` says when the network learnt from fewer than ``min_instances`` instances (``""``
    otherwise): :func:`assess` will call it weak whatever it agrees with."""
    if instances >= min_instances:
        return ""
    return (
        f"weak network: it learnt from {instances} instances (evaluate.trust_min_instances: {min_instances}), "
        f"so the fused masks will be the teacher's. {ADVICE}"
    )
