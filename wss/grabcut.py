"""Box -> mask with OpenCV GrabCut, and the documented fallback for each case it cannot handle.

=================  ===================================================  =========================
reason             when                                                 label used instead
=================  ===================================================  =========================
``tiny_box``       box area < ``min_box_area`` or a side < ``min_box_side``  the filled box
``whole_image``    the box covers the whole image, so no pixel is        GrabCut seeded with the
                   known background                                      box's outer band as
                                                                         *probable* background
``empty_grabcut``  GrabCut keeps < ``min_fg_fraction`` of the box        ``fallback_shape``
``opencv_error``   ``cv2.grabCut`` raised                                ``fallback_shape``
=================  ===================================================  =========================

``fallback_shape`` is ``ellipse`` (the inscribed ellipse, the better of the two training-free
baselines in "Simple Does It") or ``box``.

:func:`votes` runs GrabCut on jittered copies of the box, the consensus behind the paper's
GrabCut^i labels: pixels most runs agree on are labelled, the rest are left out of the loss.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from wss.boxes import Box, clip, expand, fill, is_degenerate, jitter

from wss import params

REASONS = ("tiny_box", "whole_image", "empty_grabcut", "opencv_error")
FALLBACKS = ("tiny_box", "empty_grabcut", "opencv_error")
"""The reasons whose label is a fallback shape, not GrabCut's output (``whole_image`` is GrabCut's)."""


@dataclass(frozen=True)
class GrabCutConfig:
    """GrabCut's settings, from the ``labels`` params section."""

    iterations: int
    roi_margin: float  # GrabCut runs on the box grown by this share of its size; < 0: whole image
    min_box_area: int
    min_box_side: int
    min_fg_fraction: float
    whole_image_band: float  # outer band of the box seeded as probable background
    fallback_shape: str

    def validate(self) -> None:
        req = params.require
        req(self.iterations >= 1, "labels.iterations", "be >= 1", self.iterations)
        req(self.min_box_area >= 1, "labels.min_box_area", "be >= 1", self.min_box_area)
        req(self.min_box_side >= 1, "labels.min_box_side", "be >= 1", self.min_box_side)
        req(0 <= self.min_fg_fraction <= 1, "labels.min_fg_fraction", "lie in [0, 1]", self.min_fg_fraction)
        req(0 < self.whole_image_band < 0.5, "labels.whole_image_band", "lie in (0, 0.5)", self.whole_image_band)
        req(self.fallback_shape in ("ellipse", "box"), "labels.fallback_shape", "be ellipse or box", self.fallback_shape)


def instance_seed(seed: int, image_id: str, instance_id: int) -> int:
    """A per-instance RNG seed that does not depend on processing order (for any ``n_jobs``)."""
    return (zlib.crc32(f"{image_id}/{instance_id}".encode()) ^ seed) & 0x7FFFFFFF


def ellipse(box: Box, height: int, width: int) -> np.ndarray:
    """The ellipse inscribed in ``box`` as a uint8 mask."""
    out = np.zeros((height, width), np.uint8)
    centre = ((box.x1 + box.x2 - 1) / 2, (box.y1 + box.y2 - 1) / 2)
    axes = (max(box.width / 2, 0.5), max(box.height / 2, 0.5))
    cv2.ellipse(out, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1, -1)
    return out & fill(box, height, width)


def fallback(box: Box, height: int, width: int, shape: str) -> np.ndarray:
    if shape == "ellipse":
        return ellipse(box, height, width)
    if shape == "box":
        return fill(box, height, width)
    raise ValueError(f"labels.fallback_shape must be 'ellipse' or 'box', not {shape!r}")


def segment(image: np.ndarray, box: Box, cfg: GrabCutConfig, seed: int) -> tuple[np.ndarray, str]:
    """GrabCut ``box`` in the BGR uint8 ``image``: (uint8 mask of the image's size, fallback reason or "")."""
    h, w = image.shape[:2]
    box = clip(box, h, w)
    if is_degenerate(box, cfg.min_box_area, cfg.min_box_side):
        return fill(box, h, w), "tiny_box"
    roi = Box(0, 0, w, h) if cfg.roi_margin < 0 else clip(expand(box, cfg.roi_margin), h, w)
    local = Box(box.x1 - roi.x1, box.y1 - roi.y1, box.x2 - roi.x1, box.y2 - roi.y1)
    crop = np.ascontiguousarray(image[roi.y1 : roi.y2, roi.x1 : roi.x2])
    gc_mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    reason = ""
    if box == Box(0, 0, w, h):
        reason = "whole_image"
        band = max(1, int(round(cfg.whole_image_band * min(box.width, box.height))))
        gc_mask[:] = cv2.GC_PR_BGD
        gc_mask[band:-band, band:-band] = cv2.GC_PR_FGD
        mode, rect = cv2.GC_INIT_WITH_MASK, None
    else:
        mode, rect = cv2.GC_INIT_WITH_RECT, (local.x1, local.y1, local.width, local.height)
    cv2.setRNGSeed(seed)  # GrabCut's GMM initialisation uses k-means with OpenCV's global RNG
    try:
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.grabCut(crop, gc_mask, rect, bgd, fgd, cfg.iterations, mode)
    except cv2.error:
        return fallback(box, h, w, cfg.fallback_shape), "opencv_error"
    fg = ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.uint8)
    out = np.zeros((h, w), np.uint8)
    out[roi.y1 : roi.y2, roi.x1 : roi.x2] = fg
    out &= fill(box, h, w)
    if out.sum() < cfg.min_fg_fraction * box.area:
        return fallback(box, h, w, cfg.fallback_shape), "empty_grabcut"
    return out, reason


def votes(image: np.ndarray, box: Box, cfg: GrabCutConfig, seed: int, runs: int, box_jitter: float) -> np.ndarray | None:
    """Share of ``runs`` GrabCuts, each on a copy of ``box`` with every side moved by up to
    ``box_jitter`` times the box size, that call a pixel foreground (``float32``, image size).

    Pixels outside ``box`` get no votes: the box is known to enclose the object.  Runs that fall
    back (see the table above) carry no information and are left out; ``None`` when all of them do.
    """
    h, w = image.shape[:2]
    inside = fill(box, h, w)
    rng = np.random.default_rng(seed)
    total = np.zeros((h, w), np.float32)
    counted = 0
    for k in range(runs):
        mask, reason = segment(image, jitter(box, rng, box_jitter, h, w), cfg, (seed + k + 1) & 0x7FFFFFFF)
        if reason in ("", "whole_image"):
            total += mask & inside
            counted += 1
    return total / counted if counted else None
