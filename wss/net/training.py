"""Training the OSVOS parent network on 4-channel crops: the ``train`` stage's work.

Reads the HDF5 shards through :mod:`wss.net.inputs`, starts from the surgery trunk and saves the model
with a sidecar (:func:`sidecar`) that records the crop transform.

**Steps count optimizer updates.**  One update consumes ``accum_steps`` batches of ``batch_size``
and averages their gradients, so it is the update of one batch of ``accum_steps * batch_size``;
``steps``, the lr and side-weight boundaries, checkpoint and log cadence and the weight average
all count updates (OSVOS: 50,000 updates of 10 accumulated batches of 1).

**Checkpoints** (``--checkpoints``, ``persist``-ed by DVC) carry a fingerprint of everything that
shapes the weights: the params (but ``steps`` and the cadences), the seed, the shards, the init
weights and the source of every project module the train stage runs (:mod:`wss.core.provenance`).  A
different fingerprint starts over from step 0; the same one resumes from the last checkpoint and
skips exactly the data already consumed, so a killed run ends with the weights of an
uninterrupted one.  Raising ``steps`` continues; lowering it resumes from the newest kept
checkpoint at or below the new total, or starts over.  The loss log lives next to the
checkpoints, so the curves and ``final_loss`` survive a resume (even one with no steps left).
A NaN or Inf loss stops the run with the step where it happened.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

from wss.config import TrainConfig
from wss.core import atomic, provenance
from wss.errors import SetupError, StageInputError, WssError
from wss.labels import shards
from wss.net import model

STAGE = "stages.train"  # its code (see wss.core.provenance) goes into the checkpoint fingerprint
PACKAGES = ("tensorflow", "keras", "numpy", "h5py")  # ... and the versions of what computes the weights
HISTORY = "history.tsv"  # the loss log, next to the checkpoints
# Params that change when or how much is saved or logged, not the weights of a given step.
# "rounds" too: round 1 of a self-training run is the run without self-training, and resumes from it.
NOT_WEIGHTS = ("steps", "log_every", "checkpoint_every", "checkpoints_kept", "rounds")
LOGGED = ("loss", "loss_fused", "lr", "side_weight")


def piecewise(step: int, boundaries: tuple[int, ...], values: tuple[float, ...]) -> float:
    """``values[i]`` for the ``i``-th interval of ``boundaries`` that ``step`` falls in."""
    return float(values[sum(step >= b for b in boundaries)])


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class NonFiniteLoss(WssError):
    pass


def build(cfg: TrainConfig, init: Path):
    """The OSVOS network on the surgery trunk ``init``, and its optimizer (built, so checkpoints match)."""
    import keras

    from wss.net.model import osvos, vgg16_trunk

    trunk = vgg16_trunk(4)
    trunk.load_weights(str(init))
    net = osvos(trunk, cfg.side_channels)
    ema = {"use_ema": cfg.ema > 0, "ema_momentum": cfg.ema or 0.99}
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay or None, **ema)
    else:
        opt = keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay, **ema)
    if keras.mixed_precision.global_policy().name == "mixed_float16":  # float16 underflows without it
        opt = keras.optimizers.LossScaleOptimizer(opt)
    opt.build(net.trainable_variables)
    return net, opt


def make_train_step(net, opt, cfg: TrainConfig, side_w, strategy=None):
    """One compiled optimizer update on ``(x, y)`` of shape ``(accum_steps, global batch, ...)``:
    the gradients of the ``accum_steps`` batches are averaged, then applied once.  The loss is the
    fused loss plus ``side_w`` times the side losses; ``cfg.iou_weight`` > 0 adds that times the
    fused output's soft-IoU loss to the fused loss.  Returns (loss, fused loss), batch means.

    Under a ``tf.distribute`` ``strategy`` each replica takes its own slice of the global batch
    and scales its loss by the global batch (``tf.nn.compute_average_loss``); the optimizer sums
    the replicas' gradients, so an update equals one device's update on the whole global batch.
    """
    import keras
    import tensorflow as tf

    from wss.net.model import SIDES, per_image_bce, per_image_soft_iou

    strategy = strategy or tf.distribute.get_strategy()
    n_rep = strategy.num_replicas_in_sync
    scale_loss = isinstance(opt, keras.optimizers.LossScaleOptimizer)

    def grads_of(x, y, global_batch):
        with tf.GradientTape() as tape:
            out = net(x, training=True)
            losses = {k: per_image_bce(y, out[k], cfg.loss_reduction, cfg.class_balance) for k in ("fused", *SIDES)}
            if cfg.iou_weight:  # a Python branch: at 0 the graph, and so the weights, are the plain loss's
                losses["fused"] = losses["fused"] + cfg.iou_weight * per_image_soft_iou(y, out["fused"])
            fused = tf.nn.compute_average_loss(losses["fused"], global_batch_size=global_batch)
            side = tf.nn.compute_average_loss(tf.add_n([losses[k] for k in SIDES]), global_batch_size=global_batch)
            loss = fused + side_w * side
            scaled = opt.scale_loss(loss) if scale_loss else loss
        return tape.gradient(scaled, net.trainable_variables), loss, fused

    @tf.function(jit_compile=cfg.jit_compile, reduce_retracing=True)
    def replica_step(x, y):
        global_batch = tf.shape(x)[1] * n_rep
        grads, loss, fused = grads_of(x[0], y[0], global_batch)
        for k in range(1, cfg.accum_steps):  # unrolled: accum_steps is a small constant
            g, l, f = grads_of(x[k], y[k], global_batch)  # noqa: E741 (gradients, loss, fused loss)
            grads = [a + b for a, b in zip(grads, g)]
            loss, fused = loss + l, fused + f
        if cfg.accum_steps > 1:
            grads = [g / cfg.accum_steps for g in grads]
        opt.apply(grads, net.trainable_variables)  # sums the replicas' gradients
        return loss / cfg.accum_steps, fused / cfg.accum_steps

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        def mine(ctx):  # this replica's slice of the global batch: the stream is the one-device stream
            per = tf.shape(x)[1] // ctx.num_replicas_in_sync
            lo = ctx.replica_id_in_sync_group * per
            return x[:, lo : lo + per], y[:, lo : lo + per]

        xs = strategy.experimental_distribute_values_from_function(lambda ctx: mine(ctx)[0])
        ys = strategy.experimental_distribute_values_from_function(lambda ctx: mine(ctx)[1])
        loss, fused = strategy.run(replica_step, args=(xs, ys))
        red = tf.distribute.ReduceOp.SUM
        return strategy.reduce(red, loss, axis=None), strategy.reduce(red, fused, axis=None)

    return train_step


def resolve_precision(precision: str, gpu: bool) -> str:
    """The Keras dtype policy for ``train.precision``.  ``auto`` takes the half-precision type the
    hardware computes natively: ``mixed_float16`` on a GPU with tensor cores (compute capability
    >= 7.0), ``mixed_bfloat16`` on a CPU with AMX or AVX-512 BF16 (oneDNN runs bf16 convolutions
    there at about twice the float32 rate), ``float32`` elsewhere."""
    if precision != "auto":
        return precision
    if gpu:
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return "mixed_float16" if details.get("compute_capability", (0, 0)) >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def cpu_has_bf16() -> bool:
    """Whether this (Linux) CPU computes bfloat16 natively: AMX or AVX-512 BF16."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def replica_devices(cfg: TrainConfig, gpus: int) -> list[str]:
    """The devices ``train.devices`` trains on: all GPUs for ``auto`` (at least one device), else the
    first ``devices`` GPUs, or, on a machine without GPUs (or ``train.device: cpu``), ``devices``
    logical CPUs split off the one CPU (slower than one replica; it exercises the multi-device path)."""
    import tensorflow as tf

    use_gpu = gpus > 0 and cfg.device != "cpu"
    n = (gpus if use_gpu else 1) if cfg.devices == "auto" else int(cfg.devices)
    kind = "GPU" if use_gpu else "CPU"
    if n > 1 and kind == "CPU":
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:  # the runtime is up (a notebook, a test): use the logical devices it has
            pass
    have = len(tf.config.list_logical_devices(kind))
    if n > have:
        raise SetupError(f"train.devices is {n}, and TensorFlow has {have} {kind} device(s) here")
    return [f"/{kind}:{i}" for i in range(max(n, 1))]


