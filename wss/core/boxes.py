"""Box geometry in the project's one convention: ``(x1, y1, x2, y2)``, ``x2``/``y2`` exclusive.

A box covers ``mask[y1:y2, x1:x2]``.  Every function here takes and returns that convention;
OpenCV's ``(x, y, w, h)`` appears only in :func:`to_cv_rect`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
    """Pixel box, ``x2``/``y2`` exclusive."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)


def from_mask(mask: np.ndarray) -> Box | None:
    """Tightest box around the nonzero pixels of ``mask``; ``None`` if the mask is empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return Box(int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def clip(box: Box, height: int, width: int) -> Box:
    """Intersect ``box`` with the image ``[0, width) x [0, height)``."""
    return Box(
        min(max(box.x1, 0), width),
        min(max(box.y1, 0), height),
        min(max(box.x2, 0), width),
        min(max(box.y2, 0), height),
    )


def expand(box: Box, margin: float) -> Box:
    """Grow ``box`` by ``margin`` times its width (height) on the left and right (top and bottom).

    The result may leave the image; :func:`clip` it when it must not.
    """
    dx = int(round(margin * box.width))
    dy = int(round(margin * box.height))
    return Box(box.x1 - dx, box.y1 - dy, box.x2 + dx, box.y2 + dy)


def square_window(box: Box, margin: float) -> Box:
    """Square crop window centred on ``box``, of side ``max(w, h) * (1 + 2 * margin)``.

    A square window keeps the object's aspect ratio when the crop is resized, so the box
    channel tells the network the object's shape.  The window may leave the image.
    """
    side = max(int(round(max(box.width, box.height) * (1 + 2 * margin))), 1)
    cx2 = box.x1 + box.x2  # twice the centre, to stay in integers
    cy2 = box.y1 + box.y2
    x1 = (cx2 - side) // 2
    y1 = (cy2 - side) // 2
    return Box(x1, y1, x1 + side, y1 + side)


def is_degenerate(box: Box, min_area: int = 9, min_side: int = 2) -> bool:
    """True for boxes too small to segment: area below ``min_area`` or a side below ``min_side``."""
    return box.area < min_area or min(box.width, box.height) < min_side


def to_cv_rect(box: Box) -> tuple[int, int, int, int]:
    """OpenCV's ``(x, y, w, h)``."""
    return (box.x1, box.y1, box.width, box.height)


def fill(box: Box, height: int, width: int) -> np.ndarray:
    """``uint8`` mask of shape ``(height, width)`` with the (clipped) box set to 1."""
    out = np.zeros((height, width), np.uint8)
    b = clip(box, height, width)
    out[b.y1 : b.y2, b.x1 : b.x2] = 1
    return out


def jitter(box: Box, rng: np.random.Generator, scale: float, height: int, width: int) -> Box:
    """Move each side of ``box`` by up to ``scale`` times the box size, as a person drawing it would.

    The result stays inside the image and keeps at least one pixel per side.
    """
    w, h = box.width, box.height
    d = rng.uniform(-scale, scale, size=4) * np.array([w, h, w, h])
    x1, y1, x2, y2 = (np.array(box, float) + d).round().astype(int)
    x1, x2 = sorted((int(np.clip(x1, 0, width - 1)), int(np.clip(x2, 1, width))))
    y1, y2 = sorted((int(np.clip(y1, 0, height - 1)), int(np.clip(y2, 1, height))))
    return Box(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
