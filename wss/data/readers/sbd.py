"""The SBD dataset layout and its MATLAB files (``benchmark_RELEASE/dataset`` of Hariharan et al.).

Layout of a dataset directory::

    img/<id>.jpg      RGB image
    inst/<id>.mat     struct GTinst: Segmentation (HxW uint8, k = instance k),
                      Boundaries (Nx1 cell of sparse logical), Categories (Nx1 uint8, VOC id)
    cls/<id>.mat      struct GTcls: Boundaries (20x1 cell of sparse logical),
                      Segmentation (HxW uint8 class map), CategoriesPresent (Kx1 uint8)
    train.txt, val.txt  one image id per line

The reader accepts what MATLAB writes (struct fields by name, a one-instance ``Categories``
squeezed to a scalar, ``Segmentation`` as uint8 or double); the writer, used by the sample
generator, produces the same structures with :func:`scipy.io.savemat`.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

from wss.core import atomic
from wss.core.boxes import from_mask
from wss.core.masks import boundary, to_rle
from wss.data import files
from wss.data.dataset import Annotation, Dataset
from wss.errors import DataError

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
SPLITS = ("train", "val")
ARCHIVE_ROOT = "benchmark_RELEASE/dataset"  # the dataset directory inside benchmark.tgz
# The official release, fetched when data.source is sbd and data.url is empty.
RELEASE_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
RELEASE_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"


class SBDFormatError(DataError):
    """A file does not hold what the SBD layout promises; the message says what is wrong."""


def image_path(root: Path, image_id: str) -> Path:
    return Path(root) / "img" / f"{image_id}.jpg"


def inst_path(root: Path, image_id: str) -> Path:
    return Path(root) / "inst" / f"{image_id}.mat"


def cls_path(root: Path, image_id: str) -> Path:
    return Path(root) / "cls" / f"{image_id}.mat"


def split_path(root: Path, split: str) -> Path:
    return Path(root) / f"{split}.txt"


def read_split(root: Path, split: str) -> list[str]:
    """Image ids listed in ``<split>.txt`` (blank lines ignored)."""
    return [line.strip() for line in files.read_text(split_path(root, split)).splitlines() if line.strip()]


def _label_map(value: object, path: Path, field: str) -> np.ndarray:
    """A ``Segmentation`` field as a 2-D uint8 map; MATLAB may have stored it as double."""
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise SBDFormatError(f"{path}: {field} should be a 2-D map, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise SBDFormatError(f"{path}: {field} has non-numeric or non-finite values ({arr.dtype})")
        if np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() > 255:
            raise SBDFormatError(f"{path}: {field} values are not integers in 0..255")
        arr = arr.astype(np.uint8)
    return arr


# What scipy.io.loadmat raises for a file that is not a readable MATLAB 5 file: its own MatReadError,
# the zlib and struct errors of a damaged stream, NotImplementedError for a v7.3 (HDF5) file, and the
# errors of the values it decodes.
MAT_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    NotImplementedError,
    MemoryError,
    struct.error,
    zlib.error,
    scipy.io.matlab.MatReadError,
)


def read_inst(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``inst/<id>.mat``: the instance map (HxW uint8) and the category of each instance.

    ``categories[k - 1]`` is the VOC class id of instance ``k``.  Raises :class:`SBDFormatError`
    when the file is unreadable or lacks the ``GTinst`` struct and its fields.
    """
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except MAT_ERRORS as exc:
        raise SBDFormatError(f"{path}: unreadable .mat file ({type(exc).__name__}: {exc})") from exc
    gt = mat.get("GTinst")
    if gt is None:
        raise SBDFormatError(
            f"{path}: no GTinst struct (variables: {sorted(k for k in mat if not k.startswith('__'))})"
        )
    for field in ("Segmentation", "Categories"):
        if not hasattr(gt, field):
            raise SBDFormatError(f"{path}: GTinst has no field {field!r}")
    seg = _label_map(gt.Segmentation, path, "GTinst.Segmentation")
    cats = np.atleast_1d(np.asarray(gt.Categories))
    if cats.size and not np.issubdtype(cats.dtype, np.number):
        raise SBDFormatError(f"{path}: GTinst.Categories is not numeric ({cats.dtype})")
    return seg, cats.astype(np.int64).ravel()


