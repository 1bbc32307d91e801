"""COCO at the border: box and mask conventions, file checks, and the real coco128 annotations."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from wss.core import boxes
from wss.core.boxes import Box
from wss.core.masks import from_segmentation
from wss.data.readers import coco
from wss.errors import DataError
from wss.evaluation.mask_ap import mask_ap

SHARED = ROOT.parent / "shared" / "data" / "coco128-coco.tar.gz"


def test_box_conversions():
    assert coco.box_from_bbox([10.2, 5.0, 20.5, 7.9]) == Box(10, 5, 31, 13)  # contains the float box
    assert coco.bbox_from_box(Box(10, 5, 31, 13)) == [10.0, 5.0, 21.0, 8.0]
    assert coco.box_from_bbox(coco.bbox_from_box(Box(3, 4, 9, 12))) == Box(3, 4, 9, 12)
    # Float noise does not grow a box by a pixel: edges round to the nearest pixel edge.
    assert coco.box_from_bbox([20.0000001, 9.9999999, 10.0000002, 5.0]) == Box(20, 10, 30, 15)
    assert coco.box_from_bbox([0.5, 1.5, 1.0, 1.0]) == Box(1, 2, 2, 3)  # halves up, not to even


def test_rle_round_trip_and_polygons():
    m = np.zeros((20, 30), np.uint8)
    m[2:9, 4:17] = 1
    m[15, 29] = 1
    rle = coco.encode(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [20, 30]
    json.dumps(rle)  # JSON-ready
    np.testing.assert_array_equal(from_segmentation(rle, 20, 30), m)
    square = from_segmentation([[4, 2, 17, 2, 17, 9, 4, 9]], 20, 30)  # polygon along pixel edges
    assert boxes.from_mask(square) == Box(4, 2, 17, 9) and square.sum() == 13 * 7
    crowd = {"size": [20, 30], "counts": [40, 10, 550]}  # uncompressed, column-major, as iscrowd has it
    assert from_segmentation(crowd, 20, 30).sum() == 10
    with pytest.raises(ValueError, match="polygons or an RLE"):
        from_segmentation("nonsense", 20, 30)


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "instances.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_every_bad_entry_is_a_reject_with_the_reason(tmp_path):
    poly = [[4, 2, 17, 2, 17, 9, 4, 9]]
    good = {"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 2, 13, 7], "segmentation": poly, "iscrowd": 0}
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30},
            {"id": 1, "file_name": "b.jpg", "height": 20, "width": 30},
            {"id": 2, "file_name": "c.jpg", "height": 0, "width": 30},
        ],
        "categories": [{"id": 7, "name": "kite"}, {"id": 7, "name": "again"}],
        "annotations": [
            good,
            {**good, "id": 1},
            {**good, "id": 2, "image_id": 9},
            {**good, "id": 3, "category_id": 99},
            {**good, "id": 4, "bbox": [4, 2, 0, 7]},
            {**good, "id": 5, "bbox": [40, 2, 3, 3]},
            {**good, "id": 6, "segmentation": [[4, 2, 70, 2, 70, 9]]},
            {**good, "id": 7, "segmentation": {"size": [10, 10], "counts": "0"}},
            {**good, "id": 8, "segmentation": None},
        ],
    }
    ds = coco.read(write(tmp_path, data))
    reasons = [r["reason"] for r in ds.rejects]
    for expected in (
        "image 1: duplicate id",
        "image 2: needs file_name and a positive height",
        "category 7: duplicate",
        "annotation 1: duplicate id",
        "annotation 2: unknown image id 9",
        "annotation 3: unknown category id 99",
        "annotation 4: zero-area box",
        "annotation 5: box [40, 2, 3, 3] outside the 30x20 image",
        "annotation 6: polygon outside",
        "annotation 7: RLE size [10, 10] is not the image's [20, 30]",
    ):
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    assert all(r["file"] == str(tmp_path / "instances.json") for r in ds.rejects)
    assert [a.annotation_id for a in ds.annotations] == [1, 8]  # 8 has no mask: a boxes-only annotation
    assert ds.annotations[1].segmentation is None and ds.categories == {7: "kite"}


@pytest.mark.parametrize("text", ["{not json", "[]", '{"images": []}'])
def test_a_file_that_is_not_coco_names_itself(tmp_path, text):
    with pytest.raises(DataError, match="instances.json"):
        coco.read(write(tmp_path, text))


@pytest.fixture(scope="module")
def coco128(tmp_path_factory) -> Path:
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} is absent (third-party data, kept beside the project, never in it)")
    out = tmp_path_factory.mktemp("coco128")
    with tarfile.open(SHARED) as tar:
        tar.extractall(out, members=[m for m in tar.getmembers() if m.name.endswith(".json")], filter="data")
    return next(out.rglob("instances_train2017.json"))


def test_real_coco128_annotations(coco128):
    ds = coco.read(coco128)
    assert not ds.rejects and len(ds.images) == 128 and len(ds.annotations) == 939
    assert sum(a.iscrowd for a in ds.annotations) == 10 and len(ds.categories) == 80
    gaps = []
    for a in ds.annotations:
        im = ds.images[a.image_id]
        m = from_segmentation(a.segmentation, im["height"], im["width"])
        tight = boxes.from_mask(m)
        if tight is None:
            continue
        gaps.append(max(abs(p - q) for p, q in zip(tight, a.box)))
        if not a.iscrowd:
            np.testing.assert_array_equal(from_segmentation(coco.encode(m), *m.shape), m)
    # The official bbox, rounded to the nearest pixel edge, is the mask's tight box for most
    # annotations and within 1 px for 910 of 939 (floor/ceil, which grows every float box, gave 878);
    # thin polygon parts that rasterise to nothing leave a gap of up to 4 px on the rest (measured).
    gaps = np.array(gaps)
    assert (gaps <= 1).sum() == 910 and gaps.max() == 4 and (gaps == 0).sum() > 600


def test_exported_rle_scores_perfectly_in_cocoeval(coco128):
    """Ground-truth masks written as results score AP 1: the RLE is what pycocotools expects."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco128))
    ds = coco.read(coco128)
    results = []
    for a in ds.annotations:
        if a.iscrowd:
            continue
        im = ds.images[a.image_id]
        m = from_segmentation(a.segmentation, im["height"], im["width"])
        results.append(
            {"image_id": a.image_id, "category_id": a.category_id, "segmentation": coco.encode(m), "score": 1.0}
        )
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0, abs=1e-6)


