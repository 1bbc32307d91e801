"""The Ultralytics YOLO dataset layout, read into :class:`wss.data.dataset.Dataset`.

A dataset yaml names the root (``path``, relative to the yaml), one entry per split (``train``,
``val``, ``test``: a directory of images under the root, or a ``.txt`` file listing them) and the
class ``names`` (a list, or a mapping from class index to name).  Each image
``.../images/<split>/<stem>.jpg`` has a label file ``.../labels/<split>/<stem>.txt`` (none: no
objects) with one object per line, coordinates normalised to the image size:

* detection: ``class cx cy w h`` (a box, no mask);
* segmentation: ``class x1 y1 x2 y2 ...`` (a polygon, at least 3 points; its box is its extent).

Category ids are the class indices; a bad line, an unknown class, a label file without an image
or an unreadable image becomes a reject row naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wss.core.boxes import Box
from wss.core.image import size as image_size
from wss.data import files
from wss.data.dataset import IMAGE_SUFFIXES, Annotation, Dataset
from wss.data.readers.coco import round_edge
from wss.errors import DataError

SLACK = 1e-3  # normalised coordinates a hair outside [0, 1] are rounding, not errors


def read(yaml_path: str | Path) -> Dataset:
    """Read the dataset that ``yaml_path`` describes; ``ValueError`` naming the file if the yaml is unusable."""
    yaml_path = Path(yaml_path)
    spec = files.read_yaml(yaml_path)
    if not isinstance(spec, dict) or "names" not in spec:
        raise DataError(f"{yaml_path}: a YOLO dataset yaml needs 'names' and one entry per split")
    names = spec["names"]
    if isinstance(names, list):
        categories = {k: str(v) for k, v in enumerate(names)}
    elif isinstance(names, dict) and all(isinstance(k, int) and not isinstance(k, bool) for k in names):
        categories = {k: str(v) for k, v in names.items()}
    else:
        raise DataError(f"{yaml_path}: names must be a list of class names or a mapping of class ids to names")
    splits = {s: spec[s] for s in ("train", "val", "test") if spec.get(s)}
    if not splits:
        raise DataError(f"{yaml_path}: names no split (train, val or test)")
    if not all(isinstance(v, str) for v in splits.values()):
        raise DataError(
            f"{yaml_path}: each split must be one directory of images or one .txt list of them "
            "(a YAML list of them is not supported)"
        )
    root = images_root(yaml_path, spec)
    images: dict[str, dict] = {}
    annotations: list[Annotation] = []
    rejects: list[dict] = []
    labels: dict[Path, dict[str, Path]] = {}  # label directory -> its label files by stem
    for split, rel in splits.items():
        listed = str(rel).lower().endswith(".txt")
        try:
            paths = split_images(root / str(rel))
        except DataError as exc:
            raise DataError(f"{yaml_path}: {split}: {exc}") from exc
        stems = set()
        for path in paths:
            stems.add(path.stem)
            try:  # the upright size from the header: convert decodes every image it keeps (wss.core.image.problem)
                h, w = image_size(path)
            except DataError:
                rejects.append({"file": str(path), "image_id": path.stem, "reason": "corrupt or unreadable image"})
                continue
            if path.stem in images:
                rejects.append({"file": str(path), "image_id": path.stem, "reason": "image id listed twice"})
                continue
            try:
                file_name = str(path.relative_to(root))
            except ValueError:
                rejects.append({"file": str(path), "image_id": path.stem, "reason": f"outside the dataset root {root}"})
                continue
            images[path.stem] = {"file_name": file_name, "height": h, "width": w, "split": split}
            label_dir = _label_dir(path.parent)
            if label_dir not in labels:
                labels[label_dir] = _labels_in(label_dir)
            label = labels[label_dir].get(path.stem)
            text = ""
            if label is not None and not files.inside(label, root):
                rejects.append(
                    {"file": str(label), "image_id": path.stem, "reason": "a link to a file outside the dataset"}
                )
            elif label is not None:
                try:
                    text = files.read_text(label)
                except DataError as exc:
                    rejects.append({"file": str(label), "image_id": path.stem, "reason": files.reason(exc, label)})
            if text:
                for k, line in enumerate(text.splitlines(), start=1):
                    if not line.strip():
                        continue
                    ann, reason = parse_line(line, categories, h, w, path.stem, len(annotations) + 1, str(label), k)
                    if reason:
                        rejects.append({"file": str(label), "image_id": path.stem, "reason": f"line {k}: {reason}"})
                    else:
                        annotations.append(ann)
        label_dir = _label_dir(root / str(rel))
        if not listed and label_dir.is_dir():  # a list file picks some images of a directory: the rest are not orphans
            for label in _labels_in(label_dir).values():
                if label.stem not in stems:
                    rejects.append(
                        {"file": str(label), "image_id": label.stem, "reason": "label file without an image"}
                    )
    return Dataset(images, categories, annotations, rejects)


def split_images(entry: Path) -> list[Path]:
    """The images of one split entry, in order: a directory's image files, or the lines of a ``.txt``
    list file (Ultralytics' other form: one image path a line, ``./`` meaning the list's directory,
    any other relative path the list's directory too)."""
    if entry.suffix.lower() == ".txt":
        try:
            lines = files.read_text(entry).splitlines()
        except DataError as exc:
            raise DataError(f"image list {exc}") from exc
        return [entry.parent / line.strip() for line in lines if line.strip()]
    if not entry.is_dir():
        raise DataError(f"directory {entry} does not exist")
    return sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def images_root(yaml_path: Path, spec: dict | None = None) -> Path:
    """The dataset root a yaml names; image file names are relative to it.

    ``path`` relative to the yaml where that holds the split directories; else, since a stock yaml
    names where Ultralytics keeps it (``../datasets/coco128``, or an absolute path on another
    machine), the yaml's own directory or a directory of ``path``'s name beside the yaml: the first
    that holds the first split's images."""
    yaml_path = Path(yaml_path)
    spec = spec if spec is not None else files.read_yaml(yaml_path)
    base, given = yaml_path.parent, str(spec.get("path") or "")
    candidates = ([] if not given or Path(given).is_absolute() else [base / given]) + [base]
    if given:
        candidates.append(base / Path(given).name)
    first = next((str(spec[s]) for s in ("train", "val", "test") if isinstance(spec.get(s), str)), "")
    for c in candidates:
        if first and (c / first).exists():
            return c.resolve()
    return candidates[0].resolve()


def _labels_in(label_dir: Path) -> dict[str, Path]:
    """The label files of a directory by stem, ``.txt`` in any case (``c.TXT`` too), in name order."""
    if not label_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(label_dir.iterdir()) if p.suffix.lower() == ".txt" and p.is_file()}