def read_cls(path: Path) -> np.ndarray:
    """Read ``cls/<id>.mat``: the class map (HxW uint8, 0 = background, 1..20 = VOC id)."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except MAT_ERRORS as exc:
        raise SBDFormatError(f"{path}: unreadable .mat file ({type(exc).__name__}: {exc})") from exc
    gt = mat.get("GTcls")
    if gt is None or not hasattr(gt, "Segmentation"):
        raise SBDFormatError(f"{path}: no GTcls struct with a Segmentation field")
    return _label_map(gt.Segmentation, path, "GTcls.Segmentation")


def _cell(items: list[np.ndarray]) -> np.ndarray:
    """An Nx1 MATLAB cell array."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _sparse_boundary(mask: np.ndarray) -> scipy.sparse.csc_matrix:
    return scipy.sparse.csc_matrix(boundary(mask, image_edge=True))


def _savemat_bytes(variables: dict) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="5", do_compression=True, oned_as="column")
    data = bytearray(buf.getvalue())
    # The 116-byte text header carries a creation time; a fixed one makes the sample byte-for-byte
    # reproducible, so DVC sees an unchanged dataset and skips the stages after it.
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970"
    data[:116] = header.ljust(116, b" ")
    return bytes(data)


def write_inst(path: Path, instance_map: np.ndarray, categories: list[int]) -> None:
    """Write ``inst/<id>.mat`` exactly as SBD stores it (``GTinst`` with its three fields)."""
    ids = range(1, len(categories) + 1)
    gt = {
        "Segmentation": instance_map.astype(np.uint8),
        "Boundaries": _cell([_sparse_boundary(instance_map == k) for k in ids]),
        "Categories": np.asarray(categories, np.uint8).reshape(-1, 1),
    }
    atomic.write_bytes(path, _savemat_bytes({"GTinst": gt}))


def write_cls(path: Path, class_map: np.ndarray) -> None:
    """Write ``cls/<id>.mat`` exactly as SBD stores it (``GTcls`` with its three fields)."""
    present = sorted(int(c) for c in np.unique(class_map) if c)
    gt = {
        "Boundaries": _cell([_sparse_boundary(class_map == c) for c in range(1, 21)]),
        "Segmentation": class_map.astype(np.uint8),
        "CategoriesPresent": np.asarray(present, np.uint8).reshape(-1, 1),
    }
    atomic.write_bytes(path, _savemat_bytes({"GTcls": gt}))


def read(root: Path) -> Dataset:
    """Read the SBD dataset at ``root`` (both split lists) into a :class:`wss.data.dataset.Dataset`.

    Image sizes come from the instance maps (``convert`` checks them against the images).  A
    missing or bad ``.mat``, an image listed twice, an instance with a category outside 1..20 or
    without pixels, and pixels of an instance without a category are reject rows.
    """
    root = Path(root)
    images: dict[str, dict] = {}
    annotations: list[Annotation] = []
    rejects: list[dict] = []
    for split in SPLITS:
        for image_id in read_split(root, split):
            if image_id in images:
                rejects.append(
                    {"file": str(split_path(root, split)), "image_id": image_id, "reason": "image id listed twice"}
                )
                continue
            path = inst_path(root, image_id)

            def reject(reason: str, file: Path = path, image_id: str = image_id) -> None:
                rejects.append({"file": str(file), "image_id": image_id, "reason": reason})

            if not path.is_file():
                reject("file is missing")
                continue
            try:
                inst, cats = read_inst(path)
            except SBDFormatError as exc:
                reject(str(exc).split(": ", 1)[-1])
                continue
            h, w = inst.shape
            images[image_id] = {"file_name": str(image_path(Path(), image_id)), "height": h, "width": w, "split": split}
            areas = np.bincount(inst.ravel(), minlength=len(cats) + 1)
            for k, cat in enumerate(cats, start=1):
                if not 1 <= cat <= len(VOC_CLASSES):
                    reject(f"instance {k}: category {cat} outside 1..{len(VOC_CLASSES)}")
                elif areas[k] == 0:
                    reject(f"instance {k}: no pixels in Segmentation")
                else:
                    m = inst == k
                    seg = {"size": [h, w], "counts": to_rle(m)}
                    annotations.append(
                        Annotation(
                            len(annotations) + 1,
                            image_id,
                            int(cat),
                            from_mask(m),
                            seg,
                            False,
                            source_file=str(inst_path(root, image_id)),
                            source_id=str(k),
                        )
                    )
            unknown = np.flatnonzero(areas[len(cats) + 1 :]) + len(cats) + 1
            if unknown.size:
                reject(f"instance ids {unknown.tolist()} in Segmentation have no category")
    return Dataset(images, dict(enumerate(VOC_CLASSES, start=1)), annotations, rejects)
