import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stages import evaluate as stage
from tests.conftest import evaluate_cfg, refine_cfg, write_params
from wss.core import metrics
from wss.core.boxes import Box, fill
from wss.data.readers import sbd
from wss.errors import StageInputError
from wss.evaluation import evaluate as evaluate_mod
from wss.evaluation.predictor import Predictor
from wss.labels import shards
from wss.net.model import sidecar


def box_stub(path, crop_size: int, margin: float, everywhere: bool = False, nothing: bool = False, shrink: int = 0):
    """A saved wss model whose mask is its box channel: the network input's channel 3; with
    ``everywhere``, one that calls every pixel of its crop foreground; with ``nothing``, one that
    calls none (a network that learnt nothing); with ``shrink``, one whose mask is its box eroded by
    ``shrink`` crop pixels (closer to most objects than their boxes are: a network the trust check
    does not take for a box filler)."""
    import keras

    from wss.net.model import BOX_SCALE, sidecar

    inp = keras.Input((None, None, 4))
    x = inp
    if shrink:  # erosion is minus the max of minus
        x = keras.layers.Rescaling(-1.0)(x)
        x = keras.layers.MaxPooling2D(2 * shrink + 1, strides=1, padding="same")(x)
        x = keras.layers.Rescaling(-1.0)(x)
    head = keras.layers.Conv2D(1, 1, name="fused")
    out = head(x)
    kernel = np.array([0, 0, 0, 0 if everywhere or nothing else 40 / BOX_SCALE], np.float32).reshape(1, 1, 4, 1)
    head.set_weights([kernel, np.array([20.0 if everywhere else -20.0], np.float32)])
    net = keras.Model(inp, {"fused": out})
    net.save(str(path))
    sidecar(path).write_text(json.dumps({"crop_size": crop_size, "context_margin": margin, "labels": "stub"}))
    return path


def assert_is_the_box(mask: np.ndarray, box: Box, slack: int):
    """``mask`` holds ``box`` shrunk by ``slack`` pixels and lies inside it grown by ``slack``."""
    h, w = mask.shape
    inner, outer = fill(expand_px(box, -slack), h, w), fill(expand_px(box, slack), h, w)
    assert np.all(mask[inner == 1] == 1) and np.all(mask[outer == 0] == 0)


def expand_px(box: Box, d: int) -> Box:
    return Box(box.x1 - d, box.y1 - d, box.x2 + d, box.y2 + d)


def test_boundary_f_hand_computed():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :5] = 1  # touches the top, left and bottom image borders: its only contour is column 4
    assert metrics.boundary_f(gt, gt, 1) == 1.0
    one_off = np.zeros_like(gt)
    one_off[:, :4] = 1
    assert metrics.boundary_f(one_off, gt, 1) == 1.0  # column 3 is within one pixel of column 4
    two_off = np.zeros_like(gt)
    two_off[:, :3] = 1
    # Column 2 vs column 4: nothing matches.  (Counting the image border as contour would match
    # the shared left column and rows and score 2/3.)
    assert metrics.boundary_f(two_off, gt, 1) == 0.0
    # An L: rows 0-4 of columns 0-4 plus rows 5-9 of columns 0-1.  Its contour: column 4 rows 0-4,
    # row 4 columns 2-3, column 1 rows 5-9 (12 pixels).  Within 1 pixel (4-neighbourhood) of gt's
    # column 4: column 4 rows 0-4 and (4, 3): precision 6/12.  Of gt's 10: rows 0-5: recall 6/10.
    ell = np.zeros_like(gt)
    ell[:5, :5] = 1
    ell[5:, :2] = 1
    assert metrics.boundary_f(ell, gt, 1) == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert metrics.boundary_f(np.zeros_like(gt), gt) == 0.0
    assert metrics.boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_recall_and_summary():
    ious = np.array([0.2, 0.5, 0.8, 0.9])
    np.testing.assert_allclose(metrics.recall_at(ious, np.array([0.5, 0.75])), [0.75, 0.5])
    s = metrics.summary(ious, np.ones(4))
    assert s == {"miou": 0.6, "recall@0.5": 0.75, "recall@0.75": 0.5, "boundary_f": 1.0, "instances": 4}


def test_box_stub_through_evaluate_gives_the_box_at_full_resolution(tmp_path, built):
    """The crop -> predict -> paste-back geometry, end to end: a network that returns its box
    channel must give back the box, at full resolution, for every val instance."""
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"])
    n = 0
    for inst in Predictor.load(stub, evaluate_cfg(flip=True), refine_cfg()).instances(built.shards, "val"):
        assert_is_the_box(inst.mask, inst.box, slack=1)  # 32-pixel crops: resampling moves an edge by <= 1 px
        n += 1
    assert n == manifest["counts"]["val"] > 0