def _label_dir(image_dir: Path) -> Path:
    """``.../images/<split>`` -> ``.../labels/<split>`` (the last ``images`` component, as Ultralytics does)."""
    parts = list(image_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return image_dir.parent / "labels" / image_dir.name


def parse_line(
    line: str,
    categories: dict[int, str],
    h: int,
    w: int,
    image_id: str,
    annotation_id: int,
    source_file: str = "",
    line_number: int = 0,
) -> tuple[Annotation | None, str]:
    """One label line as an annotation, or the reason it is unusable."""
    fields = line.split()
    try:
        cls = int(fields[0])
        values = np.array([float(v) for v in fields[1:]])
    except ValueError:
        return None, f"not numbers: {line.strip()[:60]!r}"
    if cls not in categories:
        return None, f"unknown class {cls}"
    if not np.all(np.isfinite(values)):
        return None, "non-finite coordinates"
    if len(values) == 4:
        cx, cy, bw, bh = values
        if bw < 0 or bh < 0:
            return None, f"negative width or height: {line.strip()[:60]!r}"
        xs, ys, polygon = np.array([cx - bw / 2, cx + bw / 2]), np.array([cy - bh / 2, cy + bh / 2]), None
    elif len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        polygon = [[float(v) for v in np.stack([xs * w, ys * h], 1).ravel()]]
    else:
        return None, f"expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got {len(values)} numbers"
    if xs.min() < -SLACK or ys.min() < -SLACK or xs.max() > 1 + SLACK or ys.max() > 1 + SLACK:
        return None, "coordinates outside the image (normalised values must lie in [0, 1])"
    # Nearest pixel edge: Ultralytics writes 6 decimals, so cx - w/2 lands a hair off the true edge.
    box = Box(
        round_edge(np.clip(xs.min(), 0, 1) * w),
        round_edge(np.clip(ys.min(), 0, 1) * h),
        round_edge(np.clip(xs.max(), 0, 1) * w),
        round_edge(np.clip(ys.max(), 0, 1) * h),
    )
    if box.width <= 0 or box.height <= 0:
        return None, "zero-area box"
    return Annotation(
        annotation_id, image_id, cls, box, polygon, False, source_file=source_file, source_id=str(line_number)
    ), ""
