"""How far the fused masks trust the network: the verdict from evidence that needs no ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT, evaluate_cfg, refine_cfg
from wss import config
from wss.core import trust
from wss.evaluation import trust as measured

CFG = config.read(config.EvaluateConfig, config.load(ROOT / "params.yaml"))
RULE = (50, (0.5, 0.7))  # min instances, (weak below, trusted from)


def test_the_models_weight_grows_with_its_agreement_and_is_nothing_for_few_instances():
    c = RULE
    assert trust.weight(500, 0.80, *c) == 0.5  # trusted in full: today's fused average
    assert trust.weight(500, 0.70, *c) == 0.5
    assert trust.weight(500, 0.60, *c) == pytest.approx(0.25)  # half way: half the weight
    assert trust.weight(500, 0.50, *c) == 0.0 and trust.weight(500, 0.2, *c) == 0.0
    assert trust.weight(4, 0.95, *c) == 0.0  # four boxes teach nothing, however well it copies them
    assert trust.weight(None, 0.95, *c) == 0.5  # a model without the count (older sidecar): its agreement decides
    assert trust.weight(500, None, *c) == 0.0  # no evidence, no trust
    assert trust.weight(500, 0.6, 50, (0.6, 0.6)) == 0.5  # a step
    assert trust.weight(500, 0.59, 50, (0.6, 0.6)) == 0.0


def test_a_weak_network_is_said_with_why_and_what_to_do():
    c = RULE
    good = trust.assess(800, 0.81, *c)
    assert good == {"instances": 800, "agreement": 0.81, "model_weight": 0.5, "weak": False, "line": ""}
    few = trust.assess(4, 0.9, *c)
    assert few["weak"] and few["model_weight"] == 0
    assert "learnt from 4 instances" in few["line"] and "teacher's alone" in few["line"]
    assert "train.holdout: auto" in few["line"]
    lukewarm = trust.assess(800, 0.6, *c)
    assert lukewarm["weak"] and "0.60 mIoU" in lukewarm["line"] and "model weight 0.25" in lukewarm["line"]
    assert trust.few_instances_line(4, 50).startswith("weak network: it learnt from 4 instances")
    assert trust.few_instances_line(50, 50) == ""


def test_a_network_closer_to_its_boxes_than_to_its_teacher_is_weak():
    """BoxInst's terms pull an undertrained network to fill its boxes; a filled box agrees with
    GrabCut+ well enough to pass the agreement alone (0.66 on coco128 after 40 updates)."""
    c = RULE
    assert trust.weight(500, 0.75, *c, box_agreement=0.70) == 0.5  # a trained network: closer to its teacher
    assert trust.weight(500, 0.75, *c, box_agreement=0.76) == 0.0  # a box filler
    assert trust.weight(500, 0.75, *c, box_agreement=0.75) == 0.5  # a tie is not a box filler
    assert trust.weight(500, 0.0, *c, box_agreement=0.0) == 0.0  # empty masks: the agreement judges them
    assert trust.weight(500, 0.75, *c, box_agreement=None) == 0.5  # not measured: left out
    boxy = trust.assess(800, 0.72, *c, box_agreement=0.74)
    assert boxy["weak"] and boxy["model_weight"] == 0
    assert "closer to their boxes (0.74 mIoU) than to the teacher's (0.72)" in boxy["line"]
    assert "teacher's alone" in boxy["line"]
    # the box reason comes after the others, which say what to change first
    both = trust.assess(4, 0.6, *c, box_agreement=0.9)
    assert both["line"].index("4 instances") < both["line"].index("0.60 mIoU") < both["line"].index("boxes (0.90")


def test_bad_trust_params_are_named():
    section = dict(config.section(config.load(ROOT / "params.yaml"), "evaluate"))
    for bad in ([0.7, 0.5], [0.5], [0.5, 1.5]):
        with pytest.raises(config.ConfigError, match="evaluate.trust_agreement"):
            config.read(config.EvaluateConfig, {"evaluate": {**section, "trust_agreement": bad}})
    with pytest.raises(config.ConfigError, match="evaluate.trust_min_instances"):
        config.read(config.EvaluateConfig, {"evaluate": {**section, "trust_min_instances": -1}})


def test_agreement_on_the_crops_skips_fallbacks(tiny_shards, tmp_path):
    """A stub whose mask is its box agrees with each teacher label as IoU(box, label); fallback
    labels (GrabCut failed) are left out of the mean."""
    from tests.test_evaluate import box_stub
    from wss.core.metrics import iou
    from wss.labels import grabcut, shards
    from wss.evaluation.predictor import Predictor

    side = shards.read_manifest(tiny_shards)["crop_size"]
    stub = Predictor.load(box_stub(tmp_path / "stub.keras", side, 0.1), evaluate_cfg(batch_size=4), refine_cfg())
    want = []
    for split in ("train", "val"):
        for f in shards.files(tiny_shards, split):
            d = shards.read(f, ("box", "teacher", "fallback"))
            want += [
                iou(b > 0, t == 1)
                for b, t, fb in zip(d["box"], d["teacher"], d["fallback"])
                if str(fb) not in grabcut.FALLBACKS
            ]
    got = measured.agreement(stub, tiny_shards)
    assert got["instances"] == len(want) > 0 and got["miou"] == pytest.approx(np.mean(want), abs=1e-4)
    assert got["box_miou"] == 1.0  # the stub's masks are its boxes
    verdict = measured.judge(stub, tiny_shards)
    assert verdict["box_agreement"] == 1.0 and verdict["weak"] and "fill its boxes" in verdict["line"]


def test_export_reads_the_verdict_evaluate_wrote_and_names_a_file_without_one(tmp_path):
    import json

    from wss.errors import DataError

    cfg = evaluate_cfg(trust_min_instances=50, trust_agreement=[0.5, 0.65])
    for verdict in (
        trust.assess(120, 0.8, 50, (0.5, 0.65), box_agreement=0.6) | {"box_agreement": 0.6},
        trust.assess(120, 0.6, 50, (0.5, 0.65), box_agreement=0.7) | {"box_agreement": 0.7},
    ):
        verdict |= {"agreement_instances": 300}
        (tmp_path / "eval.json").write_text(json.dumps({"miou": 0.7, "trust": measured.for_metrics(verdict)}))
        written = json.loads((tmp_path / "eval.json").read_text())["trust"]
        assert "line" not in written  # a sentence is not a metric: dvc metrics diff would print it whole
        assert measured.recorded(tmp_path / "eval.json", cfg) == verdict  # said again from the numbers
    assert "closer to their boxes (0.70 mIoU)" in verdict["line"]
    (tmp_path / "old.json").write_text(json.dumps({"miou": 0.7}))
    for name in ("old.json", "missing.json"):
        with pytest.raises(DataError, match=f"{name}: no verdict on the model in it.*run evaluate first"):
            measured.recorded(tmp_path / name, cfg)
