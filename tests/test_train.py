import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, edit, train_cfg, write_params
from wss import config
from wss.core import provenance
from wss.errors import ConfigError, StageInputError
from wss.net import hooks, training
from wss.net.model import load

TINY = {"steps": 3, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "shuffle_buffer": 8}


def tiny(**over) -> config.TrainConfig:
    return train_cfg(**{**TINY, **over})


def test_lr_set_by_dvc_exp_reaches_code_as_float():
    # `dvc exp run -S train.lr=1e-6` writes `lr: 1e-06`.
    p = config.loads("lr: 1e-06\nlr_boundaries: [2]\nlr_factors: [1, 1e-1]\n")
    cfg = tiny(**p)
    assert cfg.lr == 1e-6 and isinstance(cfg.lr, float)
    assert cfg.lr_factors == (1.0, 0.1) and cfg.lr_boundaries == (2,)


@pytest.mark.parametrize(
    "over,match",
    [
        ({"labels": "scribbles"}, "train.labels"),
        ({"steps": -5}, "train.steps must be >= 1, not -5"),
        ({"steps": 0}, "train.steps must be >= 1"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"accum_steps": 0}, "train.accum_steps"),
        ({"lr": 0.0}, "train.lr must be > 0"),
        ({"lr_boundaries": [10], "lr_factors": [1.0]}, "lr_factors"),
        ({"lr_boundaries": [20, 10], "lr_factors": [1.0, 0.1, 1.0]}, "train.lr_boundaries must be increasing"),
        ({"side_boundaries": [10], "side_weights": [1.0]}, "side_weights"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"ema": 1.0}, "train.ema"),
        ({"precision": "float64"}, "train.precision must be one of auto, float32"),
        ({"devices": 0}, "train.devices must be auto or a number"),
        ({"devices": "all"}, "train.devices must be auto or a number"),
        ({"learning_rate": 1.0}, "unknown keys"),
        ({"votes_fg": 0.2, "votes_bg": 0.7}, "votes_bg"),
        ({"box_i_core": 0.0}, "train.box_i_core"),
        ({"iou_weight": -1.0}, "train.iou_weight must be >= 0"),
        ({"checkpoints_kept": 0}, "train.checkpoints_kept"),
        ({"jit_compile": True, "deterministic": True}, "deterministic: false with XLA"),
    ],
)
def test_bad_params_are_named(over, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**over)


def test_a_bad_value_stops_the_stage_before_any_work(tmp_path):
    write_params(tmp_path / "params.yaml", train={"steps": -5})
    from stages import train as stage

    # The shards do not exist: had the stage started, it would fail on them instead.
    with pytest.raises(ConfigError, match="train.steps must be >= 1"):
        stage.main(["--params", str(tmp_path / "params.yaml"), "--shards", str(tmp_path / "none")])


def test_piecewise_schedule():
    b, v = (10, 15, 25), (1.0, 0.1, 1.0, 0.1)
    assert [hooks.piecewise(s, b, v) for s in (0, 9, 10, 14, 15, 30)] == [1.0, 1.0, 0.1, 0.1, 1.0, 0.1]


