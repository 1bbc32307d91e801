"""Masks back into the user's own files: COCO and YOLO-seg, joined by the source's own ids."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO

from tests.conftest import DATA, ROOT, TINY, labels_cfg
from tests.test_export import run_export
from tests.test_evaluate import box_stub
from wss.core.masks import from_segmentation, to_polygon
from wss.core.metrics import iou
from wss.data import convert, sample
from wss.data.instances import read_table
from wss.data.readers import coco, sbd, voc, yolo
from wss.labels import build, shards
from tests.test_review import gallery_data

SHARED = ROOT.parent / "shared" / "data"


def export(
    tmp_path: Path,
    raw: Path,
    source: str,
    masks: str,
    review: dict | None = None,
    nothing: bool = False,
    trust: tuple = (0.0, 0.0),
    decisions: Path | None = None,
    shrink: int = 0,
) -> tuple[Path, Path]:
    """convert -> labels -> export (a stub network that answers with its box, eroded by ``shrink``
    pixels, or with ``nothing`` an empty mask) on the dataset at ``raw``."""
    data = DATA.__class__(**{**DATA.__dict__, "source": source, "archive": str(raw)})
    convert.convert(raw, tmp_path / "instances", data, 0.5)
    build.run(
        raw, tmp_path / "instances", tmp_path / "shards", labels_cfg(crop_size=32, shard_size=4, n_jobs=1), seed=1
    )
    stub = box_stub(tmp_path / "stub.keras", 32, labels_cfg().context_margin, nothing=nothing, shrink=shrink)
    run_export(
        tmp_path,
        stub,
        tmp_path / "shards",
        tmp_path / "instances",
        raw,
        tmp_path / "export",
        masks,
        review,
        trust,
        decisions,
    )
    return tmp_path / "instances", tmp_path / "export"


def teacher_masks(shard_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "val"):
        for f in shards.files(shard_dir, split):
            d = shards.read(f, ("key", "teacher_full", "box_xyxy", "image_size"))
            for i, k in enumerate(d["key"]):
                out[str(k)] = shards.full_label(d["teacher_full"][i], d["box_xyxy"][i], d["image_size"][i])
    return out


def test_coco_export_is_the_users_file_with_masks_filled_in(tmp_path):
    from tests.test_sources import tiny_coco

    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_coco(tmp_path / "sbd", tmp_path / "raw")
    original = json.loads((raw / "annotations/instances_default.json").read_text())
    instances, out = export(tmp_path, raw, "coco", "teacher")
    table = read_table(instances)
    written = json.loads((out / "coco/annotations/instances_default.json").read_text())
    # Everything but the filled fields is the user's own: images, categories, ids, order, crowd and rejects.
    assert written["images"] == original["images"] and written["categories"] == original["categories"]
    assert [a["id"] for a in written["annotations"]] == [a["id"] for a in original["annotations"]]
    used = set(table.source_id)
    teacher = teacher_masks(tmp_path / "shards")
    keys = {r.source_id: f"{r.image_id}/{r.instance_id}" for r in table.itertuples()}
    heights = {im["id"]: (im["height"], im["width"]) for im in original["images"]}
    for before, after in zip(original["annotations"], written["annotations"]):
        if str(after["id"]) not in used:
            assert after == before  # crowd, unknown category, rejected image: untouched
            continue
        assert {
            k: v for k, v in after.items() if k not in ("segmentation", "area", "wss_score", "wss_quality", "wss_masks")
        } == {k: v for k, v in before.items() if k not in ("segmentation", "area")}
        mask = from_segmentation(after["segmentation"], *heights[after["image_id"]])
        np.testing.assert_array_equal(mask, teacher[keys[str(after["id"])]])
        assert after["area"] == int(mask.sum()) and after["wss_masks"] == "teacher" and after["wss_score"] == 1.0
    # pycocotools loads it, and the project's reader reads back the same boxes and ids.
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(out / "coco/annotations/instances_default.json"))
    back = coco.read(out / "coco/annotations/instances_default.json")
    again = {str(a.annotation_id): a for a in back.annotations}
    for r in table.itertuples():
        a = again[r.source_id]
        assert (a.box.x1, a.box.y1, a.box.x2, a.box.y2) == (r.x1, r.y1, r.x2, r.y2)


def tiny_yolo(tiny_sbd: Path, root: Path) -> Path:
    """The tiny sample as a boxes-only YOLO detection dataset (the first file has a bad line 2)."""
    ds = sbd.read(tiny_sbd)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for n, (iid, im) in enumerate(ds.images.items()):
        shutil.copy(tiny_sbd / im["file_name"], root / "images" / im["split"] / f"{iid}.jpg")
        h, w = im["height"], im["width"]
        lines = [
            f"{a.category_id - 1} {(a.box.x1 + a.box.x2) / 2 / w:.6f} {(a.box.y1 + a.box.y2) / 2 / h:.6f} "
            f"{a.box.width / w:.6f} {a.box.height / h:.6f}"
            for a in ds.annotations
            if a.image_id == iid
        ]
        if n == 0:
            lines.insert(1, "3 not numbers")
        (root / "labels" / im["split"] / f"{iid}.txt").write_text("\n".join(lines) + "\n")
    names = [n for _, n in sorted(ds.categories.items())]
    (root / "data.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": names})
    )
    return root


def test_yolo_detection_boxes_come_back_as_yolo_seg(tmp_path):
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "sbd", tmp_path / "raw")
    instances, out = export(tmp_path, raw, "yolo", "teacher")
    table = read_table(instances)
    assert set(table.source_file) == {str(p.relative_to(raw)) for p in raw.glob("labels/*/*.txt")}
    spec = yaml.safe_load((out / "yolo/data.yaml").read_text())
    assert "path" not in spec and spec["train"] == "images/train" and spec["val"] == "images/val"
    assert len(list((out / "yolo/images").rglob("*.jpg"))) == len(list((raw / "images").rglob("*.jpg")))
    for f in (out / "yolo/labels").rglob("*.txt"):  # every line a polygon: class + at least 3 points
        for line in f.read_text().splitlines():
            values = line.split()
            assert len(values) >= 7 and len(values) % 2 == 1
    back = yolo.read(out / "yolo/data.yaml")
    teacher = teacher_masks(tmp_path / "shards")
    got = {(a.image_id, a.source_id): a for a in back.annotations}
    ious = []
    for r in table.itertuples():
        # The bad line 2 of the first file is dropped, so the lines after it move up by one.
        line = int(r.source_id) - (r.image_id == "sample_000000" and int(r.source_id) > 2)
        a = got[(r.image_id, str(line))]
        assert a.category_id == r.category
        assert r.x1 <= a.box.x1 and r.y1 <= a.box.y1 and a.box.x2 <= r.x2 and a.box.y2 <= r.y2  # inside the box
        ious.append(iou(from_segmentation(a.segmentation, r.height, r.width), teacher[f"{r.image_id}/{r.instance_id}"]))
    assert len(ious) == len(table) and np.mean(ious) >= 0.95 and min(ious) > 0.8


def test_a_multi_part_mask_is_one_polygon_that_rasterises_back():
    m = np.zeros((40, 60), np.uint8)
    m[5:15, 5:20] = 1
    m[25:35, 30:55] = 1
    m[2:6, 50:58] = 1
    poly = to_polygon(m)
    assert poly.ndim == 2 and poly.shape[1] == 2
    back = from_segmentation([list(poly.ravel())], 40, 60)
    assert iou(back, m) > 0.98
    assert to_polygon(np.zeros((5, 5), np.uint8)) is None


@pytest.mark.skipif(not (SHARED / "coco128-coco.tar.gz").is_file(), reason="needs ../shared/data/coco128-coco.tar.gz")
def test_yolo_polygons_of_coco128_masks_rasterise_back(tmp_path):
    import tarfile

    with tarfile.open(SHARED / "coco128-coco.tar.gz") as tar:
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.endswith(".json")], filter="data")
    ds = coco.read(next(tmp_path.rglob("instances_train2017.json")))
    ious = []
    for a in ds.annotations:
        if a.iscrowd:
            continue
        im = ds.images[a.image_id]
        m = from_segmentation(a.segmentation, im["height"], im["width"])
        line = yolo_line = None
        from wss.data.writers.yolo import polygon_line

        line = polygon_line(0, m)
        values = np.array([float(v) for v in line.split()[1:]])
        yolo_line = [list((values.reshape(-1, 2) * [im["width"], im["height"]]).ravel())]
        ious.append(iou(from_segmentation(yolo_line, im["height"], im["width"]), m))
    assert len(ious) == 929 and np.mean(ious) >= 0.95


def tiny_voc(tiny_sbd: Path, root: Path) -> Path:
    """The tiny sample as a boxes-only VOC devkit (no SegmentationObject)."""
    ds = sbd.read(tiny_sbd)
    kit = root / "VOCdevkit" / "VOC2012"
    for d in ("Annotations", "JPEGImages", "ImageSets/Segmentation"):
        (kit / d).mkdir(parents=True)
    lists = {"train": [], "val": []}
    for iid, im in ds.images.items():
        shutil.copy(tiny_sbd / im["file_name"], kit / "JPEGImages" / f"{iid}.jpg")
        objs = "".join(
            f"<object><name>{sbd.VOC_CLASSES[a.category_id - 1]}</name><bndbox><xmin>{a.box.x1 + 1}</xmin>"
            f"<ymin>{a.box.y1 + 1}</ymin><xmax>{a.box.x2}</xmax><ymax>{a.box.y2}</ymax></bndbox></object>"
            for a in ds.annotations
            if a.image_id == iid
        )
        (kit / "Annotations" / f"{iid}.xml").write_text(
            f"<annotation><filename>{iid}.jpg</filename><size><width>{im['width']}</width><height>{im['height']}"
            f"</height></size>{objs}</annotation>"
        )
        lists[im["split"]].append(iid)
    for split, ids in lists.items():
        (kit / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_voc_boxes_come_back_as_segmentation_pngs_that_the_reader_reads(tmp_path):
    from PIL import Image

    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_voc(tmp_path / "sbd", tmp_path / "raw")
    instances, out = export(tmp_path, raw, "voc", "teacher")
    table = read_table(instances)
    kit = out / "voc/VOCdevkit/VOC2012"
    first = table.image_id.iloc[0]
    with Image.open(kit / "SegmentationObject" / f"{first}.png") as im:
        assert im.mode == "P" and im.getpalette()[3:6] == [128, 0, 0]  # VOC's colour map
    with Image.open(kit / "SegmentationClass" / f"{first}.png") as im:
        classes = set(np.unique(np.asarray(im)).tolist()) - {0, 255}
    names = set(table[table.image_id == first].category_name)
    assert classes == {sbd.VOC_CLASSES.index(n) + 1 for n in names}  # VOC's own class indices
    back = voc.read(kit)
    teacher = teacher_masks(tmp_path / "shards")
    got = {(a.image_id, a.source_id): a for a in back.annotations}
    ious = []
    for r in table.itertuples():
        a = got[(r.image_id, r.source_id)]
        assert (a.box.x1, a.box.y1, a.box.x2, a.box.y2) == (r.x1, r.y1, r.x2, r.y2)  # the XML, unchanged
        with Image.open(kit / "SegmentationObject" / f"{r.image_id}.png") as im:
            scored = np.asarray(im) != 255  # VOC's void band is left out of scoring, as VOC's evaluation does
        back_mask = from_segmentation(a.segmentation, r.height, r.width)
        ious.append(iou(back_mask[scored], teacher[f"{r.image_id}/{r.instance_id}"][scored]))
    # Overlaps (the smaller object drawn on top) cost the larger one a little.
    assert len(ious) == len(table) and np.mean(ious) > 0.95


def test_the_fused_masks_go_out_when_export_masks_is_fused(tmp_path):
    """``export.masks: fused``: the user's file carries exactly the masks of ``fused_<split>.json``
    (the eroded-box stub's probability averaged with the teacher, through the refinement cut; a stub
    that answers with the whole box is a box filler, and its fused masks would be the teacher's)."""
    from tests.test_sources import tiny_coco

    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_coco(tmp_path / "sbd", tmp_path / "raw")
    instances, out = export(tmp_path, raw, "coco", "fused", shrink=4)
    table = read_table(instances)
    fused = {}
    for split in ("train", "val"):
        for a in json.loads((out / f"fused_{split}.json").read_text())["annotations"]:
            fused[str(a["source_id"])] = a
    assert len(fused) == len(table)
    teacher = teacher_masks(tmp_path / "shards")
    keys = {r.source_id: f"{r.image_id}/{r.instance_id}" for r in table.itertuples()}
    written = json.loads((out / "coco/annotations/instances_default.json").read_text())
    heights = {im["id"]: (im["height"], im["width"]) for im in written["images"]}
    differ = 0
    for a in written["annotations"]:
        if str(a["id"]) not in fused:
            continue
        mask = from_segmentation(a["segmentation"], *heights[a["image_id"]])
        mine = fused[str(a["id"])]
        np.testing.assert_array_equal(mask, from_segmentation(mine["segmentation"], *heights[a["image_id"]]))
        assert a["wss_masks"] == "fused" and a["wss_score"] == mine["score"]
        x, y, w, h = a["bbox"]
        assert not mask[:, : int(x)].any() and not mask[: int(y)].any()  # nothing left of or above the box
        differ += not np.array_equal(mask, teacher[keys[str(a["id"])]])
    assert differ > 0  # not the teacher's masks under another name


def ultralytics_problems(yaml_path: Path) -> list[str]:
    """What Ultralytics' dataset check (``check_det_dataset`` and the loader's image-to-label mapping,
    as documented) would refuse in a dataset yaml: ``train`` and ``val`` present, ``names`` (or
    ``nc``), each split resolving under the root (``path``, else the yaml's directory) to an image
    directory or a ``.txt`` list of images, and every image under an ``images`` directory so that
    its labels are found by swapping that component for ``labels``."""
    spec = yaml.safe_load(yaml_path.read_text())
    wrong = [f"'{k}:' key missing" for k in ("train", "val") if k not in spec]
    if "names" not in spec and "nc" not in spec:
        wrong.append("either 'names' or 'nc' is required")
    root = yaml_path.parent / spec.get("path", "")
    for k in ("train", "val", "test"):
        if not spec.get(k):
            continue
        entry = root / spec[k]
        if entry.suffix == ".txt":
            lines = entry.read_text().splitlines()
            images = [entry.parent / ln[2:] if ln.startswith("./") else Path(ln) for ln in lines]
            if any(not ln.startswith("./") and not Path(ln).is_absolute() for ln in lines):
                wrong.append(f"{k}: a relative line without ./ is read from the working directory")
        elif entry.is_dir():
            images = [p for p in entry.iterdir() if p.suffix == ".jpg"]
        else:
            wrong.append(f"{k}: {entry} does not exist")
            continue
        for img in images:
            if not img.is_file() or "images" not in img.parts:
                wrong.append(f"{k}: {img} is not an image under an images/ directory")
    return wrong


def test_a_yolo_yaml_without_val_is_exported_with_the_pipelines_split_for_ultralytics(tmp_path):
    """A detection yaml naming only ``train`` (Ultralytics refuses it: 'val:' key missing) comes back with
    ``train`` and ``val`` list files: the pipeline's val images, and every other image, disjoint."""
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "sbd", tmp_path / "raw")
    for f in (raw / "images/val").iterdir():  # one split directory, as coco128's yaml
        shutil.move(f, raw / "images/train" / f.name)
    for f in (raw / "labels/val").iterdir():
        shutil.move(f, raw / "labels/train" / f.name)
    spec = yaml.safe_load((raw / "data.yaml").read_text())
    del spec["val"]
    (raw / "data.yaml").write_text(yaml.safe_dump(spec))
    assert ultralytics_problems(raw / "data.yaml") == ["'val:' key missing"]  # the check can fail
    instances, out = export(tmp_path, raw, "yolo", "teacher")
    table = read_table(instances)
    spec = yaml.safe_load((out / "yolo/data.yaml").read_text())
    assert ultralytics_problems(out / "yolo/data.yaml") == []
    assert spec["train"] == "train.txt" and spec["val"] == "val.txt" and "path" not in spec
    listed = {k: [ln[2:] for ln in (out / "yolo" / f"{k}.txt").read_text().splitlines()] for k in ("train", "val")}
    assert sorted(listed["val"]) == sorted(set(table.loc[table.split == "val", "file"]))
    assert not set(listed["train"]) & set(listed["val"])
    assert sorted(listed["train"] + listed["val"]) == sorted(
        str(p.relative_to(raw)) for p in raw.glob("images/*/*.jpg")
    )
    back = yolo.read(out / "yolo/data.yaml")  # the export reads back, split as the pipeline split it
    assert {i for i, im in back.images.items() if im["split"] == "val"} == set(
        table.loc[table.split == "val", "image_id"]
    )
    assert len(back.annotations) == len(table) and not back.rejects


