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


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_turns_as_pil_exif_transpose_does(tmp_path, orientation):
    """The eight EXIF orientations, against PIL's own reference turn, on a lossless PNG."""
    from PIL import ImageOps

    stored = np.random.default_rng(orientation).integers(0, 255, (7, 12, 3), dtype=np.uint8)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[274] = orientation
    path = tmp_path / "p.png"
    im.save(path, exif=exif.tobytes())
    with Image.open(path) as opened:
        want = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))[..., ::-1]
    got = image.read(path)
    np.testing.assert_array_equal(got, want)
    assert image.size(path) == got.shape[:2]


def raw_exif(kind: int, count: int, value: int) -> bytes:
    """An EXIF block with one orientation entry of TIFF type ``kind`` and ``count``, as a camera or a
    broken tool may write it (PIL itself writes only well-formed ones)."""
    import struct

    entry = struct.pack("<HHI", 274, kind, count) + struct.pack("<I", value)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


@pytest.mark.parametrize(
    "kind,count,value,turned",
    [
        (3, 1, 0, False),  # SHORT 0: outside 1..8
        (3, 1, 9, False),
        (0, 0, 6, False),  # type 0, count 0
        (3, 0, 6, False),  # SHORT, count 0
        (4, 1, 6, None),  # LONG 6: some readers turn it, some do not; size and pixels agree either way
    ],
)
def test_a_malformed_orientation_tag_never_splits_size_from_pixels(tmp_path, kind, count, value, turned):
    stored = np.random.default_rng(0).integers(0, 255, (7, 12, 3), dtype=np.uint8)
    path = tmp_path / "p.jpg"
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=raw_exif(kind, count, value))
    got = image.read(path)
    assert got.shape[:2] == image.size(path)
    assert image.problem(path, *got.shape[:2]) == ""
    if turned is False:
        assert got.shape[:2] == (7, 12)


def test_an_empty_file_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg: empty file"):
        image.read(path)


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


def test_an_image_over_the_pixel_limit_is_a_reject_read_from_its_header(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(path)
    assert image.problem(path, 300, 400, max_pixels=120_000) == ""
    reason = image.problem(path, 300, 400, max_pixels=119_999)
    assert "400x300 is 120,000 pixels, more than convert.max_image_pixels (119,999)" in reason


def test_a_decompression_bomb_is_a_reject_not_an_error(tmp_path):
    """A 22 KB mode "1" PNG of 14000 x 13000: PIL refuses to open it, and the reason says why."""
    path = tmp_path / "bomb.png"
    Image.new("1", (14000, 13000)).save(path)
    assert path.stat().st_size < 100_000
    assert "decompression bomb" in image.problem(path, 13000, 14000)
