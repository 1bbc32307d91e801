"""The YOLO layout reader, on a tiny built dataset with every bad line, and on the real coco128-seg."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from wss.core import metrics
from wss.core.boxes import Box
from wss.core.masks import from_segmentation
from wss.data.readers import coco, yolo
from wss.errors import DataError

SHARED = ROOT.parent / "shared" / "data"


def tiny(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    cv2.imwrite(str(root / "images/train/a.jpg"), np.full((40, 80, 3), 90, np.uint8))
    cv2.imwrite(str(root / "images/val/b.png"), np.full((20, 20, 3), 90, np.uint8))
    (root / "images/train/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "labels/train/a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n"  # a box: x 20..60, y 10..30
        "1 0.25 0.25 0.75 0.25 0.75 0.75\n"  # a triangle
        "7 0.5 0.5 0.1 0.1\n"  # unknown class
        "0 0.5 0.5 0.1\n"  # 3 numbers
        "0 1.5 0.5 0.1 0.1\n"  # outside
        "0 x 0.5 0.1 0.1\n"  # not a number
        "0 0.5 0.5 0 0.1\n"  # zero area
    )
    (root / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [cat, kite]\n")
    return root / "data.yaml"


def test_tiny_dataset_lines_and_rejects(tmp_path):
    ds = yolo.read(tiny(tmp_path))
    assert ds.categories == {0: "cat", 1: "kite"}
    assert ds.images["a"] == {"file_name": "images/train/a.jpg", "height": 40, "width": 80, "split": "train"}
    assert ds.images["b"]["split"] == "val" and "broken" not in ds.images
    box, tri = ds.annotations
    assert box.box == Box(20, 10, 60, 30) and box.segmentation is None and box.category_id == 0
    assert tri.box == Box(20, 10, 60, 30) and tri.category_id == 1
    m = from_segmentation(tri.segmentation, 40, 80)
    assert 0.4 < m.sum() / (40 * 20) < 0.6  # half the box
    got = [(Path(r["file"]).name, r["reason"]) for r in ds.rejects]
    for line, start in (
        (3, "unknown class 7"),
        (4, "expected 'class cx cy w h'"),
        (5, "coordinates outside"),
        (6, "not numbers"),
        (7, "zero-area box"),
    ):
        assert any(f == "a.txt" and r.startswith(f"line {line}: {start}") for f, r in got), (line, got)
    assert sum(f == "a.txt" for f, _ in got) == 5
    assert ("broken.jpg", "corrupt or unreadable image") in [(Path(r["file"]).name, r["reason"]) for r in ds.rejects]
    assert ("orphan.txt", "label file without an image") in [(Path(r["file"]).name, r["reason"]) for r in ds.rejects]


@pytest.mark.parametrize("fmt", ["%.6f", "%g"])  # Ultralytics' converters write 6 decimals or %g
def test_ultralytics_written_boxes_come_back_exactly(tmp_path, fmt):
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    h, w = 427, 640
    cv2.imwrite(str(root / "images/train/a.jpg"), np.zeros((h, w, 3), np.uint8))
    boxes = []
    for _ in range(300):
        x1, y1 = int(rng.integers(0, w - 2)), int(rng.integers(0, h - 2))
        boxes.append(Box(x1, y1, int(rng.integers(x1 + 1, w + 1)), int(rng.integers(y1 + 1, h + 1))))
    lines = [
        " ".join(fmt % v for v in ((b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h, b.width / w, b.height / h))
        for b in boxes
    ]
    (root / "labels/train/a.txt").write_text("".join(f"0 {line}\n" for line in lines))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [thing]\n")
    ds = yolo.read(root / "data.yaml")
    assert [a.box for a in ds.annotations] == boxes
    assert [a.source_id for a in ds.annotations] == [str(k) for k in range(1, 301)]
    assert {a.source_file for a in ds.annotations} == {str(root / "labels/train/a.txt")}


def test_unusable_yaml_names_the_file(tmp_path):
    (tmp_path / "d.yaml").write_text("train: [unclosed\n")
    with pytest.raises(DataError, match="d.yaml"):
        yolo.read(tmp_path / "d.yaml")
    (tmp_path / "d.yaml").write_text("train: images/train\n")
    with pytest.raises(DataError, match="needs 'names'"):
        yolo.read(tmp_path / "d.yaml")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    if not (SHARED / "coco128-seg.tar.gz").is_file():
        pytest.skip(f"{SHARED} is absent (third-party data, kept beside the project, never in it)")
    out = tmp_path_factory.mktemp("c128")
    for name in ("coco128-seg.tar.gz", "coco128-coco.tar.gz"):
        with tarfile.open(SHARED / name) as tar:
            tar.extractall(out, filter="data")
    return yolo.read(out / "coco128-seg" / "coco128-seg.yaml"), coco.read(next(out.rglob("instances_train2017.json")))


def test_coco128_seg_matches_the_coco_annotations(both):
    ys, cs = both
    assert len(ys.images) == 128 and len(ys.categories) == 80  # two images have no label file: no objects
    orphans = sorted(Path(r["file"]).stem for r in ys.rejects)
    assert orphans == ["000000000656", "000000000659"]  # label files without an image, as shipped
    # The same objects: per image, each YOLO polygon overlaps a COCO mask of the same class name.
    by_file = {Path(im["file_name"]).stem: (iid, im) for iid, im in cs.images.items()}
    ious = []
    for a in ys.annotations:
        iid, im = by_file[a.image_id]
        assert (im["height"], im["width"]) == (ys.images[a.image_id]["height"], ys.images[a.image_id]["width"])
        mask = from_segmentation(a.segmentation, im["height"], im["width"])
        same = [
            c
            for c in cs.annotations
            if c.image_id == iid and not c.iscrowd and cs.categories[c.category_id] == ys.categories[a.category_id]
        ]
        ious.append(max(metrics.iou(mask, from_segmentation(c.segmentation, im["height"], im["width"])) for c in same))
    assert np.mean(ious) > 0.9 and np.median(ious) > 0.95