def test_a_network_that_learnt_nothing_still_exports(tmp_path):
    """Every model mask empty, so every quality ties at 0, and fewer review cards than masks: the
    export finishes, the gallery holds the cards, and YOLO keeps each object (as its box)."""
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "sbd", tmp_path / "raw")
    instances, out = export(tmp_path, raw, "yolo", "model", review={"page_size": 3}, nothing=True)
    table = read_table(instances)
    listed = pd.read_csv(out / "review/review.csv")
    assert len(listed) == len(table) and (listed.quality == 0).all()
    page = gallery_data(out / "review/index.html")
    assert [it["k"] for it in page["items"]] == listed.key.tolist() and page["pageSize"] == 3
    lines = [ln for f in (out / "yolo/labels").rglob("*.txt") for ln in f.read_text().splitlines()]
    assert len(lines) == len(table)


def test_a_weak_network_hands_back_the_teachers_masks_and_says_so(tmp_path, capsys):
    """``export.masks: fused`` with a network that learnt nothing (it agrees with its teacher on no
    box): the masks in the user's files are the teacher's exactly, not an average pulled down by the
    network, and the export says so on its log and at the top of the review page."""
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "sbd", tmp_path / "raw")
    instances, out = export(tmp_path, raw, "yolo", "fused", nothing=True, trust=(0.5, 0.65))
    said = capsys.readouterr().out
    assert "export: weak network: its masks agree with the teacher's at 0.00 mIoU" in said
    assert "the fused masks are the teacher's alone" in said
    teacher = teacher_masks(tmp_path / "shards")
    fused = {}
    for split in ("train", "val"):
        doc = json.loads((out / f"fused_{split}.json").read_text())
        assert "the teacher's" in doc["info"]["description"]
        hw = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
        for a in doc["annotations"]:
            fused[a["instance"]] = from_segmentation(a["segmentation"], *hw[a["image_id"]])
    assert fused.keys() == teacher.keys()
    for k, m in fused.items():
        np.testing.assert_array_equal(m, teacher[k])
    assert "weak network" in gallery_data(out / "review/index.html")["banner"]