def fingerprint(
    cfg: TrainConfig, seed: int, manifest: dict, init: Path, replicas: int = 1, policy: str = "float32"
) -> str:
    """Hash of everything that shapes the weights at a given step (module docstring): with the
    replica count (the global batch) and the dtype policy that ``devices`` and ``precision`` resolve to."""
    weights_params = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in NOT_WEIGHTS}
    weights_params.update(devices=replicas, precision=policy)
    return shards.fingerprint(
        weights_params,
        seed,
        manifest["params_fingerprint"],
        [s["fingerprint"] for s in manifest["shards"]],
        _digest(init),
        provenance.digest(STAGE, PACKAGES),
    )


def read_history(path: Path, upto: int) -> list[dict]:
    """Rows of the loss log with ``step <= upto`` (a torn last line from a kill is dropped)."""
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                try:
                    parsed = {"step": int(row["step"]), **{k: float(row[k]) for k in LOGGED}}
                except (TypeError, ValueError, KeyError):
                    continue
                if parsed["step"] <= upto:
                    rows.append(parsed)
    return rows


def write_history(path: Path, rows: list[dict]) -> None:
    atomic.write_text(path, "\t".join(("step",) + LOGGED) + "\n" + "".join(_history_line(r) for r in rows))


def _history_line(row: dict) -> str:
    return "\t".join([str(row["step"])] + [repr(row[k]) for k in LOGGED]) + "\n"


