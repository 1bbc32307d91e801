"""The user's YOLO dataset as YOLO-seg: the same layout, each used label line a polygon.

Under the output directory, mirroring the dataset's own layout: the images (hard links where
the file system allows, else copies), ``labels/...`` with every line the pipeline used replaced
by ``class x1 y1 x2 y2 ...`` (the exported mask's outline, normalised to [0, 1], one polygon per
object, a multi-part object joined by zero-width bridges as Ultralytics writes it), and the dataset
yaml, whose splits point at the copies.  The yaml has no ``path``: Ultralytics then takes the
yaml's own directory as the dataset root, wherever the export is moved.

Ultralytics refuses a dataset yaml without both ``train`` and ``val`` (``check_det_dataset``).  When
the user's yaml lacks one, the pipeline made its own split (``data.val_fraction``), and the export
says so: ``train`` and ``val`` become list files beside the yaml (``train.txt``, ``val.txt``, one
``./``-relative image path a line, a form Ultralytics reads), ``val`` the pipeline's val images and
``train`` every other image of the dataset, so the two never overlap.  Lines the pipeline left
out (rejects) are dropped and counted; an object whose mask came out empty keeps its box, as a
rectangle, so every used line stays, in its order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from wss.core import atomic
from wss.core.masks import from_rle, to_polygon
from wss.data.fetch import link_or_copy
from wss.data.instances import key
from wss.data.readers.yolo import images_root, split_images


def polygon_line(category: int, mask: np.ndarray) -> str | None:
    """The YOLO-seg line of one object, or ``None`` for an empty mask."""
    poly = to_polygon(mask)
    if poly is None:
        return None
    h, w = mask.shape
    xy = np.clip(poly / [w, h], 0, 1)
    return f"{category} " + " ".join(f"{v:.6f}" for v in xy.ravel())


def write(table: pd.DataFrame, masks: dict[str, dict], data_root: Path, out: Path, yaml_rel: str) -> dict[str, int]:
    """Write the YOLO-seg copy of the dataset described by ``data_root / yaml_rel`` under ``out``;
    ``masks`` maps an instance key to ``{"segmentation", ...}`` (``None``: a rejected mask left out;
    the object is written as its box, as an empty mask is).  Returns counts."""
    spec_path = data_root / yaml_rel
    spec = yaml.safe_load(spec_path.read_text())
    root = images_root(spec_path, spec)
    root_rel = root.resolve().relative_to(data_root.resolve())
    counts = {"images": 0, "label_files": 0, "polygons": 0, "lines_dropped": 0, "empty_masks": 0, "dropped": 0}
    splits = {s: spec[s] for s in ("train", "val", "test") if spec.get(s)}
    copies: dict[str, list[Path]] = {}  # split -> its images' copies under out
    for split, rel in splits.items():
        copies[split] = []
        for img in split_images(root / str(rel)):
            if not img.resolve().is_relative_to(root):  # outside the dataset: the reader rejected it
                continue
            copy_path = out / root_rel / img.resolve().relative_to(root)
            if not copy_path.exists():
                link_or_copy(img, copy_path)
                counts["images"] += 1
            copies[split].append(copy_path)
    for source_file, rows in table.groupby("source_file", sort=True):
        lines = (data_root / source_file).read_text().splitlines()
        by_line = {int(r.source_id): r for r in rows.itertuples()}
        written = []
        for k, line in enumerate(lines, start=1):
            r = by_line.get(k)
            if r is None:
                counts["lines_dropped"] += bool(line.strip())
                continue
            m = masks[key(r)]
            if m["segmentation"] is None:  # a rejected mask, dropped: the object stays, as its box
                counts["dropped"] += 1
                poly = None
            else:
                poly = polygon_line(int(r.category), from_rle(m["segmentation"]["counts"], int(r.height), int(r.width)))
                counts["empty_masks"] += poly is None
            if poly is None:  # an empty or dropped mask: the object stays, as its box
                box = np.zeros((int(r.height), int(r.width)), np.uint8)
                box[r.y1 : r.y2, r.x1 : r.x2] = 1
                poly = polygon_line(int(r.category), box)
            written.append(poly)
            counts["polygons"] += 1
        atomic.write_text(out / source_file, "".join(f"{line}\n" for line in written))
        counts["label_files"] += 1
    yaml_out = out / yaml_rel
    copy = {k: v for k, v in spec.items() if k not in ("path", *splits)}
    both = "train" in splits and "val" in splits
    for split, rel in splits.items():  # as they were (a test split always): a directory, or a list of the copies
        if both or split == "test":
            target = out / root_rel / str(rel)
            if str(rel).endswith(".txt"):
                write_list(target, copies[split])
            copy[split] = os.path.relpath(target, yaml_out.parent)
    if not both:  # train and val are the pipeline's split of the rest
        images = sorted({p for k, ps in copies.items() if k != "test" for p in ps})
        for split, mine in split_lists(table, images, out).items():
            write_list(yaml_out.parent / f"{split}.txt", mine)
            copy[split] = f"{split}.txt"
            counts[f"{split}_images"] = len(mine)
    atomic.write_text(yaml_out, yaml.safe_dump(copy, sort_keys=False))
    return counts


def write_list(path: Path, images: list[Path]) -> None:
    """An Ultralytics image list: one image a line, ``./`` and its path relative to the list's directory."""
    atomic.write_text(path, "".join(f"./{os.path.relpath(p, path.parent)}\n" for p in images))


def split_lists(table: pd.DataFrame, images: list[Path], root: Path) -> dict[str, list[Path]]:
    """``{"train": [...], "val": [...]}`` of ``images`` (the dataset's copy under ``root``): ``val``
    those the instance table puts in val (by ``file``, relative to ``root``), ``train`` all the
    others (images without a used object too), in the given order."""
    val_files = set(table.loc[table.split == "val", "file"].astype(str))
    val = [p for p in images if str(p.relative_to(root)) in val_files]
    return {"train": [p for p in images if str(p.relative_to(root)) not in val_files], "val": val}
