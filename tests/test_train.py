import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from stages import params, train
from tests.conftest import ROOT

TINY = {"steps": 3, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "shuffle_buffer": 8}


def config(**over) -> train.TrainConfig:
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    section.update(TINY, **over)
    return train.TrainConfig.from_params(section)


def test_lr_set_by_dvc_exp_reaches_code_as_float():
    # `dvc exp run -S train.lr=1e-6` writes `lr: 1e-06`.
    p = params.loads("train:\n  lr: 1e-06\n  steps: 5\n  lr_boundaries: [2]\n  lr_factors: [1, 1e-1]\n")
    cfg = train.TrainConfig.from_params(p["train"])
    assert cfg.lr == 1e-6 and isinstance(cfg.lr, float)
    assert cfg.lr_factors == (1.0, 0.1) and cfg.lr_boundaries == (2,)


@pytest.mark.parametrize("section,match", [
    ({"labels": "scribbles"}, "train.labels"),
    ({"lr_boundaries": [10], "lr_factors": [1.0]}, "lr_factors"),
    ({"side_boundaries": [10], "side_weights": [1.0]}, "side_weights"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"ema": 1.0}, "train.ema"),
    ({"mixed_precision": "yes"}, "true or false"),
    ({"learning_rate": 1.0}, "unknown keys"),
])  # fmt: skip
def test_bad_params_are_named(section, match):
    with pytest.raises(SystemExit, match=match):
        train.TrainConfig.from_params(section)


def test_piecewise_schedule():
    b, v = (10, 15, 25), (1.0, 0.1, 1.0, 0.1)
    assert [train.piecewise(s, b, v) for s in (0, 9, 10, 14, 15, 30)] == [1.0, 1.0, 0.1, 0.1, 1.0, 0.1]


def run(tmp_path, shards_dir, init, cfg, tag="run"):
    d = tmp_path / tag
    summary = train.train(cfg, shards_dir, init, d / "model.keras", d / "ckpt", d / "live", seed=1)
    return d, summary


def test_short_training_writes_model_curves_and_summary(tmp_path, tiny_shards, random_init):
    d, summary = run(tmp_path, tiny_shards, random_init, config(labels="box", lr=1e-6))
    assert summary["steps"] == 3 and summary["lr"] == 1e-6 and summary["labels"] == "box"
    from stages.model import load

    net = load(str(d / "model.keras"))
    assert tuple(net.output["fused"].shape[-1:]) == (1,)
    loss_tsv = (d / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert loss_tsv[0].split("\t") == ["step", "loss"] and len(loss_tsv) == 4
    assert not (d / "live" / "dvc.yaml").exists()  # dvc.yaml stays hand-written


def test_nan_loss_stops_with_the_step(tmp_path, tiny_shards, random_init):
    with pytest.raises(train.NonFiniteLoss, match=r"at step \d+"):
        run(tmp_path, tiny_shards, random_init, config(optimizer="sgd", lr=1e30, steps=6))
    assert not (tmp_path / "run" / "model.keras").exists()


def test_other_params_start_afresh(tmp_path, tiny_shards, random_init, capsys):
    run(tmp_path, tiny_shards, random_init, config(steps=2))
    _, summary = run(tmp_path, tiny_shards, random_init, config(steps=3, lr=2e-4))
    assert summary["resumed_from_step"] is None


def test_raising_steps_continues_and_lowering_them_starts_over(tmp_path, tiny_shards, random_init):
    run(tmp_path, tiny_shards, random_init, config(steps=2))
    _, summary = run(tmp_path, tiny_shards, random_init, config(steps=4))
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4
    # Lowering them resumes from the newest checkpoint that is not beyond the new total (ckpt-2) ...
    _, summary = run(tmp_path, tiny_shards, random_init, config(steps=3))
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 3
    # ... and starts over when every kept checkpoint is beyond it.
    _, summary = run(tmp_path, tiny_shards, random_init, config(steps=1))
    assert summary["resumed_from_step"] is None and summary["steps"] == 1


def test_ema_saves_the_weight_average(tmp_path, tiny_shards, random_init):
    import numpy as np

    from stages.model import load

    # The average starts at the weights after the first update; with a momentum this close to 1 it
    # stays there, so the saved model is the one-step model although three steps were taken.
    # (SGD, because Adam's first step is about lr * sign(gradient) and thread-order noise flips signs.)
    sgd = {"optimizer": "sgd", "lr": 1e-2}
    one, _ = run(tmp_path, tiny_shards, random_init, config(steps=1, **sgd), tag="one")
    ema, _ = run(tmp_path, tiny_shards, random_init, config(steps=3, ema=1 - 1e-9, **sgd), tag="ema")
    raw, _ = run(tmp_path, tiny_shards, random_init, config(steps=3, **sgd), tag="raw")
    w1, we, wr = (load(str(d / "model.keras")).get_layer("fused").get_weights()[0] for d in (one, ema, raw))
    assert np.abs(w1).max() > 0  # the first step moved the zero-initialised head
    assert np.abs(we - w1).max() < 1e-3 * np.abs(wr - w1).max()


def test_killed_training_resumes_from_checkpoint(tmp_path, tiny_shards, random_init):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["train"].update(TINY, steps=40, checkpoint_every=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    d = tmp_path / "out"
    cmd = [sys.executable, "-m", "stages.train", "--params", str(tmp_path / "params.yaml"), "--shards", str(tiny_shards),
           "--init", str(random_init), "--out", str(d / "model.keras"), "--checkpoints", str(d / "ckpt"),
           "--live", str(d / "live"), "--metrics", str(d / "train.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((d / "ckpt").glob("ckpt-*.index")):
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "model.keras").exists(), "training should have been killed before the end"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stdout
    summary = json.loads((d / "train.json").read_text())
    assert summary["steps"] == 40 and summary["resumed_from_step"] >= 3
    steps = [int(line.split("\t")[0]) for line in (d / "live/plots/metrics/loss.tsv").read_text().splitlines()[1:]]
    assert steps[-1] == 40


def test_grabcut_i_without_votes_says_which_param_to_set(tmp_path, tiny_shards, random_init):
    with pytest.raises(SystemExit, match="labels.consensus_runs"):
        run(tmp_path, tiny_shards, random_init, config(labels="grabcut_i"))


def test_bad_consensus_thresholds_are_named():
    with pytest.raises(SystemExit, match="consensus_bg"):
        config(consensus_fg=0.2, consensus_bg=0.7)
