"""Scores of a predicted mask against the ground truth (conventions in ``wss/__init__``)."""

from __future__ import annotations

import cv2
import numpy as np

from wss.core.masks import boundary


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two binary masks; two empty masks agree perfectly (1.0)."""
    a = a.astype(bool)
    b = b.astype(bool)
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return np.count_nonzero(a & b) / union


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance: float = 0.008) -> float:
    """Boundary F-measure (DAVIS contour accuracy): boundary pixels of each mask that lie within
    ``tolerance`` of the other's boundary, as precision and recall, combined harmonically.

    As in DAVIS, the image border is not a contour: an object cut by the image edge has no
    boundary there (:func:`wss.core.masks.boundary` with ``image_edge=False``).  ``tolerance`` < 1 is a
    fraction of the image diagonal (DAVIS uses 0.008), >= 1 is pixels; the match radius is
    ``ceil`` of it, through a disk.  Two masks without boundary score 1, one without 0.
    """
    bp, bg = boundary(pred, image_edge=False), boundary(gt, image_edge=False)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    h, w = gt.shape
    r = tolerance * np.hypot(h, w) if tolerance < 1 else tolerance
    r = max(int(np.ceil(r)), 1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near_g = cv2.dilate(bg.astype(np.uint8), disk) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), disk) > 0
    precision = np.count_nonzero(bp & near_g) / np.count_nonzero(bp)
    recall = np.count_nonzero(bg & near_p) / np.count_nonzero(bg)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def recall_at(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of instances whose IoU is at least each threshold (the box-given mAP^r counterpart)."""
    ious = np.asarray(ious, float)
    return np.array([(ious >= t).mean() if ious.size else 0.0 for t in thresholds])


def size_buckets(areas: np.ndarray) -> dict[str, np.ndarray]:
    """COCO's object sizes by mask area: small < 32², medium < 96², large (boolean selections)."""
    areas = np.asarray(areas)
    return {"small": areas < 32**2, "medium": (areas >= 32**2) & (areas < 96**2), "large": areas >= 96**2}


def summary(ious: np.ndarray, fs: np.ndarray) -> dict:
    """The headline numbers of one segmenter over a set of instances."""
    ious = np.asarray(ious, float)
    r50, r75 = recall_at(ious, np.array([0.5, 0.75]))
    return {
        "miou": round(float(ious.mean()), 4),
        "recall@0.5": round(float(r50), 4),
        "recall@0.75": round(float(r75), 4),
        "boundary_f": round(float(np.mean(fs)), 4),
        "instances": int(ious.size),
    }
