import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stages import evaluate, metrics, sbd


def test_boundary_f():
    a = np.zeros((50, 50), np.uint8)
    a[10:40, 10:40] = 1
    assert metrics.boundary_f(a, a, 1) == 1.0
    shifted = np.roll(a, 1, axis=1)
    assert metrics.boundary_f(shifted, a, 2) == 1.0  # within tolerance
    assert metrics.boundary_f(np.roll(a, 8, axis=1), a, 2) < 0.6
    assert metrics.boundary_f(np.zeros_like(a), a) == 0.0
    assert metrics.boundary_f(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_recall_and_summary():
    ious = np.array([0.2, 0.5, 0.8, 0.9])
    np.testing.assert_allclose(metrics.recall_at(ious, np.array([0.5, 0.75])), [0.75, 0.5])
    s = metrics.summary(ious, np.ones(4))
    assert s == {"miou": 0.6, "recall@0.5": 0.75, "recall@0.75": 0.5, "boundary_f": 1.0, "instances": 4}


def test_evaluate_stage_writes_metrics_and_plots(tmp_path, built):
    tiny_sbd, tiny_instances, tiny_shards, tiny_model = built.sbd, built.instances, built.shards, built.model
    params = tmp_path / "params.yaml"
    params.write_text("evaluate: {threshold: 0.5, boundary_tolerance: 0.008, batch_size: 4, n_overlays: 2}\n")
    out = tmp_path / "m"
    evaluate.main(["--params", str(params), "--model", str(tiny_model), "--shards", str(tiny_shards),
                   "--instances", str(tiny_instances), "--sbd", str(tiny_sbd), "--metrics", str(out / "eval.json"),
                   "--per-class", str(out / "pc.json"), "--plots", str(out / "eval")])  # fmt: skip
    ev = json.loads((out / "eval.json").read_text())
    n_val = sum(1 for _ in sbd.read_split(tiny_sbd, "val"))
    assert ev["instances"] >= n_val and 0 <= ev["miou"] <= 1
    assert set(ev["grabcut_labels"]) == {"miou", "recall@0.5", "recall@0.75", "boundary_f", "instances"}
    # The GrabCut labels pasted back score close to their exact full-resolution IoU from the labels stage.
    assert ev["grabcut_labels"]["miou"] > 0.3
    pc = json.loads((out / "pc.json").read_text())
    assert set(pc) == set(sbd.VOC_CLASSES) and sum(v["instances"] for v in pc.values()) == ev["instances"]
    curve = pd.read_csv(out / "eval" / "recall.tsv", sep="\t")
    assert list(curve.columns) == ["threshold", "recall", "recall_grabcut"]
    assert curve.recall.is_monotonic_decreasing
    assert len(list((out / "eval" / "overlays").glob("*.png"))) == 2


def test_no_val_instances_is_an_error(tmp_path, built):
    tiny_shards = tmp_path / "shards"
    shutil.copytree(built.shards, tiny_shards)
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["split"] == "train"]
    (tiny_shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="no val instances"):
        cfg = evaluate.EvaluateConfig(threshold=0.5, boundary_tolerance=0.008, batch_size=4, n_overlays=1, flip=False)
        evaluate.evaluate(built.model, tiny_shards, built.instances, built.sbd, cfg, tmp_path / "p")
