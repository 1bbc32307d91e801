"""The VOC devkit reader on a devkit built here, with VOC's conventions and every bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from wss.core.boxes import Box
from wss.core.masks import from_segmentation
from wss.data.readers import voc
from wss.errors import DataError


def xml(name: str, w: int, h: int, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
        f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return (
        f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def palette_png(path: Path, index: np.ndarray) -> None:
    im = Image.fromarray(index.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192])
    im.save(path)


def devkit(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("Annotations", "JPEGImages", "SegmentationObject", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    for i in ("a", "b", "c", "d", "e"):
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"), np.full((20, 40, 3), 100, np.uint8))
    # a: a cat (pixels x 10..29, y 5..19: VOC corners 11, 6, 30, 20) and a difficult dog; masks with a void band.
    (root / "Annotations/a.xml").write_text(xml("a", 40, 20, [("cat", (11, 6, 30, 20), 0), ("dog", (1, 1, 5, 5), 1)]))
    index = np.zeros((20, 40), np.uint8)
    index[5:20, 10:30] = voc.VOID
    index[6:19, 11:29] = 1
    index[0:5, 0:5] = 2
    palette_png(root / "SegmentationObject/a.png", index)
    (root / "Annotations/b.xml").write_text(xml("b", 40, 20, [("person", (2, 2, 10, 10), 0)]))  # boxes only
    (root / "Annotations/c.xml").write_text("<annotation><size>")  # malformed
    # d: a box partly outside (clipped, as COCO's and YOLO's are) and one without numbers (that object alone is out).
    (root / "Annotations/d.xml").write_text(
        xml("d", 40, 20, [("cat", (30, 5, 60, 10), 0), ("dog", ("x", 1, 3, 3), 0), ("dog", (2, 2, 6, 6), 0)])
    )
    (root / "Annotations/e.xml").write_text(xml("e", 40, 20, [("cat", (2, 2, 10, 10), 0)]))
    palette_png(root / "SegmentationObject/e.png", np.full((20, 40), 3, np.uint8))  # names object 3 of 1
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("d\ne\na\n")
    return tmp_path / "VOCdevkit"


def test_voc_conventions_and_rejects(tmp_path):
    ds = voc.read(devkit(tmp_path))
    assert ds.categories == {1: "cat", 2: "dog", 3: "person"}
    assert ds.images["a"]["split"] == "train"
    assert [a.difficult for a in ds.annotations if a.image_id == "a"] == [False, True]
    assert ds.images["a"]["file_name"] == "JPEGImages/a.jpg" and ds.images["e"]["split"] == "val"
    cat, dog, person = ds.annotations[:3]
    assert cat.box == Box(10, 5, 30, 20) and dog.box == Box(0, 0, 5, 5) and person.box == Box(1, 1, 10, 10)
    m = from_segmentation(cat.segmentation, 20, 40)
    assert m.sum() == 13 * 18 and m[6:19, 11:29].all()  # the void band is in no instance
    assert from_segmentation(dog.segmentation, 20, 40).sum() == 25
    assert person.segmentation is None  # no SegmentationObject png: boxes only
    got = {
        (Path(r["file"]).name, r["reason"] if r["reason"].startswith("object") else r["reason"].split(" (")[0])
        for r in ds.rejects
    }
    assert ("c.xml", "unreadable annotation XML") in got
    assert ("d.xml", "object 2: no numeric bndbox xmin/ymin/xmax/ymax") in got
    d = [a for a in ds.annotations if a.image_id == "d"]
    assert [(Path(a.source_file).name, a.source_id) for a in d] == [("d.xml", "1"), ("d.xml", "3")]
    assert d[0].box == Box(29, 4, 60, 10)  # as written; the table clips it to the image
    assert ("e.png", "mask indices [3] name objects the XML does not have") in got
    assert ("val.txt", "image id listed twice") in got


def test_a_box_partly_outside_is_clipped_and_keeps_its_source_id(tmp_path):
    from wss.data import dataset

    root = devkit(tmp_path)
    ds = voc.read(root)
    table, _ = dataset.table(ds, voc.find_root(root), 0.2, keep_ids=False)
    d = table[table.image_id == "d"]
    assert d[["x1", "y1", "x2", "y2"]].values.tolist() == [[29, 4, 40, 10], [1, 1, 6, 6]]
    assert d.source_id.tolist() == ["1", "3"] and set(d.source_file) == {"Annotations/d.xml"}


def test_not_a_devkit(tmp_path):
    with pytest.raises(DataError, match="no VOC devkit"):
        voc.read(tmp_path)