def test_mask_ap_hand_computed():
    """One object: a perfect mask scores AP 1; a mask of IoU exactly 0.5 passes only the 0.5 threshold
    of COCO's ten (0.5:0.95), so AP50 1, AP75 0, AP 0.1; a second, lower-scored false mask on
    another image halves the precision at full recall only where it ranks first."""
    gt_mask = np.zeros((40, 50), np.uint8)
    gt_mask[5:20, 10:30] = 1  # 300 px: small
    gts = [coco.annotation(1, 1, 3, Box(10, 5, 30, 20), gt_mask)]
    images, cats = {1: (40, 50), 2: (40, 50)}, {3: "kite", 4: "unused"}

    def det(mask, score, image=1):
        return {"image_id": image, "category_id": 3, "segmentation": coco.encode(mask), "score": score}

    perfect = mask_ap(images, cats, gts, [det(gt_mask, 0.9)])
    assert perfect == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AP_small": 1.0, "AP_medium": None, "AP_large": None}
    half = gt_mask.copy()
    half[:, 20:30] = 0  # 150 of 300 pixels: IoU 0.5
    got = mask_ap(images, cats, gts, [det(half, 0.9)])
    assert (got["AP"], got["AP50"], got["AP75"]) == (0.1, 1.0, 0.0)
    # A false positive ranked above the true one: precision 1/2 at recall 1, interpolated: AP 0.5.
    got = mask_ap(images, cats, gts, [det(gt_mask, 0.5), det(gt_mask, 0.9, image=2)])
    assert got["AP"] == 0.5
