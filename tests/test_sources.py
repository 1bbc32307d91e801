"""The coco, yolo and voc sources through the download and convert contract, boxes-only data,
the deterministic val split, and the same real photos read as COCO and as YOLO."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import download
from tests.conftest import DATA, ROOT, TINY_LABELS, data_cfg, labels_cfg, write_params
from tests.test_voc import devkit
from wss.data import convert, dataset
from wss.data.instances import gt_mask, read_categories, read_table
from wss.data.readers import coco, sbd
from wss.errors import ConfigError, DataError
from wss.labels import build as labels

SHARED = ROOT.parent / "shared" / "data"


def tiny_coco(tiny_sbd: Path, root: Path) -> Path:
    """The tiny sample as a COCO dataset (masks as polygons and as RLE; odd category ids), plus
    one bad thing per reject reason, a crowd annotation, a grayscale image and a boxes-only one."""
    (root / "images").mkdir(parents=True)
    ds = sbd.read(tiny_sbd)
    images, anns = [], []
    for n, (iid, im) in enumerate(ds.images.items(), start=1):
        shutil.copy(tiny_sbd / im["file_name"], root / "images" / f"{iid}.jpg")
        images.append({"id": 100 + n, "file_name": f"{iid}.jpg", "height": im["height"], "width": im["width"]})
    ids = {iid: 100 + n for n, iid in enumerate(ds.images, start=1)}
    for a in ds.annotations:
        m = from_seg(a)
        seg = a.segmentation if a.annotation_id % 2 else polygons(m)
        anns.append(
            {
                "id": a.annotation_id,
                "image_id": ids[a.image_id],
                "category_id": 1000 + a.category_id,
                "bbox": coco.bbox_from_box(a.box),
                "segmentation": seg,
                "iscrowd": 0,
                "area": int(m.sum()),
            }
        )
    first = images[0]
    h, w = first["height"], first["width"]
    anns.append(
        {
            "id": 9001,
            "image_id": first["id"],
            "category_id": 1001,
            "bbox": [0, 0, 10, 10],
            "iscrowd": 1,
            "segmentation": coco.encode(np.ones((h, w), np.uint8)),
            "area": 100,
        }
    )
    anns.append({"id": 9002, "image_id": first["id"], "category_id": 77, "bbox": [0, 0, 10, 10], "iscrowd": 0})
    anns.append({"id": 9003, "image_id": first["id"], "category_id": 1001, "bbox": [3, 4, 20, 10], "iscrowd": 0})
    extra = {"gray": cv2.cvtColor(np.full((30, 40, 3), 120, np.uint8), cv2.COLOR_BGR2GRAY)}
    cv2.imwrite(str(root / "images/gray.jpg"), extra["gray"])
    Image.new("CMYK", (40, 30), (10, 20, 30, 0)).save(root / "images/cmyk.jpg")
    cv2.imwrite(str(root / "images/deep.png"), np.full((30, 40, 3), 4000, np.uint16))
    cv2.imwrite(str(root / "images/small.jpg"), np.full((20, 40, 3), 90, np.uint8))  # JSON says 30 high
    for k, name in enumerate(("gray.jpg", "cmyk.jpg", "deep.png", "small.jpg", "missing.jpg"), start=1):
        images.append({"id": k, "file_name": name, "height": 30, "width": 40})
        anns.append(
            {
                "id": 9100 + k,
                "image_id": k,
                "category_id": 1001,
                "bbox": [5, 5, 20, 15],
                "iscrowd": 0,
                "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]],
            }
        )
    cats = [{"id": 1000 + c, "name": f"class {name}"} for c, name in ds.categories.items()]
    (root / "annotations").mkdir()
    (root / "annotations/instances_default.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root


def from_seg(a) -> np.ndarray:
    from wss.core.masks import from_segmentation

    h, w = a.segmentation["size"]
    return from_segmentation(a.segmentation, h, w)


def polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [[float(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def run_download(tmp_path: Path, **data) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_params(tmp_path / "params.yaml", base={"seed": 1}, data=data)
    out = tmp_path / "raw"
    download.main(["--params", str(tmp_path / "params.yaml"), "--out", str(out), "--cache", str(tmp_path / "dl")])
    return out


def test_coco_source_from_a_zip(tiny_sbd, tmp_path):
    src = tiny_coco(tiny_sbd, tmp_path / "src")
    archive = tmp_path / "mycoco.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(src.rglob("*")):
            z.write(f, "mycoco/" + str(f.relative_to(src)))
    raw = run_download(tmp_path, source="coco", archive=str(archive))
    table = convert.convert(raw, tmp_path / "inst", data_cfg(source="coco", archive=str(archive)), 0.9)
    rejects = pd.read_csv(tmp_path / "inst" / "rejects.csv")
    why = dict(zip(rejects.file.map(lambda f: Path(f).name), rejects.reason))
    assert "CMYK" in why["cmyk.jpg"] and "more than 8 bits" in why["deep.png"]
    assert (
        "image is 40x20 (upright, EXIF orientation applied), the annotations say 40x30" in why["small.jpg"]
        and why["missing.jpg"] == "file is missing"
    )
    assert "unknown category id 77" in why["instances_default.json"]
    assert "gray" in set(table.image_id)  # grayscale is read as RGB, not rejected
    # Crowd left out; categories and image ids the file's own; the boxes-only annotation kept without a mask.
    assert len(table) == len(sbd.read(tiny_sbd).annotations) + 2
    assert read_categories(tmp_path / "inst")[1004] == "class boat"
    first = table[table.image_id == "sample_000000"]
    assert set(first.coco_image_id) == {101} and (first["mask"] == "").sum() == 1
    boxed = first[first["mask"] == ""].iloc[0]
    assert (boxed.x1, boxed.y1, boxed.x2, boxed.y2, boxed.area) == (3, 4, 23, 14, 200)
    # Masks match the sample's ground truth, whether they came as polygons or as RLE.
    ref = {
        f"{r.image_id}/{r.instance_id}": r for r in convert.convert(tiny_sbd, tmp_path / "ref", DATA, 0.0).itertuples()
    }
    ious = []
    for r in table[table["mask"] != ""].itertuples():
        want = ref.get(f"{r.image_id}/{r.instance_id}")
        if want is not None:
            ious.append((gt_mask(r) & gt_mask(want)).sum() / (gt_mask(r) | gt_mask(want)).sum())
    # RLE comes back exactly; the polygons here (outer contours through pixel centres) lose half a
    # pixel all round and any occluded piece, so only overlap is asked of them.
    assert len(ious) == 18 and sum(i == 1 for i in ious) == 9 and min(ious) > 0.6


def test_boxes_only_instances_get_labels_but_no_scores(tiny_sbd, tmp_path):
    src = tiny_coco(tiny_sbd, tmp_path / "src")
    raw = run_download(tmp_path, source="coco", archive=str(src))  # a directory works too
    inst = tmp_path / "inst"
    convert.convert(raw, inst, data_cfg(source="coco", archive=str(src)), 0.9)
    result = labels.run(raw, inst, tmp_path / "shards", labels_cfg(**TINY_LABELS), seed=1)
    n = len(read_table(inst))
    assert result["instances"] == n
    assert result["train"]["with_masks"] + result["val"]["with_masks"] == n - 1
    assert 0 < result["train"]["miou_teacher"] < 1


def test_val_split_is_a_hash_of_the_id_not_of_file_order_and_exact_on_small_datasets():
    ids = [f"{i:012d}" for i in range(2000)]
    val = dataset.val_images(ids, 0.2)
    assert val == dataset.val_images(list(reversed(ids)), 0.2) and len(val) == 400
    assert dataset.val_images(ids, 0.0) == set()
    for n in (5, 17, 170):  # 170 images at 0.2 once gave 25 val images (14.7%) with a per-image hash
        assert len(dataset.val_images(ids[:n], 0.2)) == round(0.2 * n)
    # The ranking is by hash, not by id: val is not the first or last ids.
    assert val != set(ids[:400]) and val != set(ids[-400:])


def test_voc_source(tmp_path):
    kit = devkit(tmp_path)
    archive = tmp_path / "voc.tar"
    shutil.make_archive(str(archive.with_suffix("")), "tar", tmp_path, "VOCdevkit")
    raw = run_download(tmp_path / "dl", source="voc", archive=str(archive))
    table = convert.convert(raw, tmp_path / "inst", data_cfg(source="voc", archive=str(archive)), 0.9)
    assert kit.is_dir()
    a = table[table.image_id == "a"]
    assert list(a.category_name) == ["cat", "dog"] and list(a.difficult) == [False, True]
    assert a.file.iloc[0] == "VOCdevkit/VOC2012/JPEGImages/a.jpg" and (a["mask"] != "").all()
    assert (table[table.image_id == "b"]["mask"] == "").all()  # no SegmentationObject: boxes only
    assert set(table.split) == {"train", "val"}


def test_unknown_source_and_missing_archive_are_params_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.source must be one of"):
        data_cfg(source="kitti")
    with pytest.raises(ConfigError, match="data.archive"):
        data_cfg(source="coco", archive="", url="")


def test_malformed_coco_json_names_the_file(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/instances.json").write_text('{"images": [')
    with pytest.raises(DataError, match="instances.json: not readable JSON"):
        convert.convert(tmp_path / "raw", tmp_path / "inst", data_cfg(source="coco", archive="x"), 0.5)
    assert not (tmp_path / "inst").exists()


@pytest.fixture(scope="module")
def coco128_tables(tmp_path_factory):
    archives = {s: SHARED / f"coco128-{n}.tar.gz" for s, n in (("coco", "coco"), ("yolo", "seg"))}
    if not all(p.is_file() for p in archives.values()):
        pytest.skip(f"{SHARED} is absent (third-party data, kept beside the project, never in it)")
    out = {}
    for source, archive in archives.items():
        d = tmp_path_factory.mktemp(source)
        raw = run_download(d, source=source, archive=str(archive))
        out[source] = convert.convert(raw, d / "inst", data_cfg(source=source, archive=str(archive)), 0.05)
    return out


def test_coco128_as_coco_and_as_yolo_give_the_same_instances(coco128_tables):
    c, y = coco128_tables["coco"], coco128_tables["yolo"]
    # 939 annotations, 10 crowd: 929 instances; YOLO has the same polygons, minus none.
    assert len(c) == 929 and len(y) == 929
    assert set(c.image_id) == set(y.image_id) and len(set(c.image_id)) == 126
    # The same images land in val whichever format they came in (hash of the file stem).
    assert dict(zip(c.image_id, c.split)) == dict(zip(y.image_id, y.split))
    assert (c.split == "val").sum() > 100 and (c["mask"] != "").all()
    key = ["image_id", "instance_id"]
    both = c.merge(y, on=key, suffixes=("_c", "_y"))
    assert len(both) == 929 and (both.category_name_c == both.category_name_y).all()
    assert set(c.category_name) >= {"person", "giraffe", "toothbrush"}


def test_coco_source_from_a_url_with_md5(tiny_sbd, tmp_path):
    import hashlib

    from tests.test_fetch import Server

    src = tiny_coco(tiny_sbd, tmp_path / "src")
    archive = tmp_path / "mycoco.tar.gz"
    shutil.make_archive(str(tmp_path / "mycoco"), "gztar", src)
    payload = archive.read_bytes()
    with Server(payload) as srv:
        raw = run_download(tmp_path / "run", source="coco", url=srv.url, md5=hashlib.md5(payload).hexdigest())
    assert (raw / "annotations" / "instances_default.json").is_file()


def test_zip_member_escaping_the_target_is_rejected(tmp_path):
    from wss.data import fetch

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok/a.txt", "fine")
        z.writestr("../../escaped.txt", "gotcha")
    with pytest.raises(fetch.FetchError, match="unsafe archive member"):
        fetch.extract(evil, tmp_path / "x" / "raw")
    assert not (tmp_path / "x" / "raw").exists() and not list(tmp_path.rglob("escaped.txt"))


def test_coco_as_released_train_and_val_files_with_overlapping_ids_stay_apart(tmp_path):
    """COCO's own layout: instances_train2017 and instances_val2017 (whose image ids may overlap),
    next to captions and keypoints files, which are skipped with a note."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split, colour in (("train2017", 60), ("val2017", 200)):
        (root / split).mkdir()
        images, anns = [], []
        for n in (1, 2, 3):  # the same ids in both files, other pictures
            cv2.imwrite(str(root / split / f"{split}_{n}.jpg"), np.full((20, 30, 3), colour, np.uint8))
            images.append({"id": n, "file_name": f"{split}_{n}.jpg", "height": 20, "width": 30})
            anns.append({"id": 10 * n, "image_id": n, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0})
        data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
        (root / f"annotations/instances_{split}.json").write_text(json.dumps(data))
        (root / f"annotations/captions_{split}.json").write_text(json.dumps({**data, "annotations": []}))
        (root / f"annotations/person_keypoints_{split}.json").write_text(json.dumps(data))
    table = convert.convert(root, tmp_path / "inst", data_cfg(source="coco", archive=str(root)), 0.0)
    assert len(table) == 6
    for split in ("train", "val"):
        part = table[table.split == split]
        assert sorted(part.coco_image_id) == [1, 2, 3]
        assert set(part.file) == {f"{split}2017/{split}2017_{n}.jpg" for n in (1, 2, 3)}
        assert set(part.source_file) == {f"annotations/instances_{split}2017.json"}
        assert sorted(part.source_id) == ["10", "20", "30"]


def test_coco_train_and_val_folders_with_the_same_file_names_are_told_apart_by_their_paths(tmp_path):
    """train2017/x.jpg and val2017/x.jpg, each file_name bare "x.jpg": each JSON gets its own folder's
    picture, and the two images keep apart ids (their paths), with nothing rejected."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split, colour in (("train2017", 60), ("val2017", 200)):
        (root / split).mkdir()
        cv2.imwrite(str(root / split / "x.jpg"), np.full((20, 30, 3), colour, np.uint8))
        data = {
            "images": [{"id": 1, "file_name": "x.jpg", "height": 20, "width": 30}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}],
        }
        (root / f"annotations/instances_{split}.json").write_text(json.dumps(data))
    table = convert.convert(root, tmp_path / "inst", data_cfg(source="coco", archive=str(root)), 0.0)
    assert dict(zip(table.split, table.file)) == {"train": "train2017/x.jpg", "val": "val2017/x.jpg"}
    assert set(table.image_id) == {"train2017/x", "val2017/x"}
    for split, colour in (("train", 60), ("val", 200)):
        picture = cv2.imread(str(root / table[table.split == split].file.iloc[0]))
        assert abs(int(picture.mean()) - colour) <= 2
