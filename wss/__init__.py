"""wss: weakly supervised instance segmentation from boxes, the library under the DVC stages of ``stages/``.

Conventions used everywhere in the package (converted only at the borders):

* **Box**: ``(x1, y1, x2, y2)`` integer pixel coordinates, ``x2``/``y2`` exclusive,
  so the box covers ``mask[y1:y2, x1:x2]``; width is ``x2 - x1``.  OpenCV's
  ``(x, y, w, h)`` rectangles are produced only at the ``cv2`` call sites.
* **Mask**: a 2-D ``uint8`` array of the image's height and width, 1 = object,
  0 = background.  Soft predictions are ``float32`` in ``[0, 1]``.
* **Training label**: a mask that may also hold ``VOID`` (255, as in PASCAL VOC) on pixels
  the loss leaves out (the "^i" label sources of :mod:`wss.net.inputs`).
* **Instance map**: a 2-D ``uint8`` array, 0 = background, ``k`` = instance ``k``
  (SBD's ``GTinst.Segmentation``).
"""

from wss.errors import ConfigError, DataError, SetupError, StageInputError, WssError

__all__ = ["WssError", "ConfigError", "DataError", "StageInputError", "SetupError"]
