"""Thousands of broken annotation files through ``convert``: each ends in reject rows or in one
clear error that names the file, never in a traceback.

Seeded mutations of a tiny valid COCO, YOLO and VOC dataset: deleted keys, wrong types, NaN and
infinities, negative and huge boxes, unknown ids, bad UTF-8, truncation.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import data_cfg
from wss.data import convert
from wss.errors import WssError

pytestmark = pytest.mark.slow

CASES = 700  # per format: 2,100 in all

ODD_VALUES = [
    None,
    "x",
    "",
    [],
    {},
    -1,
    0,
    1e12,
    -1e12,
    float("nan"),
    float("inf"),
    -float("inf"),
    True,
    [1, 2],
    {"a": 1},
    3.5,
    "12",
    2**63,
]


def images(root: Path, names: list[str]) -> None:
    for n in names:
        cv2.imwrite(str(root / n), np.full((16, 24, 3), 120, np.uint8))


def coco_base() -> dict:
    """Four images of two annotations each: one mutation rarely empties a split."""
    names = ["a.png", "b.png", "c.png", "d.png"]
    anns = []
    for n in range(1, 5):
        anns.append(
            {
                "id": 2 * n,
                "image_id": n,
                "category_id": 1,
                "bbox": [2, 2, 10, 8],
                "iscrowd": 0,
                "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]],
                "area": 80,
            }
        )
        anns.append(
            {
                "id": 2 * n + 1,
                "image_id": n,
                "category_id": 2,
                "bbox": [4, 3, 6, 6],
                "iscrowd": 0,
                "segmentation": {"size": [16, 24], "counts": "PX23000"},
                "area": 36,
            }
        )
    return {
        "images": [{"id": n, "file_name": f, "height": 16, "width": 24} for n, f in enumerate(names, start=1)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def mutate_json(rng: random.Random, data: dict) -> dict:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        section = rng.choice(["images", "annotations", "categories", None])
        if section is None:
            key = rng.choice(list(data))
            if rng.random() < 0.5:
                del data[key]
            else:
                data[key] = rng.choice(ODD_VALUES)
            continue
        items = data.get(section)
        if not isinstance(items, list) or not items:
            continue
        item = rng.choice(items)
        if not isinstance(item, dict):
            continue
        field = rng.choice(list(item) + ["extra"])
        roll = rng.random()
        if roll < 0.3:
            item.pop(field, None)
        elif roll < 0.6:
            item[field] = rng.choice(ODD_VALUES)
        elif roll < 0.8 and isinstance(item.get(field), list):
            item[field] = [rng.choice(ODD_VALUES) if rng.random() < 0.5 else v for v in item[field]]
        else:
            items.append(copy.deepcopy(item))  # a duplicate id
    return data


def to_bytes(rng: random.Random, text: str) -> bytes:
    raw = text.encode()
    roll = rng.random()
    if roll < 0.1:
        return raw[: rng.randint(0, len(raw))]  # truncated
    if roll < 0.2:
        i = rng.randint(0, len(raw))
        return raw[:i] + b"\xff\xfe\x80" + raw[i:]  # not UTF-8
    return raw


def yolo_line(rng: random.Random) -> str:
    values = [rng.choice([0, 1, 7, -1, "x", "nan"])] + [
        rng.choice([0.5, 0.2, 0.0, 1.0, 1.5, -0.2, "nan", "inf", "1e9", "", "0.3"])
        for _ in range(rng.choice([4, 4, 6, 3, 7, 0]))
    ]
    return " ".join(str(v) for v in values)


def voc_xml(rng: random.Random) -> str:
    def field(v: str) -> str:
        return v if rng.random() < 0.85 else rng.choice(["", "nan", "-5", "1e9", "x", "<b>", "3.5", "inf"])

    good = (
        "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>12</xmax><ymax>10</ymax></bndbox></object>"
    )
    objects = good + "".join(
        f"<object><name>{rng.choice(['cat', 'dog', ''])}</name><difficult>{field('0')}</difficult><bndbox>"
        f"<xmin>{field('2')}</xmin><ymin>{field('3')}</ymin><xmax>{field('12')}</xmax><ymax>{field('10')}</ymax>"
        f"</bndbox></object>"
        for _ in range(rng.randint(0, 3))
    )
    return (
        f"<annotation><filename>a.png</filename><size><width>{field('24')}</width><height>{field('16')}</height>"
        f"</size>{objects}</annotation>"
    )


def check(root: Path, out: Path, source: str, name: str) -> str:
    """Run convert; return "table", "rejects" or the error; fail on anything but a named WssError."""
    try:
        table = convert.convert(root, out, data_cfg(source=source, archive=str(root), val_fraction=0.5), 1.0)
    except WssError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), f"{source}: a multi-line message: {exc!r}"
        named = name in str(exc) or str(root) in str(exc)
        assert named, f"{source}: the error does not name the file: {exc}"
        return "error"
    assert len(table) >= 0
    return "table"


@pytest.mark.parametrize("source", ["coco", "yolo", "voc"])
def test_mutated_annotation_files_end_in_rejects_or_one_named_error(tmp_path, source, capsys):
    rng = random.Random(f"fuzz-{source}")
    root = tmp_path / "ds"
    outcomes = {"table": 0, "error": 0}
    for _ in range(CASES):
        if root.exists():
            shutil.rmtree(root)
        root.mkdir()
        if source == "coco":
            images(root, ["a.png", "b.png", "c.png", "d.png"])
            name = "instances.json"
            text = json.dumps(mutate_json(rng, coco_base()), allow_nan=True, default=str)
            (root / name).write_bytes(to_bytes(rng, text))
        elif source == "yolo":
            for split in ("train", "val"):
                (root / "images" / split).mkdir(parents=True)
                (root / "labels" / split).mkdir(parents=True)
                images(root / "images" / split, ["a.png", "b.png", "c.png"])
                for n in "abc":  # one good line in each file, among the mutated ones
                    lines = ["0 0.5 0.5 0.4 0.4"] + [yolo_line(rng) for _ in range(rng.randint(0, 3))]
                    rng.shuffle(lines)
                    (root / "labels" / split / f"{n}.txt").write_bytes(to_bytes(rng, "\n".join(lines)))
            name = "data.yaml"
            spec = rng.choice(
                [
                    "train: images/train\nval: images/val\nnames: [cat, dog]\n",
                    "path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n",
                    "train: images/train\nnames: 5\n",
                    "names: [cat]\ntrain: nowhere\n",
                    "names: [cat\n",
                ]
            )
            (root / name).write_bytes(to_bytes(rng, spec))
        else:
            kit = root / "VOC2012"
            for d in ("Annotations", "JPEGImages", "ImageSets/Segmentation"):
                (kit / d).mkdir(parents=True)
            images(kit / "JPEGImages", ["a.png", "b.png", "c.png", "d.png"])
            for n in "abcd":
                (kit / "Annotations" / f"{n}.xml").write_bytes(to_bytes(rng, voc_xml(rng).replace("a.png", f"{n}.png")))
            (kit / "ImageSets/Segmentation/train.txt").write_text("a\nc\n")
            (kit / "ImageSets/Segmentation/val.txt").write_text(rng.choice(["b\nd\n", "b\nb\nd\n", "e\nd\n", ""]))
            name = "VOC2012"
        outcomes[check(root, tmp_path / "out", source, name)] += 1
        if (tmp_path / "out").exists():
            shutil.rmtree(tmp_path / "out")
        capsys.readouterr()  # convert's report, thousands of lines of it
    # Both kinds of outcome occur: the mutations are neither all harmless nor all fatal.
    assert outcomes["table"] > 20 and outcomes["error"] > 20, outcomes
    assert math.isclose(sum(outcomes.values()), CASES)
