"""Instance masks for a new image and its boxes, with a trained model (the ``predict`` command's work).

Boxes are pixel ``x1,y1,x2,y2`` with ``x2``/``y2`` exclusive.  A boxes file is CSV with a header
containing ``x1,y1,x2,y2`` (other columns are ignored) or JSON: a list of ``[x1, y1, x2, y2]`` or of
objects with those keys.  Bad input raises :class:`InputError`, whose message names the file or
box and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wss.core import image
from wss.core.boxes import Box, clip, is_degenerate
from wss.core.masks import crop_instance, paste
from wss.errors import DataError


class InputError(DataError):
    """Bad user input; the message says which file or box and what is wrong."""


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as :func:`wss.core.image.read` reads it for every stage (upright, 8-bit BGR)."""
    try:
        return image.read(path)
    except DataError as exc:
        raise InputError(str(exc)) from None


def parse_box(text: str) -> Box:
    try:
        values = [int(round(float(v))) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(f"--box {text!r}: expected four numbers x1,y1,x2,y2")
    return Box(*values)


def read_boxes(path: Path) -> list[Box]:
    """Boxes from a CSV (header with x1,y1,x2,y2) or JSON file."""
    if not path.is_file():
        raise InputError(f"{path}: no such boxes file")
    try:
        if path.suffix.lower() == ".json":
            items = json.loads(path.read_text())
            rows = [[item[k] for k in ("x1", "y1", "x2", "y2")] if isinstance(item, dict) else item for item in items]
        else:
            table = pd.read_csv(path)
            rows = table[["x1", "y1", "x2", "y2"]].to_numpy().tolist()
        boxes = [Box(*(int(round(float(v))) for v in row)) for row in rows]
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read boxes ({type(exc).__name__}: {exc}); expected x1,y1,x2,y2 per box") from exc
    if not boxes:
        raise InputError(f"{path}: holds no boxes")
    return boxes


def check_box(box: Box, k: int, height: int, width: int) -> Box:
    """The box clipped to the image; an error if nothing of it is inside or it has no area."""
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        raise InputError(f"box {k} {tuple(box)}: zero area (need x1 < x2 and y1 < y2)")
    inside = clip(box, height, width)
    if inside.area == 0:
        raise InputError(f"box {k} {tuple(box)}: outside the {width}x{height} image")
    if is_degenerate(inside):
        raise InputError(f"box {k} {tuple(box)}: too small to segment inside the {width}x{height} image")
    return inside


def load_model(path: Path):
    from wss.net.model import load, sidecar

    if not path.is_file():
        raise InputError(f"{path}: no such model file (train one with `dvc repro train`)")
    meta = sidecar(path)
    if not meta.is_file():
        raise InputError(f"{meta}: missing; it records the crop transform and is written next to the model by the train stage")
    try:
        net = load(str(path))
        info = json.loads(meta.read_text())
        size, margin = int(info["crop_size"]), float(info["context_margin"])
    except Exception as exc:  # keras raises many types for a file that is not a model
        raise InputError(f"{path}: not a wss model ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(net.output, dict) or "fused" not in net.output:
        raise InputError(f"{path}: not a wss model (no 'fused' output)")
    return net, size, margin


def predict(net, size: int, margin: float, image_bgr: np.ndarray, boxes: list[Box], threshold: float,
            flip: bool) -> list[np.ndarray]:
    """Full-resolution uint8 masks, one per box."""
    from wss.net.model import predict_proba

    h, w = image_bgr.shape[:2]
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    crops = [crop_instance(rgb, b, size, margin) for b in boxes]
    probs = predict_proba(net, np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]), flip=flip)
    return [(paste(p, c[2], h, w) >= threshold).astype(np.uint8) for p, c in zip(probs, crops)]
