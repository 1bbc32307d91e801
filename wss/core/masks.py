"""Crop windows, resizing and paste-back for images and masks (conventions in ``wss/__init__``).

A training sample is the square window around a box (:func:`wss.core.boxes.square_window`),
resized to ``size x size``.  :func:`crop` and :func:`paste` are inverses up to resampling, so a
prediction made on a crop lands on the right pixels of the full image.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from wss.core.boxes import Box, clip, fill, square_window

VOID = 255
"""Label value of pixels the loss leaves out (as in PASCAL VOC's void band)."""


def _overlap(window: Box, height: int, width: int) -> tuple[Box, Box]:
    """The part of ``window`` inside the image, in image and in window coordinates."""
    inside = clip(window, height, width)
    local = Box(inside.x1 - window.x1, inside.y1 - window.y1, inside.x2 - window.x1, inside.y2 - window.y1)
    return inside, local


def crop(array: np.ndarray, window: Box, size: int, fill: float = 0) -> np.ndarray:
    """Cut ``window`` out of ``array`` (H x W or H x W x C), pad outside the image with ``fill``,
    and resize to ``size x size``.

    Shrinking uses area averaging (no aliasing), enlarging uses bilinear interpolation.  The
    dtype is kept; crop masks as ``float32`` and threshold them if a hard mask is wanted.
    """
    h, w = array.shape[:2]
    canvas = np.full((window.height, window.width) + array.shape[2:], fill, dtype=array.dtype)
    inside, local = _overlap(window, h, w)
    if inside.area:
        canvas[local.y1 : local.y2, local.x1 : local.x2] = array[inside.y1 : inside.y2, inside.x1 : inside.x2]
    interp = cv2.INTER_AREA if window.width > size else cv2.INTER_LINEAR
    out = cv2.resize(canvas, (size, size), interpolation=interp)
    return out.reshape((size, size) + array.shape[2:])


def crop_mask(mask: np.ndarray, window: Box, size: int) -> np.ndarray:
    """Crop a binary mask: resample it as a fraction of coverage, then keep pixels >= 0.5."""
    return (crop(mask.astype(np.float32), window, size) >= 0.5).astype(np.uint8)


def paste(crop_values: np.ndarray, window: Box, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`crop` for a 2-D ``float`` crop: a ``height x width`` ``float32`` map,
    zero outside ``window``."""
    full = np.zeros((height, width), np.float32)
    inside, local = _overlap(window, height, width)
    if not inside.area:
        return full
    resized = cv2.resize(crop_values.astype(np.float32), (window.width, window.height), interpolation=cv2.INTER_LINEAR)
    full[inside.y1 : inside.y2, inside.x1 : inside.x2] = resized[local.y1 : local.y2, local.x1 : local.x2]
    return full


def boundary(mask: np.ndarray, image_edge: bool) -> np.ndarray:
    """Boolean map of the mask's inner boundary: object pixels with a 4-neighbour outside the object.

    ``image_edge`` says what lies beyond the image: ``True``, background (an object pixel on the
    image border is boundary, as SBD draws it); ``False``, more of the same pixel (the image border
    is not a contour, as the DAVIS boundary measure has it).
    """
    m = mask.astype(np.uint8)
    border = cv2.BORDER_CONSTANT if image_edge else cv2.BORDER_REPLICATE
    eroded = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), borderType=border, borderValue=0)
    return (m > 0) & (eroded == 0)


def crop_instance(rgb: np.ndarray, box: Box, size: int, margin: float) -> tuple[np.ndarray, np.ndarray, Box]:
    """The network's view of one instance: ``(rgb crop, box channel, window)``.

    The window is :func:`wss.core.boxes.square_window` of ``box``; training crops, evaluation and
    ``predict`` all go through here, so they see the same transform.
    """
    h, w = rgb.shape[:2]
    window = square_window(box, margin)
    return crop(rgb, window, size), crop_mask(fill(box, h, w), window, size), window


def to_rle(mask: np.ndarray) -> str:
    """A mask as the ``counts`` text of COCO's compressed RLE (column-major runs, as pycocotools
    writes them); with the mask's size it is a complete COCO ``segmentation``."""
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode("ascii")


def from_rle(counts: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`to_rle`: the ``uint8`` mask of a compressed RLE ``counts`` text."""
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def from_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as a ``uint8`` mask."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
    else:
        raise ValueError(f"segmentation must be polygons or an RLE, not {type(segmentation).__name__}")
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def to_polygon(mask: np.ndarray) -> np.ndarray | None:
    """The outline of ``mask`` as one polygon, ``(N, 2)`` float ``x, y`` in COCO's continuous pixel
    coordinates (pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``), or ``None`` for an empty mask.

    The contour is traced on the mask upsampled twice, so its vertices lie a quarter pixel inside
    the pixel edges and it rasterises back to the same pixels (pycocotools: mean IoU 0.9997 on
    coco128's 929 masks).  Holes are left out (a YOLO-seg line has none).  A mask of several parts
    becomes one polygon, the parts joined by zero-width bridges between their nearest vertices, as
    Ultralytics writes a multi-part object."""
    big = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = sorted(((c.reshape(-1, 2).astype(np.float64) + 0.5) / 2 for c in contours), key=len, reverse=True)
    if not parts:
        return None
    path = parts[0]
    for part in parts[1:]:
        d = ((path[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        # Out along the bridge, once round the part, and back: the bridge has no area.
        loop = np.concatenate([part[j:], part[: j + 1]])
        path = np.concatenate([path[: i + 1], loop, path[i:]])
    return path
