"""SBD layout -> instance table and ground-truth masks: the ``convert`` stage's work.

One bad file never stops the run: it becomes a row of ``rejects.csv`` (file, reason), and the
stage fails only when the share of listed images with a reject exceeds
``convert.max_reject_fraction``.  See :mod:`wss.instances` for the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from wss import atomic, boxes, params, sbd
from wss.instances import COLUMNS, MASKS, REJECTS, TABLE, write_instance_map


@dataclass(frozen=True)
class ConvertConfig:
    """The ``convert`` params section."""

    max_reject_fraction: float  # share of listed images with a reject tolerated before the stage fails

    def validate(self) -> None:
        params.require(0 <= self.max_reject_fraction <= 1, "convert.max_reject_fraction", "lie in [0, 1]",
                       self.max_reject_fraction)


def convert_image(root: Path, image_id: str, split: str) -> tuple[np.ndarray | None, list[dict], list[dict]]:
    """Read one image's files: (instance map or None, instance rows, reject rows)."""
    img_file, inst_file = sbd.image_path(root, image_id), sbd.inst_path(root, image_id)
    for f in (img_file, inst_file):
        if not f.is_file():
            return None, [], [{"file": str(f), "image_id": image_id, "reason": "file is missing"}]
    # IMREAD_REDUCED would be faster, but only a full decode proves the JPEG is intact.
    img = cv2.imread(str(img_file), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, [], [{"file": str(img_file), "image_id": image_id, "reason": "corrupt or unreadable image"}]
    try:
        inst, cats = sbd.read_inst(inst_file)
    except sbd.SBDFormatError as exc:
        return None, [], [{"file": str(inst_file), "image_id": image_id, "reason": str(exc).split(": ", 1)[-1]}]
    h, w = img.shape[:2]
    if inst.shape != (h, w):
        reason = f"mask size {inst.shape[1]}x{inst.shape[0]} does not match image size {w}x{h}"
        return None, [], [{"file": str(inst_file), "image_id": image_id, "reason": reason}]
    rows, rejects = [], []
    areas = np.bincount(inst.ravel(), minlength=len(cats) + 1)
    for k, cat in enumerate(cats, start=1):
        reason = None
        if not 1 <= cat <= len(sbd.VOC_CLASSES):
            reason = f"instance {k}: category {cat} outside 1..{len(sbd.VOC_CLASSES)}"
        elif areas[k] == 0:
            reason = f"instance {k}: no pixels in Segmentation"
        if reason:
            rejects.append({"file": str(inst_file), "image_id": image_id, "reason": reason})
            continue
        b = boxes.from_mask(inst == k)
        rows.append({
            "image_id": image_id, "split": split, "instance_id": k, "category": int(cat),
            "category_name": sbd.VOC_CLASSES[cat - 1], "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2,
            "area": int(areas[k]), "height": h, "width": w,
        })  # fmt: skip
    unknown = np.flatnonzero(areas[len(cats) + 1 :]) + len(cats) + 1
    if unknown.size:
        rejects.append({"file": str(inst_file), "image_id": image_id,
                        "reason": f"instance ids {unknown.tolist()} in Segmentation have no category"})  # fmt: skip
    return inst, rows, rejects


def convert(root: Path, out: Path, max_reject_fraction: float) -> pd.DataFrame:
    rows: list[dict] = []
    rejects: list[dict] = []
    listed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for split in sbd.SPLITS:
        for image_id in sbd.read_split(root, split):
            if image_id in seen:
                rejects.append({"file": str(sbd.split_path(root, split)), "image_id": image_id,
                                "reason": "image id listed twice"})  # fmt: skip
                continue
            seen.add(image_id)
            listed.append((image_id, split))
    with atomic.target(out, directory=True) as tmp:
        with h5py.File(tmp / MASKS, "w") as h5:
            for image_id, split in tqdm(listed, desc="convert", unit="img"):
                inst, image_rows, image_rejects = convert_image(root, image_id, split)
                rows += image_rows
                rejects += image_rejects
                if inst is not None and image_rows:
                    write_instance_map(h5, image_id, inst)
        reject_table = pd.DataFrame(rejects, columns=["file", "image_id", "reason"])
        reject_table.to_csv(tmp / REJECTS, index=False)
        bad = reject_table["image_id"].nunique()
        fraction = bad / max(len(listed), 1)
        table = pd.DataFrame(rows, columns=COLUMNS)
        print(f"convert: {len(listed)} images listed, {len(table)} instances "
              f"({(table.split == 'train').sum()} train, {(table.split == 'val').sum()} val), "
              f"{len(reject_table)} rejects in {bad} images ({fraction:.1%})")  # fmt: skip
        for r in rejects[:10]:
            print(f"  reject {r['file']}: {r['reason']}")
        if fraction > max_reject_fraction:
            failed = out.with_name(out.name + "-" + REJECTS)
            reject_table.to_csv(failed, index=False)
            raise SystemExit(
                f"convert: {fraction:.1%} of images have rejects, more than convert.max_reject_fraction="
                f"{max_reject_fraction:.1%}; see {failed}"
            )
        table.to_parquet(tmp / TABLE, index=False)
    return table