def test_warm_up_then_cosine_decay_to_zero_at_the_last_step():
    cfg = tiny(steps=110, lr_warmup=10, lr_decay="cosine", lr_boundaries=(), lr_factors=(1.0,))
    f = [hooks.lr_factor(s, cfg) for s in range(110)]
    assert f[:3] == pytest.approx([0.1, 0.2, 0.3]) and f[9] == pytest.approx(1.0)  # linear ramp
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5)  # half way down the cosine
    assert f[109] == pytest.approx(0.5 * (1 + np.cos(np.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # falls all the way
    # The piecewise factors multiply in; without decay the lr stays after the warm-up.
    flat = tiny(steps=110, lr_warmup=10, lr_decay="none", lr_boundaries=(50,), lr_factors=(1.0, 0.1))
    assert [hooks.lr_factor(s, flat) for s in (4, 20, 60, 109)] == pytest.approx([0.5, 1.0, 0.1, 0.1])


def test_with_a_decay_the_steps_shape_the_weights_and_enter_the_fingerprint(tiny_shards, random_init):
    from wss.labels import shards

    manifest = shards.read_manifest(tiny_shards)

    def fp(**over):
        return training.fingerprint(tiny(**over), 1, manifest, random_init)

    assert fp(steps=3, lr_decay="none") == fp(steps=30, lr_decay="none")  # a constant lr: more steps continue
    assert fp(steps=3, lr_decay="cosine") != fp(steps=30, lr_decay="cosine")


@pytest.mark.parametrize(
    ("isa", "auto", "bf16"),
    [("", "mixed_bfloat16", True), ("AVX512_CORE", "float32", True), ("avx2", "float32", False)],
)
def test_an_isa_cap_makes_the_cpu_one_without_bfloat16(monkeypatch, tmp_path, isa, auto, bf16):
    """``ONEDNN_MAX_CPU_ISA`` measures a CPU without AMX/BF16 on one that has it: ``auto`` follows the
    cap, and forcing bfloat16 where oneDNN has no bfloat16 convolution says what to set."""
    from wss.errors import SetupError

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16\n")
    monkeypatch.setattr(training, "CPUINFO", cpuinfo)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert training.resolve_precision("auto", gpu=False) == auto
    assert training.resolve_precision("float32", gpu=False) == "float32"
    if bf16:
        assert training.resolve_precision("mixed_bfloat16", gpu=False) == "mixed_bfloat16"
    else:
        with pytest.raises(SetupError, match="needs AVX-512 .* set train.precision: auto or float32"):
            training.resolve_precision("mixed_bfloat16", gpu=False)


def test_cpu_flags_are_whole_words(monkeypatch, tmp_path):
    """``avx512fp16`` is not ``avx512f``, and a flag in another line (a model name) is no flag."""
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(training, "CPUINFO", cpuinfo)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo.write_text("model name\t: avx512f marketing\nflags\t\t: fpu avx2 avx512fp16 avx512_bf16x\n")
    assert not training.cpu_runs_bf16() and not training.cpu_has_bf16()
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert training.cpu_runs_bf16() and training.cpu_has_bf16()


def run(tmp_path, shards_dir, init, cfg, tag="run"):
    d = tmp_path / tag
    summary = training.train(cfg, shards_dir, init, d / "model.keras", d / "ckpt", d / "live", seed=1)
    return d, summary


def weights(d):
    return load(str(d / "model.keras")).get_weights()


def assert_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_short_training_writes_model_curves_and_summary(tmp_path, tiny_shards, random_init):
    d, summary = run(tmp_path, tiny_shards, random_init, tiny(labels="box", lr=1e-6))
    assert summary["steps"] == 3 and summary["lr"] == 1e-6 and summary["labels"] == "box"
    assert np.isfinite(summary["final_loss"])
    net = load(str(d / "model.keras"))
    assert tuple(net.output["fused"].shape[-1:]) == (1,)
    loss_tsv = (d / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert loss_tsv[0].split("\t") == ["step", "loss"] and [r.split("\t")[0] for r in loss_tsv[1:]] == ["1", "2", "3"]
    assert float(loss_tsv[-1].split("\t")[1]) == pytest.approx(summary["final_loss"], abs=1e-6)
    assert not (d / "live" / "dvc.yaml").exists()  # dvc.yaml stays hand-written


def test_nan_loss_stops_with_the_step(tmp_path, tiny_shards, random_init):
    with pytest.raises(hooks.NonFiniteLoss, match=r"at step \d+"):
        run(tmp_path, tiny_shards, random_init, tiny(optimizer="sgd", lr=1e30, steps=6))
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
def test_other_params_start_afresh(tmp_path, tiny_shards, random_init):
    run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=3, lr=2e-4))
    assert summary["resumed_from_step"] is None


@pytest.mark.slow
def test_a_comment_resumes_and_a_code_or_library_change_starts_over(
    tmp_path, tiny_shards, random_init, project_copy, monkeypatch
):
    """Checkpoints follow the code as parsed (a comment keeps them) and the TensorFlow/Keras versions."""
    assert "wss/net/model.py" in {str(p) for p in provenance.closure(training.__name__)}
    d, first = run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    model = project_copy / "wss/net/model.py"
    edit(model, "BOX_SCALE = 127.5", "# the spread of the colour channels\nBOX_SCALE = 127.5")
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    assert summary["resumed_from_step"] == 2, "a comment made the checkpoints stale"
    edit(model, "BOX_SCALE = 127.5", "BOX_SCALE = 127.0")
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    assert summary["resumed_from_step"] is None and summary["steps"] == 2
    assert np.isfinite(summary["final_loss"]) and summary["final_loss"] == first["final_loss"]
    assert len((d / "live/plots/metrics/loss.tsv").read_text().splitlines()) == 3
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    assert summary["resumed_from_step"] == 2
    real = provenance.metadata.version
    monkeypatch.setattr(provenance.metadata, "version", lambda d: "9.9.9" if d == "keras" else real(d))
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=2))
    assert summary["resumed_from_step"] is None


