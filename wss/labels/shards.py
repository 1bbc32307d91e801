"""HDF5 training shards: fixed-size crops around each box with their three label masks.

One shard file ``shard-NNNNN.h5`` holds ``n`` instances of one split.  Datasets (``S`` is
``labels.crop_size``), chunked one instance per chunk and gzip-compressed:

===============  ==================  ==========================================================
name             shape, dtype        meaning
===============  ==================  ==========================================================
``image``        (n, S, S, 3) uint8  RGB crop of the square window around the box
``box``          (n, S, S) uint8     box channel: 1 inside the (given) box
``teacher``      (n, S, S) uint8     the label ``labels.method`` made (GrabCut or GrabCut+)
``box_label``    (n, S, S) uint8     filled-box label (same pixels as ``box``)
``gt``           (n, S, S) uint8     ground-truth mask (all 0 when the instance has none, see ``has_gt``)
``teacher_full`` (n,) vlen uint8     the full-resolution teacher label inside the (clipped) box,
                                     ``np.packbits`` of ``mask[y1:y2, x1:x2]``; :func:`full_label`
                                     unpacks it (outside the box the label is 0)
``teacher_votes`` (n, S, S) uint8   share of jittered GrabCuts calling the pixel foreground,
                                     times 255 (train split, ``labels.vote_runs`` > 0;
                                     otherwise the teacher label's coverage of each crop pixel
                                     times 255, so ``>= 128`` is exactly ``teacher``)
``window``       (n, 4) int32        crop window ``(x1, y1, x2, y2)`` in image pixels (may leave the image)
``box_xyxy``     (n, 4) int32        the given box ``(x1, y1, x2, y2)`` in image pixels
``image_size``   (n, 2) int32        ``(height, width)`` of the full image
``key``          (n,) str            ``"<image_id>/<instance_id>"``
``category``     (n,) int32          category id (the dataset's own, as in the instance table)
``fallback``     (n,) str            GrabCut fallback reason, "" when GrabCut was used as is
``has_gt``       (n,) bool           the instance has a ground-truth mask (boxes-only datasets: none)
``iou_teacher``  (n,) float32        IoU of the full-resolution teacher label with the ground truth (NaN: no mask)
``iou_box``      (n,) float32        IoU of the filled box with the ground truth (NaN: no mask)
===============  ==================  ==========================================================

A copy made from a reviewer's decisions (:mod:`wss.net.reviewed`) adds ``reviewed`` ``(n,) bool``
and ``reviewed_label`` ``(n, S, S) uint8``, the accepted mask's crop.

The file attribute ``fingerprint`` is the hash of everything that made the shard (params, code and
input bytes); a shard whose fingerprint differs from the one expected is stale and rebuilt.  The
directory follows :mod:`wss.core.resumable`: stamped with the fingerprint of the params and code,
the manifest written last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wss.core import atomic, resumable
from wss.core.boxes import Box, clip
from wss.errors import StageInputError

# train.labels -> the shard dataset (field) its label is made from (see wss.net.inputs for the "^i" variants).
LABEL_FIELDS = {
    "teacher": "teacher",
    "teacher_i": "teacher_votes",
    "box": "box_label",
    "box_i": "box",
    "gt": "gt",
    "self": "self_label",
}
MANIFEST = resumable.MANIFEST


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


RAGGED = ("teacher_full",)  # one 1-D array per instance, of varying length


def stack(name: str, values: list) -> np.ndarray:
    """One field's per-instance values as one array (an object array of 1-D arrays for :data:`RAGGED`)."""
    if name not in RAGGED:
        return np.stack([np.asarray(v) for v in values])
    out = np.empty(len(values), object)
    for i, v in enumerate(values):  # item by item: equal lengths must not become a 2-D array
        out[i] = np.asarray(v)
    return out


def write(path: Path, records: dict[str, np.ndarray], fp: str) -> None:
    """Write one shard atomically (temp file, then rename)."""
    with atomic.target(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["fingerprint"] = fp
        for name, arr in records.items():
            arr = np.asarray(arr)
            if name in RAGGED:
                f.create_dataset(name, data=arr, dtype=h5py.vlen_dtype(arr[0].dtype))
            elif arr.dtype.kind == "U" or arr.dtype == object:  # strings (as read() returns them: objects)
                f.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
            elif arr.ndim >= 3:
                f.create_dataset(
                    name, data=arr, chunks=(1,) + arr.shape[1:], compression="gzip", compression_opts=4, shuffle=True
                )
            else:
                f.create_dataset(name, data=arr)


def read_fingerprint(path: Path) -> str | None:
    """The shard's fingerprint, or ``None`` when the file is missing or unreadable (e.g. truncated)."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["fingerprint"])
    except (OSError, KeyError):
        return None


def read(path: Path, fields: tuple[str, ...] | None = None, optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load a shard's datasets (all of them, or ``fields`` and those of ``optional`` it has) into
    memory; strings come back as ``str``."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in (*fields, *(o for o in optional if o in f)) if fields else tuple(f.keys()):
            ds = f[name]
            out[name] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
    return out


def full_label(packed: np.ndarray, box_xyxy: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """The full-resolution label of one instance from its ``teacher_full`` bits, box and image size."""
    h, w = (int(v) for v in image_size)
    b = clip(Box(*(int(v) for v in box_xyxy)), h, w)
    out = np.zeros((h, w), np.uint8)
    n = b.height * b.width
    out[b.y1 : b.y2, b.x1 : b.x2] = np.unpackbits(packed, count=n).reshape(b.height, b.width)
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise StageInputError(f"{path} is missing; run the labels stage first (dvc repro labels)")
    return json.loads(path.read_text())


def count(directory: str | Path, split: str) -> int:
    """How many instances the shards of ``split`` listed in the manifest hold."""
    return sum(s["count"] for s in read_manifest(directory)["shards"] if s["split"] == split)


def files(directory: str | Path, split: str) -> list[Path]:
    """The shard files of ``split`` listed in the manifest, in order."""
    directory = Path(directory)
    return [directory / s["file"] for s in read_manifest(directory)["shards"] if s["split"] == split]
