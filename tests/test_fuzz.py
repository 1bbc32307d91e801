"""Thousands of broken annotation files through ``convert``: each ends in reject rows or in one
clear error that names the file, never in a traceback.

Seeded mutations of a tiny valid COCO, YOLO and VOC dataset: deleted keys, wrong types, NaN and
infinities, negative and huge boxes, unknown ids, bad UTF-8, truncation, paths and links out of
the dataset, and broken images (malformed EXIF orientation tags, empty files, decompression bombs).
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import data_cfg
from wss.data import convert
from wss.errors import WssError

pytestmark = pytest.mark.slow

CASES = 500  # per format: 1,500 in all

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
        return raw[:i] + rng.choice([b"\xff\xfe\x80", b"\xe9", b"\x00"]) + raw[i:]  # not UTF-8, or not text
    if roll < 0.25:
        return text.encode(rng.choice(["utf-16", "utf-8-sig"]))  # other encodings a reader must take
    return raw


SECRET = "SECRET-OUTSIDE-THE-DATASET"


def outside(root: Path) -> Path:
    """A file beside the dataset, as an absolute path, a ``..`` path or a link inside it would reach."""
    target = root.parent / "outside.png"
    if not target.exists():
        images(root.parent, ["outside.png"])
        (root.parent / "outside.txt").write_text(f"0 0.5 0.5 0.2 0.2 {SECRET}\n")
    return target


def big_json_values(rng: random.Random, text: str) -> str:
    """Numbers too big for a float, integers too long for Python, and nesting too deep to parse."""
    pick = rng.random()
    if pick < 0.35:
        return text.replace("[2, 2, 10, 8]", "[1" + "0" * rng.choice([310, 5000]) + ", 2, 10, 8]", 1)
    if pick < 0.6:
        return text.replace('"iscrowd": 0', '"iscrowd": ' + "[" * 3000 + "]" * 3000, 1)
    if pick < 0.8:
        return text.replace('"counts": "PX23000"', '"counts": [10, 5]', 1)  # runs short of the image
    return text.replace('"counts": "PX23000"', '"counts": "PX2"', 1)  # cut off mid-number


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


def broken_image(rng: random.Random, path: Path) -> None:
    """Replace the image at ``path`` by a broken one of the kinds an outside fuzzer found."""
    from PIL import Image

    from tests.test_image import raw_exif

    kind = rng.choice(["exif", "exif", "empty", "bomb"])
    if kind == "exif":  # a tag of any type, count and value: the size and the pixels must still agree
        tag = raw_exif(rng.choice([0, 1, 3, 4, 9]), rng.choice([0, 1, 2]), rng.choice([0, 1, 3, 6, 8, 9, 70000]))
        Image.fromarray(np.full((16, 24, 3), 120, np.uint8)).save(path.with_suffix(".png"), exif=tag)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        Image.new("1", (14000, 13000)).save(path)


def kept_within_images(out: Path, root: Path | None = None) -> None:
    """What convert kept is right, not only there: every box inside its upright image, and every
    mask's area its pixel count, inside the box.  With ``root``, every kept image reads at the size
    the table records."""
    from wss.core import image
    from wss.data.instances import gt_mask, read_table

    for r in read_table(out).itertuples():
        assert 0 <= r.x1 < r.x2 <= r.width and 0 <= r.y1 < r.y2 <= r.height, r
        if root is not None:
            assert image.read(root / r.file).shape[:2] == (r.height, r.width), r
        mask = gt_mask(r)
        if mask is not None:
            assert mask.shape == (r.height, r.width) and int(mask.sum()) == r.area, r
            assert mask[r.y1 : r.y2, r.x1 : r.x2].any(), r


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
            base = coco_base()
            roll = rng.random()
            if roll < 0.1:  # an image outside the dataset: by absolute path, through .., or by a link
                how = rng.choice(["absolute", "dotdot", "link"])
                target = outside(root)
                if how == "link":
                    (root / "b.png").unlink()
                    (root / "b.png").symlink_to(target)
                else:
                    base["images"][1]["file_name"] = str(target) if how == "absolute" else "../outside.png"
            if 0.3 <= roll < 0.4:
                broken_image(rng, root / "c.png")
            text = json.dumps(mutate_json(rng, base), allow_nan=True, default=str)
            if 0.1 <= roll < 0.3:
                text = big_json_values(rng, text)
            (root / name).write_bytes(to_bytes(rng, text))
        elif source == "yolo":
            for split in ("train", "val"):
                (root / "images" / split).mkdir(parents=True)
                (root / "labels" / split).mkdir(parents=True)
                images(root / "images" / split, ["a.png", "b.png", "c.png"])
                for n in "abc":  # one good line in each file, among the mutated ones
                    lines = ["0 0.5 0.5 0.4 0.4"] + [yolo_line(rng) for _ in range(rng.randint(0, 3))]
                    rng.shuffle(lines)
                    label = root / "labels" / split / (f"{n}.txt" if rng.random() < 0.9 else f"{n}.TXT")
                    if rng.random() < 0.05:  # a label file that is a link out of the dataset
                        outside(root)
                        label.symlink_to(root.parent / "outside.txt")
                    else:
                        label.write_bytes(to_bytes(rng, "\n".join(lines)))
            name = "data.yaml"
            spec = rng.choice(
                [
                    "train: images/train\nval: images/val\nnames: [cat, dog]\n",
                    "path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n",
                    "train: images/train\nnames: 5\n",
                    "names: [cat]\ntrain: nowhere\n",
                    "names: [cat\n",
                    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nnames: [*c, *c, *c, *c]\ntrain: images/train\n",
                    "train: images/train\nval: images/val\nnames: " + "[" * 1000 + "]" * 1000 + "\n",
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
            (kit / "ImageSets/Segmentation/train.txt").write_bytes(to_bytes(rng, "a\nc\n"))
            (kit / "ImageSets/Segmentation/val.txt").write_text(rng.choice(["b\nd\n", "b\nb\nd\n", "e\nd\n", ""]))
            name = "VOC2012"
        start = time.perf_counter()
        outcomes[check(root, tmp_path / "out", source, name)] += 1
        assert time.perf_counter() - start < 20, f"{source}: one case took {time.perf_counter() - start:.0f} s"
        said = capsys.readouterr()
        rejects = tmp_path / "out" / "rejects.csv"
        leaked = SECRET in said.out + said.err + (rejects.read_text() if rejects.is_file() else "")
        assert not leaked, f"{source}: a file outside the dataset was read into the output"
        if (tmp_path / "out").is_dir():
            kept_within_images(tmp_path / "out", root)
        if (tmp_path / "out").exists():
            shutil.rmtree(tmp_path / "out")
    # Both kinds of outcome occur: the mutations are neither all harmless nor all fatal.
    assert outcomes["table"] > 20 and outcomes["error"] > 20, outcomes
    assert math.isclose(sum(outcomes.values()), CASES)
