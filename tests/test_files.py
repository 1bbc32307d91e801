"""Bad input ends as reject rows or one error naming the file: the guarded way in
(:mod:`wss.data.files`) and the readers' checks, each on the smallest input that showed a problem."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from wss.data import convert, dataset, files
from wss.data.readers import coco, voc, yolo
from wss.errors import DataError


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_text_in_utf8_with_or_without_bom_and_utf16_with_one(tmp_path, encoding):
    path = write(tmp_path / "a.txt", "ünïcode\n2008_000001\n".encode(encoding))
    assert files.read_text(path) == "ünïcode\n2008_000001\n"


@pytest.mark.parametrize(
    "data,why",
    [(b"2008_00\xe9\n", "not UTF-8 or UTF-16 text"), (b"2008\x00_000001\n", r"not text \(control character")],
)
def test_bytes_that_are_not_text_name_the_file(tmp_path, data, why):
    path = write(tmp_path / "train.txt", data)
    with pytest.raises(DataError, match=f"train.txt: {why}"):
        files.read_text(path)


def test_json_numbers_too_long_read_as_infinite_and_deep_nesting_is_one_error(tmp_path):
    value = files.read_json(write(tmp_path / "a.json", '{"x": ' + "1" * 5000 + ', "y": -' + "9" * 310 + "}"))
    assert value == {"x": float("inf"), "y": float("-inf")}
    assert files.read_json(write(tmp_path / "b.json", '{"id": 1234567890123456789}')) == {"id": 1234567890123456789}
    for depth in (100, 3000):
        with pytest.raises(DataError, match="c.json: .*nested"):
            files.read_json(write(tmp_path / "c.json", "[" * depth + "]" * depth))


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    start = time.perf_counter()
    with pytest.raises(DataError, match="data.yaml: .*aliases are not allowed"):
        files.read_yaml(write(tmp_path / "data.yaml", laughs))
    assert time.perf_counter() - start < 5  # refused, not expanded to 9**9 items
    with pytest.raises(DataError, match="deep.yaml: .*nested"):
        files.read_yaml(write(tmp_path / "deep.yaml", "[" * 1000 + "]" * 1000))
    assert files.read_yaml(write(tmp_path / "ok.yaml", "names: [a, b]\ntrain: images\n")) == {
        "names": ["a", "b"],
        "train": "images",
    }


def coco_file(tmp_path: Path, annotation: dict, file_name: str = "a.png") -> Path:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 64, 3), np.uint8))
    data = {
        "images": [{"id": 1, "file_name": file_name, "height": 48, "width": 64}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, **annotation}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    return write(tmp_path / "instances.json", json.dumps(data))


@pytest.mark.parametrize(
    "annotation,why",
    [
        ({"bbox": [10**310, 2, 20, 20]}, "bbox must be"),
        ({"bbox": [1, 2, 20, 20], "segmentation": {"size": [48, 64], "counts": [10, 5]}}, "do not add up"),
        ({"bbox": [1, 2, 20, 20], "segmentation": {"size": [48, 64], "counts": "0k"}}, "do not add up"),
    ],
)
def test_coco_numbers_and_rles_that_cannot_be_right_are_rejects(tmp_path, annotation, why):
    text = json.dumps(annotation).replace("1" + "0" * 310, "1" + "0" * 310)  # a JSON integer, not a float
    path = coco_file(tmp_path, json.loads(text))
    ds = coco.read(path)
    assert not ds.annotations and len(ds.rejects) == 1 and why in ds.rejects[0]["reason"]


def test_a_full_rle_is_kept(tmp_path):
    ds = coco.read(
        coco_file(tmp_path, {"bbox": [1, 2, 20, 20], "segmentation": {"size": [48, 64], "counts": [0, 3072]}})
    )
    assert len(ds.annotations) == 1 and not ds.rejects


def converted(root: Path) -> tuple[list, list[dict]]:
    """The instance table's keys and the rejects of the COCO dataset at ``root``, as convert makes them."""
    ds, _, _ = convert.read("coco", root, "")
    table, rejects = dataset.table(ds, root, 0.5, True)
    return list(table.source_id), rejects


