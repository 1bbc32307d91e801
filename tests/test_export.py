"""The export stage: COCO files that pycocotools loads as they are, whose masks round-trip."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from stages import export as stage
from tests.conftest import write_params
from tests.test_evaluate import assert_is_the_box, box_stub
from wss.core.boxes import Box
from wss.data.instances import read_table
from wss.labels import shards


def run_export(
    tmp_path: Path,
    model: Path,
    shards: Path,
    instances: Path,
    data: Path,
    out: Path,
    masks: str = "model",
    review: dict | None = None,
    trust: tuple = (0.0, 0.0),
    decisions: Path | None = None,
) -> int:
    """The export stage on a dataset with ``model``; every network trusted unless ``trust`` says
    otherwise; ``review`` params as given, and the reviewer's ``decisions`` when given."""
    write_params(
        tmp_path / "params.yaml",
        evaluate={"batch_size": 4, "trust_min_instances": 0, "trust_agreement": list(trust), "n_overlays": 0},
        export={"masks": masks},
        review=review or {},
    )
    args = {
        "--params": tmp_path / "params.yaml",
        "--model": model,
        "--shards": shards,
        "--instances": instances,
        "--data": data,
        "--out": out,
        **({"--decisions": decisions} if decisions else {}),
    }
    return stage.main([str(x) for kv in args.items() for x in kv])


def test_export_round_trips_through_pycocotools(tmp_path, built):
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"])
    out = tmp_path / "export"
    run_export(tmp_path, stub, built.shards, built.instances, built.data, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "model_train.json",
        "model_val.json",
        "review",
        "teacher_train.json",
        "teacher_val.json",
    ]
    table = read_table(built.instances)
    rows = {f"{r.image_id}/{r.instance_id}": r for r in table.itertuples()}
    # Teacher labels: exactly the full-resolution labels the shards hold.
    stored = {}
    for split in ("train", "val"):
        for f in shards.files(built.shards, split):
            d = shards.read(f, ("key", "teacher_full", "box_xyxy", "image_size"))
            for i, key in enumerate(d["key"]):
                stored[key] = shards.full_label(d["teacher_full"][i], d["box_xyxy"][i], d["image_size"][i])
    for split in ("train", "val"):
        with contextlib.redirect_stdout(io.StringIO()):
            gc, model = COCO(str(out / f"teacher_{split}.json")), COCO(str(out / f"model_{split}.json"))
        part = table[table.split == split]
        assert len(gc.getAnnIds()) == len(model.getAnnIds()) == len(part) > 0
        assert {im["file_name"] for im in gc.loadImgs(gc.getImgIds())} == set(part.file)
        for ann in gc.loadAnns(gc.getAnnIds()):
            np.testing.assert_array_equal(gc.annToMask(ann), stored[ann["instance"]])
            r = rows[ann["instance"]]
            assert ann["image_id"] == r.coco_image_id and ann["category_id"] == r.category
            assert ann["bbox"] == [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1]
        # The stub network answers with its box channel: every exported model mask is its box (up to
        # one crop pixel: a 32-pixel crop of a window up to ~100 image pixels wide), scored.
        for ann in model.loadAnns(model.getAnnIds()):
            r = rows[ann["instance"]]
            assert_is_the_box(model.annToMask(ann), Box(r.x1, r.y1, r.x2, r.y2), slack=3)
            assert 0.5 < ann["score"] <= 1
    assert (
        json.loads((out / "teacher_val.json").read_text())["info"]["description"] == "wss teacher masks (grabcut), val"
    )  # the method that made them, beside the role
    cats = json.loads((out / "model_val.json").read_text())["categories"]
    assert len(cats) == 20 and cats[0] == {"id": 1, "name": "aeroplane"}
