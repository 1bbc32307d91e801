"""COCO mask AP, computed by pycocotools' own ``COCOeval`` on in-memory annotations."""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

AP_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def mask_ap(
    images: dict[int, tuple[int, int]], categories: dict[int, str], gts: list[dict], dts: list[dict]
) -> dict[str, float | None]:
    """COCO mask AP (``COCOeval``, ``iouType="segm"``) of the results ``dts`` against the annotations
    ``gts`` on ``images`` (id -> (height, width)): AP over IoU 0.5:0.95, AP50, AP75 and AP per object
    size; ``None`` where COCO has no ground truth to score (e.g. no large objects)."""
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "height": h, "width": w} for i, (h, w) in images.items()],
        "categories": [{"id": int(c), "name": n} for c, n in categories.items()],
        "annotations": gts,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dts), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: round(float(v), 4) if v >= 0 else None for name, v in zip(AP_NAMES, ev.stats[:6])}