def test_a_yolo_split_given_as_an_image_list_is_read_and_exported_as_one(tmp_path):
    """Ultralytics' other split form, a ``.txt`` list of images: read, and exported as a list of the copies."""
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "sbd", tmp_path / "raw")
    listed = sorted(p.relative_to(raw) for p in (raw / "images/train").glob("*.jpg"))
    (raw / "train.txt").write_text("".join(f"./{p}\n" for p in listed))
    spec = yaml.safe_load((raw / "data.yaml").read_text())
    (raw / "data.yaml").write_text(yaml.safe_dump({**spec, "train": "train.txt"}))
    assert {im["split"] for im in yolo.read(raw / "data.yaml").images.values()} == {"train", "val"}
    instances, out = export(tmp_path, raw, "yolo", "teacher")
    table = read_table(instances)
    assert ultralytics_problems(out / "yolo/data.yaml") == []
    spec = yaml.safe_load((out / "yolo/data.yaml").read_text())
    assert spec["train"] == "train.txt" and spec["val"] == "images/val"
    assert (out / "yolo/train.txt").read_text().splitlines() == [f"./{p}" for p in listed]
    back = yolo.read(out / "yolo/data.yaml")
    assert len(back.annotations) == len(table) and not back.rejects


def reviewed_export(tmp_path: Path, raw: Path, source: str, rejected: str, capsys) -> tuple[dict, pd.DataFrame, str]:
    """Export with a decisions file that accepts one instance (with a mask of its own: the left half
    of its box) and rejects another; returns the accepted mask by key, the decided rows, the log."""
    from wss.data import decisions

    data = DATA.__class__(**{**DATA.__dict__, "source": source, "archive": str(raw)})
    table = convert.convert(raw, tmp_path / "pre", data, 0.5)
    rows = table.assign(key=table.image_id + "/" + table.instance_id.astype(str)).reset_index(drop=True)
    a, r = rows.iloc[0], rows.iloc[1]
    mask = np.zeros((int(a.height), int(a.width)), np.uint8)
    mask[a.y1 : a.y2, a.x1 : (a.x1 + a.x2) // 2] = 1
    (tmp_path / "reviews").mkdir()
    decisions.write(
        tmp_path / "reviews/mine.csv", rows, {a.key: "accept", r.key: "reject"}, {a.key: mask}, "2026-12-01T10:00:00Z"
    )
    capsys.readouterr()
    export(tmp_path, raw, source, "teacher", review={"rejected": rejected}, decisions=tmp_path / "reviews")
    return {a.key: mask}, rows.iloc[:2], capsys.readouterr().out


@pytest.mark.parametrize("rejected", ["flag", "drop"])
def test_decisions_reach_the_users_coco_file(tmp_path, rejected, capsys):
    from tests.test_sources import tiny_coco

    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_coco(tmp_path / "sbd", tmp_path / "raw")
    original = {a["id"]: a for a in json.loads((raw / "annotations/instances_default.json").read_text())["annotations"]}
    accepted, decided, said = reviewed_export(tmp_path, raw, "coco", rejected, capsys)
    n = len(read_table(tmp_path / "instances"))
    word = "left out" if rejected == "drop" else "flagged"
    assert f"1 masks accepted (written as accepted), 1 rejected ({word}), {n - 2} not reviewed" in said
    out = tmp_path / "export"
    written = {
        a["id"]: a for a in json.loads((out / "coco/annotations/instances_default.json").read_text())["annotations"]
    }
    a, r = (written[int(x.source_id)] for x in decided.itertuples())
    h, w = int(decided.iloc[0].height), int(decided.iloc[0].width)
    np.testing.assert_array_equal(from_segmentation(a["segmentation"], h, w), accepted[decided.iloc[0].key])
    assert a["wss_review"] == "accepted" and r["wss_review"] == "rejected"
    if rejected == "drop":  # the user's annotation as it was, but for the mark
        assert {k: v for k, v in r.items() if k != "wss_review"} == original[r["id"]]
    else:
        assert "wss_masks" in r and r["segmentation"] != original[r["id"]].get("segmentation")
    assert sum("wss_review" in x for x in written.values()) == 2
    # The gallery shows the decisions, ordered after the rest; review.csv says them.
    listed = pd.read_csv(out / "review/review.csv", keep_default_na=False)
    assert listed.decision.tolist()[-2:] == ["reject", "accept"] and set(listed.decision[:-2]) == {""}
    assert [it["d"] for it in gallery_data(out / "review/index.html")["items"]][-2:] == ["reject", "accept"]


def test_a_dropped_mask_leaves_yolo_as_its_box_and_voc_without_it(tmp_path, capsys):
    sample.generate(tmp_path / "sbd", seed=3, cfg=TINY)
    raw = tiny_voc(tmp_path / "sbd", tmp_path / "raw")
    _, decided, said = reviewed_export(tmp_path, raw, "voc", "drop", capsys)
    assert "'dropped': 1" in said
    r = decided.iloc[1]
    kit = tmp_path / "export/voc/VOCdevkit/VOC2012"

    def drawn(row) -> set[int]:  # the object indices of its image's map
        return set(np.unique(np.array(Image.open(kit / "SegmentationObject" / f"{row.image_id}.png"))).tolist())

    assert int(r.source_id) not in drawn(r) and int(decided.iloc[0].source_id) in drawn(decided.iloc[0])
    # YOLO: the object stays, as its box.
    sample.generate(tmp_path / "y/sbd", seed=3, cfg=TINY)
    raw = tiny_yolo(tmp_path / "y/sbd", tmp_path / "y/raw")
    _, decided, said = reviewed_export(tmp_path / "y", raw, "yolo", "drop", capsys)
    assert "'dropped': 1" in said
    r = decided.iloc[1]
    boxes = []
    for line in (tmp_path / "y/export/yolo" / r.source_file).read_text().splitlines():
        xy = np.array(line.split()[1:], float).reshape(-1, 2) * [int(r.width), int(r.height)]
        boxes.append((len(xy), *np.round(xy.min(0)), *np.round(xy.max(0))))
    assert (4, r.x1, r.y1, r.x2, r.y2) in boxes