def test_a_mask_with_no_pixel_in_its_box_is_a_reject(tmp_path):
    mask = np.zeros((48, 64), np.uint8)
    mask[40:, 50:] = 1
    coco_file(tmp_path, {"bbox": [1, 2, 20, 20], "segmentation": coco.encode(mask)})
    kept, rejects = converted(tmp_path)
    assert kept == [] and [r["reason"] for r in rejects] == [
        "annotation 7: mask has no pixel inside its box (1, 2, 21, 22)"
    ]


@pytest.mark.parametrize("outside", ["absolute", "dotdot", "link"])
def test_an_image_outside_the_dataset_is_a_reject_and_is_not_read(tmp_path, outside):
    secret = tmp_path / "secret"
    secret.mkdir()
    cv2.imwrite(str(secret / "s.png"), np.zeros((48, 64, 3), np.uint8))
    root = tmp_path / "ds"
    root.mkdir()
    name = {"absolute": str(secret / "s.png"), "dotdot": "../secret/s.png", "link": "s.png"}[outside]
    if outside == "link":
        (root / "s.png").symlink_to(secret / "s.png")
    coco_file(root, {"bbox": [1, 2, 20, 20]}, file_name=name)
    kept, rejects = converted(root)
    assert kept == [] and len(rejects) == 1 and "lies outside the dataset" in rejects[0]["reason"]


def test_yolo_negative_sizes_other_label_cases_and_links_out(tmp_path):
    root = tmp_path / "ds"
    (root / "images/train").mkdir(parents=True)
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(root / f"images/train/{stem}.png"), np.zeros((32, 32, 3), np.uint8))
    write(root / "labels/train/a.txt", "0 0.5 0.5 -0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    write(root / "labels/train/b.TXT", "0 0.5 0.5 0.4 0.4\n")
    write(tmp_path / "outside.txt", "0 0.1 0.1 0.1 0.1 SECRET CONTENT\n")
    (root / "labels/train/c.txt").symlink_to(tmp_path / "outside.txt")
    write(root / "data.yaml", "path: .\ntrain: images/train\nnames: [thing]\n")
    ds = yolo.read(root / "data.yaml")
    kept = {(a.image_id, a.source_id) for a in ds.annotations}
    assert kept == {("a", "2"), ("b", "1")}
    reasons = {Path(r["file"]).name: r["reason"] for r in ds.rejects}
    assert reasons["a.txt"].startswith("line 1: negative width or height")
    assert reasons["c.txt"] == "a link to a file outside the dataset"
    assert "SECRET" not in json.dumps(ds.rejects)


def test_several_yamls_or_devkits_stop_and_name_them(tmp_path):
    root = tmp_path / "ds"
    (root / "images/train").mkdir(parents=True)
    write(root / "data.yaml", "train: images/train\nnames: [a]\n")
    write(root / "aaa.yaml", "train: images/train\nnames: [b]\n")
    with pytest.raises(DataError, match="several YOLO dataset yamls .*aaa.yaml.*data.yaml.*data.annotations"):
        convert.read("yolo", root, "")
    devkit = tmp_path / "voc" / "VOCdevkit"
    for year in ("VOC2007", "VOC2012"):
        (devkit / year / "Annotations").mkdir(parents=True)
    with pytest.raises(DataError, match="several VOC devkits .*VOC2007.*VOC2012.*data.annotations"):
        voc.find_root(tmp_path / "voc")
    assert voc.find_root(tmp_path / "voc" / "VOCdevkit" / "VOC2012").name == "VOC2012"


def test_a_voc_mask_of_another_size_is_a_reject_before_it_is_decoded(tmp_path):
    root = tmp_path / "VOC2012"
    write(root / "ImageSets/Segmentation/train.txt", "a\n")
    write(
        root / "Annotations/a.xml",
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>20</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox>"
        "</object></annotation>",
    )
    (root / "SegmentationObject").mkdir()
    Image.new("1", (3000, 2000)).save(root / "SegmentationObject/a.png")
    ds = voc.read(root)
    assert [r["reason"] for r in ds.rejects] == ["mask size 3000x2000 is not the image's 40x20"]
    assert ds.annotations[0].segmentation is None
    Image.new("1", (14000, 13000)).save(root / "SegmentationObject/a.png")  # 22 KB, 182 million pixels
    ds = voc.read(root)
    assert len(ds.rejects) == 1 and "decompression bomb" in ds.rejects[0]["reason"]
