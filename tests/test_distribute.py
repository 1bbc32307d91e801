"""Training on several devices (MirroredStrategy), tested on CPU with two logical devices.

Logical devices must be made before TensorFlow starts, so each check runs in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_TRAIN, write_params

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

ONE_STEP = r"""
import json, sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.conftest import train_cfg
from wss.net import training

rng = np.random.default_rng(0)
x = rng.normal(0, 60, (1, 4, 32, 32, 4)).astype(np.float32)   # one update: accum 1 x global batch 4
y = (rng.random((1, 4, 32, 32)) < 0.4).astype(np.float32)
y[0, 1, :4] = 255  # VOID pixels
out = {}
for name, replicas in (("one", 1), ("two", 2)):
    cfg = train_cfg(optimizer="sgd", lr=1.0, momentum=0.0, ema=0.0, batch_size=4 // replicas, precision="float32")
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"]) if replicas > 1 else None
    with strategy.scope() if strategy else tf.device("/CPU:0"):
        keras.utils.set_random_seed(0)  # the same side-output initialisation for both
        net, opt = training.build(cfg, sys.argv[1])
        side_w = tf.Variable(1.0, trainable=False)
    start = [w.numpy() for w in net.trainable_variables]
    step = training.make_train_step(net, opt, cfg, side_w, strategy)
    loss, fused = step(tf.constant(x), tf.constant(y))
    n = strategy.num_replicas_in_sync if strategy else 1
    out[name] = {"loss": float(loss), "fused": float(fused), "replicas": n}
    np.savez(sys.argv[2] + f"/{name}.npz", *[w.numpy() - s for w, s in zip(net.trainable_variables, start)])
print(json.dumps(out))
"""


def test_one_step_on_two_replicas_is_one_step_on_the_global_batch(tmp_path, random_init):
    res = subprocess.run(
        [sys.executable, "-c", ONE_STEP, str(random_init), str(tmp_path)],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["two"]["replicas"] == 2 and got["one"]["replicas"] == 1
    assert abs(got["two"]["loss"] - got["one"]["loss"]) < 1e-5 * abs(got["one"]["loss"])
    assert abs(got["two"]["fused"] - got["one"]["fused"]) < 1e-5 * abs(got["one"]["fused"])
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    moved = max(np.abs(one[k]).max() for k in one.files)
    assert moved > 1e-4  # the update did something
    for k in one.files:
        # Both replicas' gradients reached every weight: half a batch's gradient would miss by ~50%.
        np.testing.assert_allclose(two[k], one[k], rtol=1e-3, atol=1e-5 * moved, err_msg=k)


def _stage(tmp_path, tiny_shards, init, tag: str, steps: int, ckpt: str = "ckpt") -> dict:
    params = write_params(
        tmp_path / f"params-{tag}.yaml",
        # A constant lr: the run of 2 steps is the start of the run of 4, which resumes from it.
        train={**TINY_TRAIN, "steps": steps, "devices": "2", "checkpoint_every": 2, "precision": "float32"}
        | {"lr_decay": "none"},
    )
    d = tmp_path / tag
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--params",
            str(params),
            "--shards",
            str(tiny_shards),
            "--init",
            str(init),
            "--out",
            str(d / "model.keras"),
            "--checkpoints",
            str(tmp_path / ckpt),
            "--live",
            str(d / "live"),
            "--metrics",
            str(d / "train.json"),
        ],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 replicas (/CPU:0, /CPU:1)" in res.stdout
    return json.loads((d / "train.json").read_text())


def test_the_train_stage_on_two_replicas_resumes_to_the_same_weights(tmp_path, tiny_shards, random_init):
    import keras

    whole = _stage(tmp_path, tiny_shards, random_init, "whole", steps=4, ckpt="ckpt-whole")
    assert whole["replicas"] == 2 and whole["steps"] == 4
    part = _stage(tmp_path, tiny_shards, random_init, "part", steps=2)
    assert part["steps"] == 2 and part["resumed_from_step"] is None
    rest = _stage(tmp_path, tiny_shards, random_init, "rest", steps=4)
    assert rest["resumed_from_step"] == 2 and rest["steps"] == 4
    a = keras.saving.load_model(tmp_path / "whole" / "model.keras", compile=False)
    b = keras.saving.load_model(tmp_path / "rest" / "model.keras", compile=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # The saved model is a plain one-device model: it predicts without a strategy.
    assert all("Mirrored" not in type(v).__name__ for v in a.weights)
