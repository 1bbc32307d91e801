"""The one image reader: upright (EXIF orientation applied) everywhere, and strict about damage."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.conftest import DATA, labels_cfg
from tests.test_export import run_export
from wss.core import image
from wss.core.boxes import Box
from wss.core.metrics import iou
from wss.data import convert
from wss.data.instances import read_table
from wss.errors import DataError
from wss.labels import build, shards


def ellipse(h: int, w: int, box: Box) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (((box.x1 + box.x2) / 2 - 0.5, (box.y1 + box.y2) / 2 - 0.5), (box.width, box.height), 0), 1, -1)
    return mask


def upright_scene(h: int, w: int, box: Box) -> np.ndarray:
    """A noisy grey RGB image with a bright red object filling ``box``'s inscribed ellipse."""
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal(110, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    rgb[ellipse(h, w, box) == 1] = (220, 40, 40)
    return rgb


def save_with_orientation(upright: np.ndarray, orientation: int, path: Path) -> None:
    """Store ``upright`` rotated the way a camera does, tagged so that a viewer shows ``upright``."""
    stored = {1: upright, 3: np.rot90(upright, 2), 6: np.rot90(upright, 1), 8: np.rot90(upright, -1)}[orientation]
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[274] = orientation
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_read_and_size_are_upright(tmp_path, orientation):
    box = Box(4, 3, 30, 20)  # off centre: any wrong turn moves it
    path = tmp_path / "p.jpg"
    save_with_orientation(upright_scene(30, 50, box), orientation, path)
    got = image.read(path)
    assert got.shape == (30, 50, 3) and image.size(path) == (30, 50)
    red = ((got[..., 2] > 170) & (got[..., 1] < 100)).astype(np.uint8)  # BGR
    assert iou(red, ellipse(30, 50, box)) > 0.9
    assert image.problem(path, 30, 50) == ""
    if orientation != 3:
        assert "upright, EXIF orientation applied" in image.problem(path, 50, 30)


def test_a_truncated_jpeg_is_a_problem_even_where_opencv_decodes_it(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb)
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpg.tobytes()[: len(jpg) // 2])
    assert image.problem(path, 300, 400).startswith("corrupt, truncated or unreadable image")
    with pytest.raises(DataError, match="cut.jpg"):
        image.decode(b"nope", "cut.jpg")


def test_rotated_phone_photos_go_through_convert_labels_and_export_upright(tmp_path, random_init):
    """COCO annotations are drawn on the upright frame; orientations 3 and 6 reach the teacher labels
    and the exported masks in that frame."""
    root = tmp_path / "raw"
    (root / "images").mkdir(parents=True)
    box = Box(12, 8, 44, 30)  # upright frame of a 40 (h) x 56 (w) picture
    images, anns = [], []
    for n, orientation in enumerate((1, 3, 6), start=1):
        save_with_orientation(upright_scene(40, 56, box), orientation, root / "images" / f"p{orientation}.jpg")
        images.append({"id": n, "file_name": f"images/p{orientation}.jpg", "height": 40, "width": 56})
        anns.append(
            {
                "id": 100 + n,
                "image_id": n,
                "category_id": 1,
                "iscrowd": 0,
                "area": box.area,
                "bbox": [box.x1, box.y1, box.width, box.height],
            }
        )  # boxes only
    (root / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]})
    )
    data = DATA.__class__(**{**DATA.__dict__, "source": "coco", "archive": str(root), "val_fraction": 0.34})
    table = convert.convert(root, tmp_path / "instances", data, 0.0)
    assert len(table) == 3 and set(table.source_id) == {"101", "102", "103"} and (table.split == "val").sum() == 1
    assert set(table.source_file) == {"instances.json"}
    out = tmp_path / "shards"
    build.run(root, tmp_path / "instances", out, labels_cfg(crop_size=32, shard_size=4, n_jobs=1), seed=1)
    truth = ellipse(40, 56, box)
    for f in shards.files(out, "train") + shards.files(out, "val"):
        d = shards.read(f, ("key", "teacher_full", "box_xyxy", "image_size"))
        for i in range(len(d["key"])):
            teacher = shards.full_label(d["teacher_full"][i], d["box_xyxy"][i], d["image_size"][i])
            assert teacher.shape == (40, 56) and iou(teacher, truth) > 0.85, d["key"][i]
    from tests.test_evaluate import box_stub

    stub = box_stub(tmp_path / "stub.keras", 32, labels_cfg().context_margin)
    run_export(tmp_path, stub, out, tmp_path / "instances", root, tmp_path / "export")
    with contextlib.redirect_stdout(io.StringIO()):
        files = [COCO(str(tmp_path / f"export/teacher_{split}.json")) for split in ("train", "val")]
    assert sum(len(f.getAnnIds()) for f in files) == 3
    for f in files:
        for ann in f.loadAnns(f.getAnnIds()):
            assert iou(f.annToMask(ann), truth) > 0.85
    assert read_table(tmp_path / "instances").height.tolist() == [40, 40, 40]
