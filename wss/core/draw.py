"""Pictures for people: instance masks, outlines and boxes drawn over an image (BGR, OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from wss.core.boxes import Box

COLOURS = [(60, 60, 230), (230, 120, 40), (40, 200, 230), (200, 60, 200), (60, 200, 60)]


def overlay(image_bgr: np.ndarray, items: list[tuple[Box, np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """The image with, per instance ``(box, predicted mask, ground truth or None)``, the prediction
    filled in a colour of its own, the ground truth outlined in green and the box in yellow."""
    out = image_bgr.astype(np.float32)
    for k, (_, pred, _) in enumerate(items):
        sel = pred > 0
        out[sel] = 0.55 * out[sel] + 0.45 * np.array(COLOURS[k % len(COLOURS)], np.float32)
    out = out.astype(np.uint8)
    for box, _, gt in items:
        if gt is not None:
            contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, (80, 255, 80), 1)
        cv2.rectangle(out, (box.x1, box.y1), (box.x2 - 1, box.y2 - 1), (0, 235, 255), 1)
    return out