def test_no_model_mask_reaches_outside_its_box(tmp_path, built):
    """A network that calls its whole crop foreground, context margin included, still gives
    exactly the box: the box encloses its object, so the model's mask stops at it."""
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "all.keras", manifest["crop_size"], manifest["context_margin"], everywhere=True)
    insts = list(Predictor.load(stub, evaluate_cfg(flip=True), refine_cfg()).instances(built.shards, "val"))
    assert insts
    for inst in insts:
        np.testing.assert_array_equal(inst.mask, fill(inst.box, *inst.mask.shape))
        assert inst.prob[inst.mask == 0].max() == 0


def run_stage(tmp_path, built, model, out, trust_min_instances: int, n_overlays: int) -> dict:
    """The evaluate stage on ``built`` with ``model`` (no flip, the cut off, trust_agreement [0, 0]),
    its outputs under ``out``; returns ``eval.json``."""
    write_params(
        tmp_path / "params.yaml",
        evaluate={
            "batch_size": 4,
            "trust_agreement": [0.0, 0.0],
            "flip": False,
            "trust_min_instances": trust_min_instances,
            "n_overlays": n_overlays,
        },
    )
    stage.main(
        [
            "--params",
            str(tmp_path / "params.yaml"),
            "--model",
            str(model),
            "--shards",
            str(built.shards),
            "--instances",
            str(built.instances),
            "--data",
            str(built.data),
            "--metrics",
            str(out / "eval.json"),
            "--per-class",
            str(out / "pc.json"),
            "--plots",
            str(out / "eval"),
        ]
    )
    return json.loads((out / "eval.json").read_text())


def test_evaluate_stage_scores_model_and_teacher(tmp_path, built):
    """With the box stub, the model's score is the filled box's; the full-resolution teacher is
    exactly the labels stage's GrabCut IoU; the teacher via 32-pixel crops differs."""
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"])
    out = tmp_path / "m"
    ev = run_stage(tmp_path, built, stub, out, trust_min_instances=0, n_overlays=2)
    val = [shards.read(f, ("iou_teacher", "iou_box")) for f in shards.files(built.shards, "val")]
    iou_teacher = np.concatenate([v["iou_teacher"] for v in val])
    iou_box = np.concatenate([v["iou_box"] for v in val])
    assert ev["instances"] == len(iou_box) == manifest["counts"]["val"]
    assert ev["teacher"]["miou"] == pytest.approx(round(float(iou_teacher.mean()), 4), abs=1e-4)
    assert abs(ev["miou"] - iou_box.mean()) < 0.03
    assert ev["filled_box"]["miou"] == pytest.approx(round(float(iou_box.mean()), 4), abs=1e-4)
    assert ev["instances_with_masks"] == ev["instances"] and ev["instances_without_masks"] == 0
    # COCO mask AP of the stub (the box) is the filled box's: a box that is not the mask scores low.
    assert {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"} <= set(ev)
    assert ev["AP"] <= ev["AP50"] and ev["AP75"] <= ev["AP50"]
    per = pd.read_csv(out / "eval" / "instances.tsv", sep="\t")
    np.testing.assert_allclose(per.iou, iou_box, atol=0.08)
    np.testing.assert_allclose(per.iou_teacher, iou_teacher, atol=1e-4)
    assert not np.allclose(per.iou_teacher_crop, per.iou_teacher, atol=1e-4)
    pc = json.loads((out / "pc.json").read_text())
    assert set(pc) == set(sbd.VOC_CLASSES) and sum(v["instances"] for v in pc.values()) == ev["instances"]
    curve = pd.read_csv(out / "eval" / "recall.tsv", sep="\t")
    assert list(curve.columns) == ["threshold", "recall", "recall_teacher"]
    assert curve.recall.is_monotonic_decreasing
    assert curve.recall.iloc[0] == pytest.approx((per.iou >= 0.05).mean(), abs=1e-4)
    assert len(list((out / "eval" / "overlays").glob("*.png"))) == 2
    # Refinement off: the model's masks are the unrefined ones; the fused masks (the box stub's
    # probability averaged with the teacher, then cut) are scored beside, per size too.
    assert ev["refine"] is False and ev["unrefined"]["miou"] == ev["miou"]
    assert set(ev["fused"]["by_size"]) == {"small", "medium", "large"} and "AP" in ev["fused"]
    np.testing.assert_allclose(ev["fused"]["miou"], per.iou_fused.mean(), atol=1e-4)
    assert ev["fused"]["miou"] > ev["miou"]  # the box alone is the worst of the three
    # The verdict on the network rides along: the stub's masks are its boxes, so however well they
    # agree with the teacher (trust_agreement [0, 0] trusts any agreement), it is a box filler: weak,
    # and the fused masks are the teacher's.
    assert ev["trust"]["box_agreement"] == 1.0 and ev["trust"]["agreement"] < 1 and ev["trust"]["instances"] is None
    assert ev["trust"]["weak"] and ev["trust"]["model_weight"] == 0 and ev["trust"]["agreement_instances"] > 0
    assert ev["fused"]["miou"] == ev["teacher"]["miou"]


def test_a_network_that_does_not_fill_its_boxes_is_trusted_and_its_fused_masks_are_its_own(tmp_path, built):
    """The eroded-box stub agrees with the teacher better than with its boxes: trusted in full (its
    sidecar has no instance count, so the agreement decides), and the fused masks are not the teacher's."""
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"], shrink=4)
    ev = run_stage(tmp_path, built, stub, tmp_path / "m", trust_min_instances=0, n_overlays=0)
    verdict = ev["trust"]
    assert verdict["model_weight"] == 0.5 and verdict["weak"] is False and verdict["instances"] is None
    assert 0 < verdict["box_agreement"] < verdict["agreement"] < 1
    assert ev["fused"]["miou"] != ev["teacher"]["miou"] and ev["cut_ms_per_instance"] > 0


def test_a_weak_network_is_said_and_its_fused_masks_are_the_teachers(tmp_path, built, capsys):
    """A network that learnt from 3 instances (its sidecar says so): evaluate says it is weak, and the
    fused masks it scores are the teacher's, to the last pixel."""
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"])
    side = json.loads(sidecar(stub).read_text())
    sidecar(stub).write_text(json.dumps({**side, "instances_used": 3}))
    ev = run_stage(tmp_path, built, stub, tmp_path / "m", trust_min_instances=4, n_overlays=0)
    said = capsys.readouterr().out
    assert "evaluate: weak network: it learnt from 3 instances (evaluate.trust_min_instances: 4)" in said
    assert ev["trust"]["weak"] and ev["trust"]["model_weight"] == 0 and ev["trust"]["instances"] == 3
    assert ev["fused"]["miou"] == ev["teacher"]["miou"] and ev["fused"]["by_size"] == ev["teacher"]["by_size"]


def test_no_val_instances_is_an_error(tmp_path, built):
    tiny_shards = tmp_path / "shards"
    shutil.copytree(built.shards, tiny_shards)
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["split"] == "train"]
    (tiny_shards / "manifest.json").write_text(json.dumps(manifest))
    predictor = Predictor.load(built.model, evaluate_cfg(n_overlays=1), refine_cfg(), built.data)
    with pytest.raises(StageInputError, match="no val instances"):
        evaluate_mod.evaluate(predictor, tiny_shards, built.instances, built.data, tmp_path / "p")