def train_rounds(
    cfg: TrainConfig, shard_dir: Path, init: Path, out: Path, ckpt_dir: Path, live_dir: Path, seed: int
) -> dict:
    """:func:`train`, then ``cfg.rounds - 1`` rounds of self-training (:mod:`wss.net.selftrain`), each
    from ``init`` again on the previous round's model's relabelling; the last round's model is saved
    to ``out``.  Round 1 keeps its checkpoints in ``ckpt_dir`` (a run with ``rounds: 1`` resumes
    into it), round ``r`` in ``ckpt_dir/round-r`` with its model and relabelled shards beside."""
    from wss.net import model, selftrain

    summary = train(
        cfg, shard_dir, init, out if cfg.rounds == 1 else ckpt_dir / "round-1.keras", ckpt_dir, live_dir, seed
    )
    rounds = [summary]
    source, shards_in = cfg.labels, shard_dir
    for r in range(2, cfg.rounds + 1):
        relabelled = ckpt_dir / f"round-{r}-shards"
        net = model.load(str(ckpt_dir / f"round-{r - 1}.keras"))
        stats = selftrain.relabel(
            net, shards_in, relabelled, source, cfg.consensus_fg, cfg.consensus_bg, cfg.box_i_core, cfg.holdout
        )
        print(f"train: round {r}: self labels from round {r - 1}'s model, {stats}")
        source, shards_in = "self", relabelled
        last = r == cfg.rounds
        summary = train(
            dataclasses.replace(cfg, labels="self"),
            relabelled,
            init,
            out if last else ckpt_dir / f"round-{r}.keras",
            ckpt_dir / f"round-{r}",
            live_dir,
            seed,
        )
        rounds.append({**summary, "self_labels": stats})
    if cfg.rounds == 1:
        return summary
    return {
        **summary,
        "labels": cfg.labels,
        "rounds": cfg.rounds,
        "per_round": [
            {k: v for k, v in s.items() if k in ("final_loss", "self_labels", "images_per_s")} for s in rounds
        ],
    }