@pytest.mark.slow
def test_resume_with_no_steps_left_gives_the_same_model_and_finite_metrics(tmp_path, tiny_shards, random_init):
    d, first = run(tmp_path, tiny_shards, random_init, tiny())
    w1 = weights(d)
    _, again = run(tmp_path, tiny_shards, random_init, tiny())
    assert again["resumed_from_step"] == 3 and again["steps"] == 3
    assert again["final_loss"] == first["final_loss"] and np.isfinite(again["final_loss"])
    assert again["images_per_s"] is None
    assert_identical(weights(d), w1)
    steps = [r.split("\t")[0] for r in (d / "live/plots/metrics/loss.tsv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3"]  # the curve is rebuilt from the log kept with the checkpoints


@pytest.mark.slow
def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(tmp_path, tiny_shards, random_init):
    # A constant lr, so that a run of 2 steps is the start of one of 5 (a cosine decay depends on the end).
    flat = {"checkpoint_every": 10, "lr_decay": "none"}
    straight, s1 = run(tmp_path, tiny_shards, random_init, tiny(steps=5, **flat), tag="straight")
    run(tmp_path, tiny_shards, random_init, tiny(steps=2, **flat), tag="resumed")
    resumed, s2 = run(tmp_path, tiny_shards, random_init, tiny(steps=5, **flat), tag="resumed")
    assert s2["resumed_from_step"] == 2
    assert_identical(weights(resumed), weights(straight))
    assert s2["final_loss"] == s1["final_loss"]


@pytest.mark.slow
def test_lowering_steps_resumes_from_a_kept_checkpoint_or_starts_over(tmp_path, tiny_shards, random_init):
    run(tmp_path, tiny_shards, random_init, tiny(steps=4, lr_decay="none"))
    # The newest checkpoint that is not beyond the new total (ckpt-2) ...
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=3, lr_decay="none"))
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 3
    # ... or from scratch when every kept checkpoint is beyond it.
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=1, lr_decay="none"))
    assert summary["resumed_from_step"] is None and summary["steps"] == 1
    # With a cosine decay, other steps are another run: it starts over.
    run(tmp_path, tiny_shards, random_init, tiny(steps=2, lr_decay="cosine"), tag="cosine")
    _, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=3, lr_decay="cosine"), tag="cosine")
    assert summary["resumed_from_step"] is None and summary["steps"] == 3


@pytest.mark.slow
def test_ema_saves_the_weight_average(tmp_path, tiny_shards, random_init):
    # The average starts at the weights after the first update; with a momentum this close to 1 it
    # stays there, so the saved model is the one-step model although three steps were taken.
    sgd = {"optimizer": "sgd", "lr": 1e-2}
    one, _ = run(tmp_path, tiny_shards, random_init, tiny(steps=1, ema=0.0, **sgd), tag="one")
    ema, _ = run(tmp_path, tiny_shards, random_init, tiny(steps=3, ema=1 - 1e-9, **sgd), tag="ema")
    raw, _ = run(tmp_path, tiny_shards, random_init, tiny(steps=3, ema=0.0, **sgd), tag="raw")
    w1, we, wr = (load(str(d / "model.keras")).get_layer("fused").get_weights()[0] for d in (one, ema, raw))
    assert np.abs(w1).max() > 0  # the first step moved the zero-initialised head
    assert np.abs(we - w1).max() < 1e-3 * np.abs(wr - w1).max()


