"""The instance table and the ground-truth instance maps that the ``convert`` stage writes.

``instances.parquet`` has one row per instance::

    image_id, split, instance_id, category (1..20), category_name,
    x1, y1, x2, y2 (box, x2/y2 exclusive), area (pixels), height, width (of the image)

``masks.h5`` holds one gzip-compressed uint8 instance map per image, at ``/masks/<image_id>``;
instance ``instance_id`` is the set of pixels equal to it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

TABLE = "instances.parquet"
MASKS = "masks.h5"
REJECTS = "rejects.csv"
COLUMNS = ["image_id", "split", "instance_id", "category", "category_name",
           "x1", "y1", "x2", "y2", "area", "height", "width"]  # fmt: skip


def read_table(directory: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(directory) / TABLE)


def write_instance_map(h5: h5py.File, image_id: str, instance_map: np.ndarray) -> None:
    h5.create_dataset(f"masks/{image_id}", data=instance_map.astype(np.uint8), compression="gzip", compression_opts=4)


class MaskReader:
    """Read instance maps from ``masks.h5``; open one per process (h5py handles do not fork)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / MASKS
        self._h5 = h5py.File(self.path, "r")

    def instance_map(self, image_id: str) -> np.ndarray:
        return self._h5["masks"][image_id][()]

    def mask(self, image_id: str, instance_id: int) -> np.ndarray:
        return (self.instance_map(image_id) == instance_id).astype(np.uint8)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> MaskReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