def test_a_boxes_only_val_split_gets_agreement_and_scores_and_no_error(tmp_path, built):
    """The box stub's masks are the boxes: its agreement with the teacher is the filled box's IoU with
    the teacher labels, computed here independently from the shards."""
    from wss.core.boxes import fill
    from wss.core.metrics import iou

    instances = tmp_path / "instances"
    shutil.copytree(built.instances, instances)
    table = pd.read_parquet(instances / "instances.parquet")
    table["mask"] = ""  # a boxes-only dataset
    table.to_parquet(instances / "instances.parquet", index=False)
    manifest = shards.read_manifest(built.shards)
    stub = box_stub(tmp_path / "stub.keras", manifest["crop_size"], manifest["context_margin"])
    predictor = Predictor.load(stub, evaluate_cfg(n_overlays=1), refine_cfg(), built.data)
    result, per_class = evaluate_mod.evaluate(predictor, built.shards, instances, built.data, tmp_path / "p")
    n = shards.count(built.shards, "val")
    assert result["instances_with_masks"] == 0 and result["instances_without_masks"] == n and per_class == {}
    assert "miou" not in result and "teacher" not in result
    expect = []
    for f in shards.files(built.shards, "val"):
        d = shards.read(f, ("teacher_full", "box_xyxy", "image_size"))
        for i in range(len(d["box_xyxy"])):
            teacher = shards.full_label(d["teacher_full"][i], d["box_xyxy"][i], d["image_size"][i])
            expect.append(iou(fill(Box(*(int(v) for v in d["box_xyxy"][i])), *teacher.shape), teacher))
    assert result["agreement_with_teacher"]["miou"] == pytest.approx(np.mean(expect), abs=0.03)
    assert 0.5 < result["score"]["median"] <= 1 and result["score"]["empty_masks"] == 0
    every = pd.read_csv(tmp_path / "p" / "instances_all.tsv", sep="\t")
    assert len(every) == n and not (tmp_path / "p" / "recall.tsv").exists()
