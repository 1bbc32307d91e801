"""The instance table that the ``convert`` stage writes, whatever the dataset's own format.

``instances.parquet`` has one row per usable instance::

    image_id        str   the image's id (SBD/VOC id, COCO/YOLO file stem)
    split           str   train | val
    instance_id     int   1, 2, ... within the image
    category        int   the dataset's own category id
    category_name   str   the dataset's own name for it
    x1, y1, x2, y2  int   the box (x2/y2 exclusive, see ``wss/__init__``)
    area            int   mask pixels (the box's area when there is no mask)
    height, width   int   of the image
    file            str   the image, relative to the dataset directory (``data/raw``)
    mask            str   the ground-truth mask as COCO compressed-RLE counts (:func:`wss.core.masks.to_rle`);
                          "" for an instance with a box only
    difficult       bool  VOC's flag (False elsewhere)
    coco_image_id   int   the image's id in exported COCO files (a COCO source keeps its own ids)
    source_file     str   the annotation file the instance comes from, relative to the dataset directory
    source_id       str   its id in that file: COCO's annotation id, YOLO's line number, the object's
                          index in a VOC XML, the instance number of an SBD ``.mat`` (1-based)

``categories.json`` lists every category of the dataset, ``[{"id", "name"}, ...]``, used or not.
``rejects.csv`` lists every input left out: file, image id and reason.  ``source.json`` names the
source format and the files that describe the dataset (COCO's instances files, YOLO's yaml), for
``export`` to write the masks back in the user's own format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from wss.core.masks import from_rle
from wss.errors import StageInputError

SPLITS = ("train", "val")
TABLE = "instances.parquet"
CATEGORIES = "categories.json"
REJECTS = "rejects.csv"
SOURCE = "source.json"  # {"source": data.source, "files": the annotation files the dataset was read from}
COLUMNS = [
    "image_id",
    "split",
    "instance_id",
    "category",
    "category_name",
    "x1",
    "y1",
    "x2",
    "y2",
    "area",
    "height",
    "width",
    "file",
    "mask",
    "difficult",
    "coco_image_id",
    "source_file",
    "source_id",
]


def read_table(directory: str | Path) -> pd.DataFrame:
    path = Path(directory) / TABLE
    if not path.is_file():
        raise StageInputError(f"{path} is missing; run the convert stage first (dvc repro convert)")
    return pd.read_parquet(path)


def read_categories(directory: str | Path) -> dict[int, str]:
    """The dataset's categories, id -> name, in the file's order."""
    return {int(c["id"]): str(c["name"]) for c in json.loads((Path(directory) / CATEGORIES).read_text())}


def key(row) -> str:
    """An instance's key, ``"<image_id>/<instance_id>"``, as the shards and exported files name it."""
    return f"{row.image_id}/{row.instance_id}"


def by_key(table: pd.DataFrame) -> dict[str, object]:
    """The rows of ``table`` (namedtuples) by instance :func:`key`."""
    return {key(r): r for r in table.itertuples()}


def gt_mask(row) -> np.ndarray | None:
    """The ground-truth mask of a table row (a namedtuple or Series), or ``None`` for a box-only instance."""
    return from_rle(row.mask, int(row.height), int(row.width)) if row.mask else None


def read_source(directory: str | Path) -> dict:
    """``{"source", "files"}``: the dataset's format and the annotation files it was read from."""
    return json.loads((Path(directory) / SOURCE).read_text())