def test_accumulating_k_batches_is_one_batch_of_k_times_the_size(random_init):
    """One update of accum_steps=2 x batch 2 equals one update of batch 4 (SGD, no momentum)."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(0, 60, (4, 32, 32, 4)).astype(np.float32)
    y = (rng.random((4, 32, 32)) < 0.4).astype(np.float32)
    y[1, :4] = 255  # VOID pixels take part in neither
    after = []
    for accum, batch in ((1, 4), (2, 2)):
        cfg = tiny(optimizer="sgd", lr=1.0, momentum=0.0, ema=0.0, accum_steps=accum, batch_size=batch)
        keras.utils.set_random_seed(0)  # the same side-output initialisation for both
        net, opt = training.build(cfg, random_init)
        step = training.make_train_step(net, opt, cfg, tf.Variable(1.0, trainable=False))
        loss, _ = step(tf.constant(x.reshape(accum, batch, 32, 32, 4)), tf.constant(y.reshape(accum, batch, 32, 32)))
        after.append((float(loss), [w.numpy() for w in net.trainable_variables]))
    keras.utils.set_random_seed(0)
    start = [w.numpy() for w in training.build(cfg, random_init)[0].trainable_variables]
    assert after[0][0] == pytest.approx(after[1][0], rel=1e-5)
    moved = max(np.abs(a - s).max() for a, s in zip(after[0][1], start))
    assert moved > 1e-4  # the update did something
    for a, b, s in zip(after[0][1], after[1][1], start):
        np.testing.assert_allclose(a - s, b - s, rtol=1e-3, atol=1e-5 * moved)


NO_BOX_TERMS = {"projection_weight": 0.0, "pairwise_weight": 0.0}  # the loss is the labels' alone


def test_iou_weight_adds_the_soft_iou_of_the_fused_output_to_the_loss(random_init):
    import keras
    import tensorflow as tf

    from wss.net.model import SIDES, per_image_bce, per_image_soft_iou

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(0, 60, (1, 2, 32, 32, 4)).astype(np.float32))
    y = tf.constant((rng.random((1, 2, 32, 32)) < 0.4).astype(np.float32))
    losses = {}
    for w in (0.0, 2.0):
        cfg = tiny(optimizer="sgd", lr=1e-3, momentum=0.0, ema=0.0, batch_size=2, iou_weight=w, **NO_BOX_TERMS)
        keras.utils.set_random_seed(0)
        net, opt = training.build(cfg, random_init)
        out = net(x[0], training=True)  # no dropout or batch norm: the step's forward pass is this one
        bce = {
            k: float(tf.reduce_mean(per_image_bce(y[0], out[k], cfg.loss_reduction, cfg.class_balance)))
            for k in ("fused", *SIDES)
        }
        iou = float(tf.reduce_mean(per_image_soft_iou(y[0], out["fused"])))
        loss, fused = training.make_train_step(net, opt, cfg, tf.Variable(1.0, trainable=False))(x, y)
        losses[w] = (float(loss), float(fused))
        assert float(fused) == pytest.approx(bce["fused"] + w * iou, rel=1e-5)
        assert float(loss) == pytest.approx(sum(bce.values()) + w * iou, rel=1e-5)
    assert iou > 0.1 and losses[2.0][1] > losses[0.0][1] + 0.2


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_saves_a_float32_model(tmp_path, tiny_shards, random_init, precision):
    import keras

    d, summary = run(tmp_path, tiny_shards, random_init, tiny(steps=1, precision=precision))
    assert summary["precision"] == precision
    assert np.isfinite(summary["final_loss"])
    assert keras.mixed_precision.global_policy().name == "float32"  # not left behind for the process
    net = load(str(d / "model.keras"))
    for layer in net._flatten_layers(include_self=False):
        assert layer.dtype_policy.name == "float32", layer.name
        assert all(w.dtype == "float32" for w in layer.weights), layer.name


@pytest.mark.slow
def test_xla_trains_on_cpu(tmp_path, tiny_shards, random_init):
    cfg = tiny(steps=2, jit_compile=True, deterministic=False, accum_steps=2)
    _, summary = run(tmp_path, tiny_shards, random_init, cfg)
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path, tiny_shards, random_init):
    write_params(tmp_path / "params.yaml", train={**TINY, "steps": 30, "checkpoint_every": 3})

    def cmd(d):
        return [
            sys.executable,
            "-m",
            "stages.train",
            "--params",
            str(tmp_path / "params.yaml"),
            "--shards",
            str(tiny_shards),
            "--init",
            str(random_init),
            "--out",
            str(d / "model.keras"),
            "--checkpoints",
            str(d / "ckpt"),
            "--live",
            str(d / "live"),
            "--metrics",
            str(d / "train.json"),
        ]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    d = tmp_path / "out"
    proc = subprocess.Popen(
        cmd(d), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((d / "ckpt").glob("ckpt-*.index")):
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "model.keras").exists(), "training should have been killed before the end"
    res = subprocess.run(cmd(d), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stdout
    summary = json.loads((d / "train.json").read_text())
    assert summary["steps"] == 30 and summary["resumed_from_step"] >= 3
    steps = [int(line.split("\t")[0]) for line in (d / "live/plots/metrics/loss.tsv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 31))  # the whole curve, once

    ref = tmp_path / "ref"
    subprocess.run(cmd(ref), env=env, capture_output=True, check=True)
    assert_identical(weights(d), weights(ref))
    assert json.loads((ref / "train.json").read_text())["final_loss"] == summary["final_loss"]


def test_grabcut_i_without_votes_says_which_param_to_set(tmp_path, tiny_shards, random_init):
    with pytest.raises(StageInputError, match="labels.vote_runs"):
        run(tmp_path, tiny_shards, random_init, tiny(labels="teacher_i"))