def train(cfg: TrainConfig, shard_dir: Path, init: Path, out: Path, ckpt_dir: Path, live_dir: Path, seed: int) -> dict:
    """Train and save the model to ``out``; return the summary metrics."""
    import keras
    import numpy as np
    import tensorflow as tf
    from dvclive import Live
    from tqdm import tqdm

    from wss.net import inputs

    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        raise SetupError("train.device is gpu, but TensorFlow sees no GPU (install tensorflow[and-cuda])")
    devices = replica_devices(cfg, len(gpus))
    device, replicas = devices[0], len(devices)
    policy = resolve_precision(cfg.precision, device.startswith("/GPU"))
    manifest = shards.read_manifest(shard_dir)
    side = int(manifest["crop_size"])
    files, val_files = inputs.training_files(shard_dir, cfg.holdout)
    if not files:
        raise StageInputError(
            f"{shard_dir} has no train shards, and no val instance without a ground-truth mask "
            f"(train.holdout: {cfg.holdout})"
        )
    if cfg.labels == "teacher_i" and not manifest.get("consensus_runs"):
        raise StageInputError(
            "train.labels=teacher_i needs the jittered GrabCut votes; set labels.consensus_runs > 0 "
            "in params.yaml and run the labels stage"
        )
    if cfg.labels == "gt" and not manifest["with_masks"]["train"]:
        raise StageInputError(
            f"train.labels=gt needs ground-truth masks, and none of the {manifest['counts']['train']} "
            f"train instances has one (a boxes-only dataset); train on teacher or box labels"
        )
    counted = inputs.count(files, cfg, val=val_files)
    if not counted["used"]:
        raise StageInputError(
            f"every one of the {counted['instances']} instances training may read is left out: "
            f"{counted['fallbacks']} are GrabCut fallbacks (train.skip_fallbacks: true), "
            f"{counted['without_masks']} have no ground-truth mask and {counted['held_out']} are val "
            f"instances held out for scoring; set train.skip_fallbacks: false or train on other "
            f"labels"
        )
    fp = fingerprint(cfg, seed, manifest, init, replicas, policy)

    set_op_determinism(cfg.deterministic)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    # One device: the default strategy, pinned; several: MirroredStrategy, one replica per device,
    # each taking batch_size images of the global batch (batch_size * replicas).
    strategy = tf.distribute.MirroredStrategy(devices) if replicas > 1 else None
    placed = strategy.scope if strategy else lambda: tf.device(device)
    try:
        with placed():
            net, opt = build(cfg, init)
            step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
            side_w = tf.Variable(1.0, trainable=False)

        ckpt = tf.train.Checkpoint(model=net, optimizer=opt, step=step_var)
        manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=cfg.checkpoints_kept)
        stamp = ckpt_dir / "fingerprint.json"
        usable = [c for c in manager.checkpoints if int(c.rsplit("-", 1)[1]) <= cfg.steps]
        resumed = bool(usable) and stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fp
        if resumed:
            ckpt.restore(usable[-1]).assert_existing_objects_matched()
            print(f"train: resuming from {usable[-1]} at step {int(step_var.numpy())}")
        else:
            if ckpt_dir.exists():
                shutil.rmtree(ckpt_dir)
            ckpt_dir.mkdir(parents=True)
            atomic.write_json(stamp, {"fingerprint": fp})
        start = int(step_var.numpy())
        history = read_history(ckpt_dir / HISTORY, start)
        write_history(ckpt_dir / HISTORY, history)

        train_step = make_train_step(net, opt, cfg, side_w, strategy)
        global_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * replicas)
        per_update = cfg.accum_steps * global_cfg.batch_size
        ds = inputs.dataset(files, global_cfg, side, training=True, seed=seed, skip=start * per_update, val=val_files)
        if live_dir.exists():
            shutil.rmtree(live_dir)
        live = Live(str(live_dir), dvcyaml=False, resume=False, save_dvc_exp=False, report=None)
        live.log_params(
            {
                "lr": cfg.lr,
                "labels": cfg.labels,
                "steps": cfg.steps,
                "batch_size": cfg.batch_size,
                "accum_steps": cfg.accum_steps,
                "optimizer": cfg.optimizer,
                "device": device,
                "replicas": replicas,
                "precision": policy,
            }
        )
        for row in history:  # the curve so far, from the log kept with the checkpoints
            _log(live, row)
        print(f"train: {used_line(counted, manifest['counts'], cfg.holdout)}")
        on = f"{replicas} replicas ({', '.join(devices)})" if replicas > 1 else f"device {device}"
        print(
            f"train: {cfg.labels} labels, crop {side}, updates "
            f"{start}..{cfg.steps} of batch {cfg.batch_size} x {replicas} replicas x accum {cfg.accum_steps}, "
            f"{cfg.optimizer} lr {cfg.lr:g}, {on}, precision {policy}, XLA {cfg.jit_compile}"
        )

        t0, seen, window = time.perf_counter(), 0, []
        with (
            placed(),
            tqdm(total=cfg.steps, initial=start, desc="train", unit="step") as bar,
            open(ckpt_dir / HISTORY, "a") as log,
        ):
            for x, y in ds.take(max(cfg.steps - start, 0)):
                step = int(step_var.numpy())
                opt.learning_rate.assign(cfg.lr * piecewise(step, cfg.lr_boundaries, cfg.lr_factors))
                side_w.assign(piecewise(step, cfg.side_boundaries, cfg.side_weights))
                loss, fused = train_step(x, y)
                loss_v, fused_v = float(loss), float(fused)
                if not (np.isfinite(loss_v) and np.isfinite(fused_v)):
                    raise NonFiniteLoss(
                        f"train: loss is {loss_v} at step {step} (lr {float(opt.learning_rate.numpy()):g}); the "
                        f"last good checkpoint is kept. Lower train.lr or check the inputs."
                    )
                step_var.assign_add(1)
                seen += per_update
                window.append(loss_v)
                bar.update(1)
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    row = {
                        "step": done,
                        "loss": float(np.mean(window)),
                        "loss_fused": fused_v,
                        "lr": float(opt.learning_rate.numpy()),
                        "side_weight": float(side_w.numpy()),
                    }
                    log.write(_history_line(row))
                    log.flush()
                    history.append(row)
                    _log(live, row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    window = []
                if done % cfg.checkpoint_every == 0:
                    manager.save(checkpoint_number=done)
        seconds = time.perf_counter() - t0
        live.end()
        # The checkpoint keeps the raw weights, so that raising train.steps resumes the same trajectory.
        # (Not again when the loop just saved this step, or there was nothing left to train.)
        last = int(step_var.numpy())
        if not (manager.latest_checkpoint or "").endswith(f"-{last}"):
            manager.save(checkpoint_number=last)
        opt.finalize_variable_values(net.trainable_variables)  # the weight average, when train.ema > 0
        if policy != "float32" or strategy:
            net = _plain_copy(net, cfg)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with atomic.target(out) as tmp:
        net.save(str(tmp))
    # What predict needs to crop a new image exactly as the training crops were made.
    # ... and how many instances it learnt from, which says how far to trust it (wss.evaluation.trust).
    atomic.write_json(
        model.sidecar(out),
        {
            "crop_size": side,
            "context_margin": float(manifest["context_margin"]),
            "labels": cfg.labels,
            "instances_used": counted["used"],
        },
    )
    return {
        "labels": cfg.labels,
        "steps": last,
        "lr": float(cfg.lr),
        "batch_size": cfg.batch_size,
        "accum_steps": cfg.accum_steps,
        "final_loss": round(history[-1]["loss"], 6) if history else None,
        "images_per_s": round(seen / seconds, 3) if seen else None,
        "resumed_from_step": start if resumed else None,
        "device": device,
        "replicas": replicas,
        "precision": policy,
        "instances_used": counted["used"],
        "instances_left_out": manifest["counts"]["train"] + manifest["counts"]["val"] - counted["used"],
        "instances": instance_use(counted, manifest["counts"], cfg.holdout),
    }


def instance_use(counted: dict, totals: dict, holdout: str) -> dict:
    """What ``train.json`` says of the instances: how many of each split were learnt from, and why
    the others were not (``counted`` is :func:`wss.net.inputs.count`'s over the files training read,
    ``totals`` the shards' counts per split).  A val shard training did not read is held out whole."""
    held = totals["val"] - counted["val"] + counted["held_out"]
    return {
        "holdout": holdout,
        "train": {"used": counted["train_used"], "of": totals["train"]},
        "val": {"used": counted["val_used"], "of": totals["val"]},
        "left_out": {
            "grabcut_fallbacks": counted["fallbacks"],
            "without_masks": counted["without_masks"],
            "val_held_out": held,
        },
    }


def used_line(counted: dict, totals: dict, holdout: str) -> str:
    """One line saying which instances the network learns from, and why the others are left out."""
    use = instance_use(counted, totals, holdout)
    t, v, held = use["train"], use["val"], use["left_out"]["val_held_out"]
    why = (
        f"{held} val instances with a ground-truth mask are held out to score against"
        if holdout == "auto"
        else f"train.holdout: split keeps all {v['of']} val instances out"
    )
    left = [f"{counted['fallbacks']} GrabCut fallbacks (train.skip_fallbacks)"] if counted["fallbacks"] else []
    if counted["without_masks"]:
        left.append(f"{counted['without_masks']} without a ground-truth mask (train.labels: gt)")
    return (
        f"learning from {counted['used']} instances: {t['used']} of {t['of']} train and {v['used']} of {v['of']} "
        f"val; {why}" + (f"; left out: {', '.join(left)}" if left else "")
    )


def set_op_determinism(on: bool) -> None:
    """Deterministic TF kernels on or off for this process (bit-identical reruns and resumes).

    TF's public API can only switch them on; a process that trains twice (tests, notebooks) needs
    the off switch too, which lives next to the public one.
    """
    from tensorflow.python.framework import config as tf_config

    tf_config.enable_op_determinism() if on else tf_config.disable_op_determinism()


def _log(live, row: dict) -> None:
    live.step = row["step"]
    for k in LOGGED:
        live.log_metric(k, row[k])
    live.next_step()


def _plain_copy(net, cfg: TrainConfig):
    """A float32, one-device copy of a mixed-precision or replicated network, so the saved model
    runs anywhere at full precision (a model built under a mixed policy keeps it in every layer it
    saves, and one built under a strategy holds mirrored variables)."""
    import keras

    from wss.net.model import osvos, vgg16_trunk

    keras.mixed_precision.set_global_policy("float32")
    copy = osvos(vgg16_trunk(4), cfg.side_channels)
    copy.set_weights(net.get_weights())
    return copy
