"""A PASCAL VOC devkit (``VOCdevkit/VOC20xx``), read into :class:`wss.data.dataset.Dataset`.

* Boxes come from ``Annotations/<id>.xml``: ``bndbox`` corners are 1-based and inclusive, so
  ``(xmin, ymin, xmax, ymax)`` is the project's box ``(xmin - 1, ymin - 1, xmax, ymax)``.
  ``difficult`` is kept as a flag (the instance table's ``difficult`` column).
* Masks come from ``SegmentationObject/<id>.png`` where it exists: a palette PNG whose index ``k``
  is the ``k``-th object of the XML, 0 background, 255 void (the band VOC leaves unlabelled around
  each object; it belongs to no instance).  Images without one are boxes-only.
* Splits come from ``ImageSets/Segmentation/<split>.txt``, or ``ImageSets/Main`` when the devkit
  has no segmentation lists.
* Categories are the object names the annotations use, sorted, numbered from 1 (for VOC's 20
  classes this is VOC's own order).

A malformed XML, an object without a valid box, a box outside the image, an image listed twice, a
mask whose size is not the image's or that names an object the XML lacks: each becomes a reject
row naming the file and the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from wss.core.boxes import Box
from wss.core.masks import VOID
from wss.data import files
from wss.data.dataset import Annotation, Dataset
from wss.data.readers import coco
from wss.errors import DataError


def find_root(path: str | Path) -> Path:
    """The ``VOC20xx`` directory at or below ``path`` (a devkit, or the year directory itself)."""
    path = Path(path)
    if (path / "Annotations").is_dir():
        return path
    found = sorted(p.parent for p in path.glob("*/Annotations") if p.is_dir()) + sorted(
        p.parent for p in path.glob("*/*/Annotations") if p.is_dir()
    )
    if not found:
        raise DataError(f"{path}: no VOC devkit here (looked for Annotations/ in it and two levels below)")
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(path)) for p in found)
        raise DataError(f"{path}: several VOC devkits ({listed}); set data.annotations to the one to use")
    return found[0]


def read(path: str | Path) -> Dataset:
    """Read the devkit at ``path`` (see the module docstring)."""
    root = find_root(path)
    lists = root / "ImageSets" / "Segmentation"
    if not any(lists.glob("*.txt")):
        lists = root / "ImageSets" / "Main"
    split_files = {s: lists / f"{s}.txt" for s in ("train", "val", "test") if (lists / f"{s}.txt").is_file()}
    if not split_files:
        raise DataError(f"{root}: no train.txt / val.txt under ImageSets/Segmentation or ImageSets/Main")
    rejects: list[dict] = []
    parsed: list[tuple[str, str, dict]] = []
    seen: set[str] = set()
    for split, listing in split_files.items():
        for image_id in (line.split()[0] for line in files.read_text(listing).splitlines() if line.strip()):
            if "/" in image_id or "\\" in image_id or image_id in (".", ".."):
                reason = f"image id {files.excerpt(image_id)} is a path, not a name"
                rejects.append({"file": str(listing), "image_id": None, "reason": reason})
                continue
            if image_id in seen:
                rejects.append({"file": str(listing), "image_id": image_id, "reason": "image id listed twice"})
                continue
            seen.add(image_id)
            xml = root / "Annotations" / f"{image_id}.xml"
            if xml.exists() and not files.inside(xml, root):
                rejects.append(
                    {"file": str(xml), "image_id": image_id, "reason": "a link to a file outside the dataset"}
                )
                continue
            try:
                info = _parse_xml(xml)
            except DataError as exc:
                rejects.append({"file": str(xml), "image_id": image_id, "reason": str(exc)})
                continue
            parsed.append((image_id, split, info))
    names = sorted({o["name"] for _, _, info in parsed for o in info["objects"] if not o["error"]})
    categories = {i: n for i, n in enumerate(names, start=1)}
    ids = {n: i for i, n in categories.items()}
    images: dict[str, dict] = {}
    annotations: list[Annotation] = []
    for image_id, split, info in parsed:
        h, w = info["height"], info["width"]
        images[image_id] = {"file_name": f"JPEGImages/{info['filename']}", "height": h, "width": w, "split": split}
        objects = _masks(root, image_id, info, rejects)
        for k, obj in enumerate(info["objects"], start=1):
            if obj["error"]:
                rejects.append(
                    {
                        "file": str(root / "Annotations" / f"{image_id}.xml"),
                        "image_id": image_id,
                        "reason": obj["error"],
                    }
                )
                continue
            # A box partly outside the image is clipped to it by the table, as COCO's and YOLO's are;
            # one wholly outside becomes a reject there, of that object alone.
            seg = coco.encode(objects == k) if objects is not None else None
            annotations.append(
                Annotation(
                    len(annotations) + 1,
                    image_id,
                    ids[obj["name"]],
                    obj["box"],
                    seg,
                    False,
                    difficult=obj["difficult"],
                    source_file=str(root / "Annotations" / f"{image_id}.xml"),
                    source_id=str(k),
                )
            )
    return Dataset(images, categories, annotations, rejects)


def _parse_xml(path: Path) -> dict:
    """``{"filename", "height", "width", "objects": [{"name", "box", "difficult", "truncated"}]}``."""
    if not path.is_file():
        raise DataError("no annotation XML")
    try:
        tree = files.read_xml(path)
    except DataError as exc:
        raise DataError(f"unreadable annotation XML ({files.reason(exc, path)})") from None
    try:
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    except (TypeError, ValueError):
        raise DataError("no integer size/width and size/height") from None
    if width <= 0 or height <= 0:
        raise DataError(f"image size {width}x{height} is not positive")
    objects = []
    for k, obj in enumerate(tree.findall("object"), start=1):
        # A bad object is kept as an error in its place: object k is index k of SegmentationObject.
        entry = {
            "name": (obj.findtext("name") or "").strip(),
            "box": None,
            "error": "",
            "difficult": obj.findtext("difficult", "0").strip() == "1",
            "truncated": obj.findtext("truncated", "0").strip() == "1",
        }
        try:
            corners = [float(obj.findtext(f"bndbox/{c}")) for c in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            corners = None
        if corners is None or not all(math.isfinite(v) for v in corners):
            entry["error"] = f"object {k}: no numeric bndbox xmin/ymin/xmax/ymax"
        else:
            xmin, ymin, xmax, ymax = (int(round(v)) for v in corners)
            entry["box"] = Box(xmin - 1, ymin - 1, xmax, ymax)  # 1-based inclusive corners -> exclusive 0-based
            if entry["box"].width <= 0 or entry["box"].height <= 0:
                entry["error"] = f"object {k}: zero-area box {corners}"
        if not entry["name"] and not entry["error"]:
            entry["error"] = f"object {k}: no name"
        objects.append(entry)
    return {
        "filename": tree.findtext("filename") or f"{path.stem}.jpg",
        "height": height,
        "width": width,
        "objects": objects,
    }


def _masks(root: Path, image_id: str, info: dict, rejects: list[dict]) -> np.ndarray | None:
    """The object-index map of ``SegmentationObject/<id>.png`` (void set to 0), or ``None``."""
    path = root / "SegmentationObject" / f"{image_id}.png"
    if not path.is_file():
        return None
    if not files.inside(path, root):
        rejects.append({"file": str(path), "image_id": image_id, "reason": "a link to a file outside the dataset"})
        return None
    try:
        with Image.open(path) as im:
            if im.size != (info["width"], info["height"]):  # checked before a pixel is decoded
                reason = f"mask size {im.size[0]}x{im.size[1]} is not the image's {info['width']}x{info['height']}"
                rejects.append({"file": str(path), "image_id": image_id, "reason": reason})
                return None
            index = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
    except (OSError, Image.DecompressionBombError) as exc:
        rejects.append({"file": str(path), "image_id": image_id, "reason": f"unreadable mask ({str(exc)[:120]})"})
        return None
    extra = sorted(set(np.unique(index).tolist()) - {0, VOID} - set(range(1, len(info["objects"]) + 1)))
    if extra:
        rejects.append(
            {
                "file": str(path),
                "image_id": image_id,
                "reason": f"mask indices {extra} name objects the XML does not have",
            }
        )
        return None
    return np.where(index == VOID, 0, index)
