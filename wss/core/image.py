"""The one image reader: every stage and ``predict`` see the same pixels in the same frame.

Images are read **upright**: the EXIF orientation tag is applied, as browsers, phone galleries and
annotation tools (CVAT, Label Studio, Roboflow) show a photo and so as its boxes were drawn.  A
phone photo stored 40x20 with orientation 6 is the 20x40 image everywhere here: its size
(:func:`size`), the labels, the HED maps, the overlays and the exported masks.

Pixels are 8-bit BGR (OpenCV's order; converted to RGB only where the network takes them).
Grayscale and palette images are expanded to three channels, alpha is dropped.  :func:`problem`
is ``convert``'s gate: a full decode that a truncated JPEG fails (OpenCV alone would decode the
first half and fill the rest with grey, with only a warning).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from wss.errors import DataError

_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """The encoded image ``data`` as upright 8-bit BGR; :class:`~wss.errors.DataError` naming ``name``
    if it does not decode."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if image is None or image.size == 0:
        raise DataError(f"{name}: corrupt or unreadable image")
    return image


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
            orientation = im.getexif().get(274, 1)
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({type(exc).__name__})") from exc
    return (w, h) if orientation in _TRANSPOSED else (h, w)


def problem(path: str | Path, height: int, width: int) -> str:
    """Why the image at ``path`` is unusable, or ``""``: missing, truncated or unreadable (every
    pixel is decoded), CMYK, more than 8 bits per channel, or not ``width x height`` upright."""
    path = Path(path)
    if not path.is_file():
        return "file is missing"
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode == "CMYK":
                return "CMYK image (convert it to RGB)"
            if mode.startswith("I") or mode == "F":
                return f"{mode} image with more than 8 bits per channel (convert it to 8-bit RGB)"
            im.load()  # the whole file: a truncated JPEG raises here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
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
