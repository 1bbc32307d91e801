"""Box -> mask with GrabCut or GrabCut+, and the documented fallback for each case they cannot handle.

``method`` picks the segmenter:

* ``grabcut``: OpenCV's ``cv2.grabCut`` (colour GMMs, colour-contrast pairwise term);
* ``grabcut_plus``: "Simple Does It"'s GrabCut+, the same colour GMMs with the pairwise term taken
  from HED boundaries (:mod:`wss.labels.graphcut`, boundary maps from :mod:`wss.labels.boundaries`).

Both run on a region of interest around the box (``roi_margin``) that is resampled first so that
the box's shorter side is at least ``min_side`` pixels (colour models need pixels: small boxes are
where GrabCut gives up) and the region's longer side at most ``max_side`` (the graph cut's cost
grows with the pixel count); the mask is resampled back.

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

import cv2
import numpy as np

from wss.config import GrabCutConfig
from wss.core.boxes import Box, clip, expand, fill, is_degenerate, jitter
from wss.errors import ConfigError, StageInputError
from wss.labels import graphcut

REASONS = ("tiny_box", "whole_image", "empty_grabcut", "opencv_error")
FALLBACKS = ("tiny_box", "empty_grabcut", "opencv_error")
"""The reasons whose label is a fallback shape, not GrabCut's output (``whole_image`` is GrabCut's)."""


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
    raise ConfigError(f"labels.fallback_shape must be 'ellipse' or 'box', not {shape!r}")


def work_scale(box: Box, roi: Box, min_side: int, max_side: int) -> float:
    """The factor the ROI is resampled by: enough for the box's shorter side to reach ``min_side``,
    capped so that the ROI's longer side stays within ``max_side`` (0 turns either rule off)."""
    scale = 1.0
    if min_side and min(box.width, box.height) < min_side:
        scale = min_side / max(min(box.width, box.height), 1)
    if max_side and max(roi.width, roi.height) * scale > max_side:
        scale = max_side / max(roi.width, roi.height)
    return scale


def _cut(crop: np.ndarray, edges: np.ndarray | None, gc_mask: np.ndarray, cfg: GrabCutConfig) -> np.ndarray:
    """Run the configured segmenter on the trimap ``gc_mask``; return the updated trimap."""
    if cfg.method == "grabcut":
        cv2.grabCut(crop, gc_mask, None, np.zeros((1, 65)), np.zeros((1, 65)), cfg.iterations, cv2.GC_INIT_WITH_MASK)
        return gc_mask
    prior = None
    if cfg.shape_prior > 0:
        ys, xs = np.nonzero(gc_mask == cv2.GC_PR_FGD)
        if ys.size:
            cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
            ry, rx = max((ys.max() - ys.min() + 1) / 2, 1), max((xs.max() - xs.min() + 1) / 2, 1)
            yy, xx = np.mgrid[: gc_mask.shape[0], : gc_mask.shape[1]]
            d = np.hypot((yy - cy) / ry, (xx - cx) / rx)
            prior = (cfg.shape_prior * np.clip(1 - d, 0, None), cfg.shape_prior * np.clip(d - 1, 0, None))
    return graphcut.grabcut(crop, gc_mask, graphcut.boundary_weights(edges, cfg.boundary_sigma), cfg.iterations, prior)


def segment(
    image: np.ndarray, box: Box, cfg: GrabCutConfig, seed: int, edges: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """Segment ``box`` in the BGR uint8 ``image``: (uint8 mask of the image's size, fallback reason or "").

    ``edges`` is the image's boundary map (float in [0, 1], see :mod:`wss.labels.boundaries`), needed by
    ``grabcut_plus``.
    """
    h, w = image.shape[:2]
    box = clip(box, h, w)
    if is_degenerate(box, cfg.min_box_area, cfg.min_box_side):
        return fill(box, h, w), "tiny_box"
    if cfg.method == "grabcut_plus" and (edges is None or edges.shape != (h, w)):
        raise StageInputError(f"labels.method=grabcut_plus needs the image's boundary map of shape {(h, w)}")
    roi = Box(0, 0, w, h) if cfg.roi_margin < 0 else clip(expand(box, cfg.roi_margin), h, w)
    scale = work_scale(box, roi, cfg.min_side, cfg.max_side)
    size = (max(1, round(roi.width * scale)), max(1, round(roi.height * scale)))
    crop = np.ascontiguousarray(image[roi.y1 : roi.y2, roi.x1 : roi.x2])
    crop_edges = None if edges is None else edges[roi.y1 : roi.y2, roi.x1 : roi.x2]
    if scale != 1.0:
        grow = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        crop = cv2.resize(crop, size, interpolation=grow)
        if crop_edges is not None:
            crop_edges = cv2.resize(crop_edges, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    # The box in the resampled ROI's pixels.
    lx1, ly1 = round((box.x1 - roi.x1) * scale), round((box.y1 - roi.y1) * scale)
    lx2, ly2 = max(lx1 + 1, round((box.x2 - roi.x1) * scale)), max(ly1 + 1, round((box.y2 - roi.y1) * scale))
    gc_mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    reason = ""
    if box == Box(0, 0, w, h):
        reason = "whole_image"
        band = max(1, int(round(cfg.whole_image_band * min(crop.shape[:2]))))
        gc_mask[:] = cv2.GC_PR_BGD
        gc_mask[band:-band, band:-band] = cv2.GC_PR_FGD
    else:
        gc_mask[ly1:ly2, lx1:lx2] = cv2.GC_PR_FGD  # what cv2.GC_INIT_WITH_RECT does
    cv2.setRNGSeed(seed)  # the GMMs start from k-means++, which draws from OpenCV's global RNG
    try:
        gc_mask = _cut(crop, crop_edges, gc_mask, cfg)
    except (cv2.error, graphcut.CutFailed):
        return fallback(box, h, w, cfg.fallback_shape), "opencv_error"
    fg = ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale != 1.0:
        fg = cv2.resize(fg, (roi.width, roi.height), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((h, w), np.uint8)
    out[roi.y1 : roi.y2, roi.x1 : roi.x2] = fg
    out &= fill(box, h, w)
    if out.sum() < cfg.min_fg_fraction * box.area:
        return fallback(box, h, w, cfg.fallback_shape), "empty_grabcut"
    return out, reason


def votes(
    image: np.ndarray,
    box: Box,
    cfg: GrabCutConfig,
    seed: int,
    runs: int,
    box_jitter: float,
    edges: np.ndarray | None = None,
) -> np.ndarray | None:
    """Share of ``runs`` GrabCuts (of ``cfg.method``: GrabCut^i or GrabCut+^i), each on a copy of
    ``box`` with every side moved by up to ``box_jitter`` times the box size, that call a pixel
    foreground (``float32``, image size).

    Pixels outside ``box`` get no votes: the box is known to enclose the object.  Runs that fall
    back (see the table above) carry no information and are left out; ``None`` when all of them do.
    """
    h, w = image.shape[:2]
    inside = fill(box, h, w)
    rng = np.random.default_rng(seed)
    total = np.zeros((h, w), np.float32)
    counted = 0
    for k in range(runs):
        mask, reason = segment(image, jitter(box, rng, box_jitter, h, w), cfg, (seed + k + 1) & 0x7FFFFFFF, edges)
        if reason in ("", "whole_image"):
            total += mask & inside
            counted += 1
    return total / counted if counted else None
