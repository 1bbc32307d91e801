"""A dataset in its own format -> the instance table (:mod:`wss.data.instances`): the ``convert`` stage's work.

``data.source`` picks the reader: ``sample`` and ``sbd`` (:mod:`wss.data.readers.sbd`), ``coco``
(:mod:`wss.data.readers.coco`), ``yolo`` (:mod:`wss.data.readers.yolo`) or ``voc``
(:mod:`wss.data.readers.voc`); every reader returns a :class:`wss.data.dataset.Dataset`, and
:func:`wss.data.dataset.table` checks images and numbers instances the same way for all.  One
bad file never stops the run: it becomes a row of ``rejects.csv`` (file, image id, reason), and
the stage fails only when the share of images with a reject exceeds
``convert.max_reject_fraction``.  A file that is not of the format at all (malformed JSON, XML or
yaml at the top) stops the stage with a message naming it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
import json
from pathlib import Path

import pandas as pd

from wss.config import DataConfig
from wss.core import atomic, image
from wss.data import dataset, files
from wss.data.instances import CATEGORIES, REJECTS, SOURCE, SPLITS, TABLE
from wss.data.readers import coco, sbd, voc, yolo
from wss.errors import DataError


def find(root: Path, given: str, suffixes: tuple[str, ...], looks_right, what: str) -> list[Path]:
    """The annotation file(s): ``given`` (relative to ``root``), else every file under ``root`` with
    one of ``suffixes`` that ``looks_right``; an error saying what to set when there is none."""
    if given:
        path = root / given
        if not path.is_file():
            raise DataError(f"data.annotations is {given!r}, but {path} does not exist")
        return [path]
    found = [p for p in dataset.files_under(root, suffixes) if looks_right(p)]
    if not found:
        raise DataError(f"{root}: no {what} found; set data.annotations to its path inside the dataset")
    return found


def _is_coco(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head or b'"info"' in head


# COCO's own release puts these beside the instances files: same images, other annotations.
NOT_INSTANCES = ("captions_", "person_keypoints_", "stuff_", "panoptic_", "image_info_")


def _is_yolo(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"names:" in f.read(1 << 20)


def read_coco(root: Path, given: str) -> tuple[dataset.Dataset, list[Path]]:
    """Every COCO instances JSON under ``root`` (or ``given``), read into one dataset, and the files
    read: a file whose name says ``train`` or ``val`` gives that split, a single file leaves the
    split to ``data.val_fraction``.  Images are found by ``file_name``: as a path under the JSON's
    dataset, else by name anywhere under ``root``."""
    paths = find(root, given, (".json",), _is_coco, "COCO instances JSON")
    if not given:
        skipped = [p for p in paths if p.name.startswith(NOT_INSTANCES)]
        for p in skipped:
            print(f"convert: {p.relative_to(root)} skipped: not an instances file (set data.annotations to use it)")
        paths = [p for p in paths if p not in skipped]
        if not paths:
            raise DataError(
                f"{root}: no COCO instances JSON found (only {', '.join(p.name for p in skipped)}); "
                f"set data.annotations"
            )
    parts = []
    for path in paths:
        stem = path.stem.lower()
        split = None if len(paths) == 1 else "val" if "val" in stem else "train" if "train" in stem else None
        if split is None and len(paths) > 1:
            raise DataError(
                f"{path}: several COCO files and this one's name says neither train nor val; "
                f"set data.annotations to the one to use"
            )
        parts.append(coco.read(path, split))
    by_name: dict[str, list[Path]] = {}
    for p in dataset.files_under(root, dataset.IMAGE_SUFFIXES):
        by_name.setdefault(p.name, []).append(p)
    images, annotations, rejects, categories = {}, [], [], {}
    for k, part in enumerate(parts):
        # Each file's image ids are its own (train2017 and val2017 may share numbers): key them by file.
        categories.update(part.categories)
        stems = {iid: Path(im["file_name"]).stem for iid, im in part.images.items()}
        rejects += [{**r, "image_id": stems.get(r["image_id"], r["image_id"])} for r in part.rejects]
        annotations += [dataclasses.replace(a, image_id=(k, a.image_id)) for a in part.annotations]
        for iid, im in part.images.items():
            name = Path(im["file_name"])
            here = root / name
            hits = [here] if here.is_file() and files.inside(here, root) else by_name.get(name.name, [])
            if len(hits) > 1 and im["split"]:  # train2017/x.jpg and val2017/x.jpg: the folder tells
                hits = [h for h in hits if _says_split(h.relative_to(root).parent, im["split"])] or hits
            rel = (
                hits[0].relative_to(root) if len(hits) == 1 else name
            )  # missing or ambiguous: wss.core.image.problem says so
            images[(k, iid)] = {**im, "file_name": str(rel), "name": name.stem}
    # Images of two files that share a name are told apart by their paths (the image id is the stem).
    counts = Counter(im["name"] for im in images.values())
    for im in images.values():
        if counts[im["name"]] > 1:
            im["name"] = Path(im["file_name"]).with_suffix("").as_posix()
    return dataset.Dataset(images, categories, annotations, rejects), paths


def _says_split(folder: Path, split: str) -> bool:
    """Whether a folder's path names ``split`` (``train``/``val``) and not the other one."""
    other = "val" if split == "train" else "train"
    words = folder.as_posix().lower()
    return split in words and other not in words


