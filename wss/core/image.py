"""The one image reader: every stage and ``predict`` see the same pixels in the same frame.

Images are read **upright**: the EXIF orientation tag is applied, as browsers, phone galleries and
annotation tools (CVAT, Label Studio, Roboflow) show a photo and so as its boxes were drawn.  A
phone photo stored 40x20 with orientation 6 is the 20x40 image everywhere here: its size
(:func:`size`), the labels, the HED maps, the overlays and the exported masks.  The tag is read
once, by :func:`orientation`, for the size and for the pixels alike (OpenCV's own EXIF handling is
switched off), so the two never disagree; a malformed tag (a wrong type, no value, a value outside
1..8) counts as no rotation.

Pixels are 8-bit BGR (OpenCV's order; converted to RGB only where the network takes them).
Grayscale and palette images are expanded to three channels, alpha is dropped.  :func:`problem`
is ``convert``'s gate: a full decode that a truncated JPEG fails (OpenCV alone would decode the
first half and fill the rest with grey, with only a warning).
"""

from __future__ import annotations

from pathlib import Path

import io

import cv2
import numpy as np
from PIL import Image

from wss.errors import DataError

_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# PIL refuses to open an image of more pixels than this (a decompression bomb), in every stage: the
# ceiling of ``convert.max_image_pixels``.
CEILING = 2 * Image.MAX_IMAGE_PIXELS
_EXIF_ORIENTATION = 274


def orientation(im: Image.Image) -> int:
    """The EXIF orientation of the opened image ``im``, 1..8; 1 (upright as stored) when there is no
    tag or a malformed one."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # PIL raises many types for a broken EXIF block; the pixels are still there
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: np.ndarray, orient: int) -> np.ndarray:
    """The stored pixels ``image`` turned as EXIF orientation ``orient`` says (as PIL's ``exif_transpose``)."""
    if orient == 2:
        return image[:, ::-1].copy()
    if orient == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orient == 4:
        return image[::-1].copy()
    if orient == 5:
        return np.ascontiguousarray(image.swapaxes(0, 1))
    if orient == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orient == 7:
        return np.ascontiguousarray(image[::-1, ::-1].swapaxes(0, 1))
    if orient == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """The encoded image ``data`` as upright 8-bit BGR; :class:`~wss.errors.DataError` naming ``name``
    if it is empty or does not decode."""
    if not data:
        raise DataError(f"{name}: empty file, not an image")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise DataError(f"{name}: corrupt or unreadable image (OpenCV: {str(exc).strip()[:120]})") from exc
    if image is None or image.size == 0:
        raise DataError(f"{name}: corrupt or unreadable image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            orient = orientation(im)
    except (OSError, Image.DecompressionBombError):
        orient = 1  # a format PIL does not read: OpenCV's pixels, as stored
    return upright(image, orient)


def read(path: str | Path) -> np.ndarray:
    """The image at ``path`` as upright 8-bit BGR (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image")
    return decode(path.read_bytes(), str(path))


def size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of the upright image, from its header alone (no pixel is decoded)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orient = orientation(im)
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from exc
    return (w, h) if orient in _TRANSPOSED else (h, w)


def problem(path: str | Path, height: int, width: int, max_pixels: int = CEILING) -> str:
    """Why the image at ``path`` is unusable, or ``""``: missing, truncated or unreadable (every
    pixel is decoded), more than ``max_pixels`` pixels (checked from the header, before any
    decoding), CMYK, more than 8 bits per channel, or not ``width x height`` upright."""
    path = Path(path)
    if not path.is_file():
        return "file is missing"
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return (
                    f"{w}x{h} is {w * h:,} pixels, more than convert.max_image_pixels ({max_pixels:,}); "
                    "raise it to keep such images"
                )
            mode = im.mode
            if mode == "CMYK":
                return "CMYK image (convert it to RGB)"
            if mode.startswith("I") or mode == "F":
                return f"{mode} image with more than 8 bits per channel (convert it to 8-bit RGB)"
            im.load()  # the whole file: a truncated JPEG raises here
    except Image.DecompressionBombError:
        return f"more than {CEILING:,} pixels, the most any stage opens (a decompression bomb?)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt, truncated or unreadable image ({type(exc).__name__})"
    # OpenCV decodes it too (the stages read it so), at its stored depth: PIL reads 16-bit RGB as 8-bit.
    stored = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if stored is None or stored.size == 0:
        return "corrupt or unreadable image"
    if stored.dtype != np.uint8:
        return f"{stored.dtype} image with more than 8 bits per channel (convert it to 8-bit RGB)"
    h, w = size(path)
    if (h, w) != (height, width):
        return f"image is {w}x{h} (upright, EXIF orientation applied), the annotations say {width}x{height}"
    return ""