def read(source: str, root: Path, annotations: str) -> tuple[dataset.Dataset, bool, list[str]]:
    """The dataset at ``root`` read by ``source``'s reader, whether its image ids are COCO's own, and
    the files that describe it, relative to ``root`` (COCO: the instances files; YOLO: the dataset
    yaml; VOC: the devkit), which ``export`` writes back in the source's own format."""
    if source in ("sample", "sbd"):
        return sbd.read(root), False, []
    if source == "coco":
        ds, paths = read_coco(root, annotations)
        return ds, True, [str(p.relative_to(root)) for p in paths]
    if source == "yolo":
        specs = find(root, annotations, (".yaml", ".yml"), _is_yolo, "YOLO dataset yaml")
        if len(specs) > 1:
            listed = ", ".join(str(p.relative_to(root)) for p in specs)
            raise DataError(f"{root}: several YOLO dataset yamls ({listed}); set data.annotations to the one to use")
        spec = specs[0]
        return _rebase(yolo.read(spec), yolo.images_root(spec), root), False, [str(spec.relative_to(root))]
    if source == "voc":
        vroot = voc.find_root(root / annotations if annotations else root)
        return _rebase(voc.read(vroot), vroot, root), False, [str(vroot.resolve().relative_to(root.resolve()))]
    raise DataError(f"unknown data.source {source!r}")


def _rebase(ds: dataset.Dataset, base: Path, root: Path) -> dataset.Dataset:
    """``ds`` with image file names relative to ``root`` instead of ``base``."""
    try:
        prefix = Path(base).resolve().relative_to(Path(root).resolve())
    except ValueError:  # Path.relative_to
        raise DataError(f"{base}: the images lie outside the dataset directory {root}") from None
    images = {i: {**im, "file_name": str(prefix / im["file_name"])} for i, im in ds.images.items()}
    return dataset.Dataset(images, ds.categories, ds.annotations, ds.rejects)


def convert(
    root: Path, out: Path, data: DataConfig, max_reject_fraction: float, max_pixels: int = image.CEILING
) -> pd.DataFrame:
    """Read the ``data.source`` dataset at ``root``; write the table, categories and rejects to ``out``."""
    ds, keep_ids, described_by = read(data.source, root, data.annotations)
    table, rejects = dataset.table(ds, root, data.val_fraction, keep_ids, max_pixels)
    with atomic.target(out, directory=True) as tmp:
        reject_table = pd.DataFrame(rejects, columns=["file", "image_id", "reason"])
        reject_table.to_csv(tmp / REJECTS, index=False)
        names = {str(im.get("name", i)) for i, im in ds.images.items()}
        listed = len(ds.images) + len({str(r["image_id"]) for r in ds.rejects} - names)
        bad = reject_table["image_id"].astype(str).nunique()
        fraction = bad / max(listed, 1)
        with_mask = int((table["mask"] != "").sum())
        print(
            f"convert: {data.source}: {listed} images, {len(table)} instances "
            f"({(table.split == 'train').sum()} train, {(table.split == 'val').sum()} val; {with_mask} with a mask), "
            f"{len(ds.categories)} categories, {len(reject_table)} rejects in {bad} images ({fraction:.1%})"
        )
        crowd = sum(a.iscrowd for a in ds.annotations)
        if crowd:
            print(f"  {crowd} crowd annotations left out, as COCO's evaluation does")
        for r in rejects[:10]:
            print(f"  reject {r['file']}: {r['reason']}")
        failed = out.with_name(out.name + "-" + REJECTS)  # kept when the stage fails: its output is not written
        if fraction > max_reject_fraction:
            reject_table.to_csv(failed, index=False)
            raise DataError(
                f"{root}: {fraction:.1%} of images have rejects, more than convert.max_reject_fraction="
                f"{max_reject_fraction:.1%}; see {failed}"
            )
        if table.empty:
            reject_table.to_csv(failed, index=False)
            raise DataError(f"{root} holds no usable instance; see {failed}")
        for split in SPLITS:
            if not (table.split == split).any():
                reject_table.to_csv(failed, index=False)
                why = (
                    f"data.val_fraction is {data.val_fraction}"
                    if split == "val" and data.val_fraction * listed < 0.5
                    else f"every {split} image was rejected or has no annotation"
                )
                raise DataError(
                    f"{root}: the {split} split is empty ({why}); the stage needs both train and val instances; "
                    f"see {failed}"
                )
        cats = [{"id": int(i), "name": n} for i, n in ds.categories.items()]
        (tmp / CATEGORIES).write_text(json.dumps(cats, indent=1))
        table.to_parquet(tmp / TABLE, index=False)
        (tmp / SOURCE).write_text(json.dumps({"source": data.source, "files": described_by}, indent=1))
    return table
