"""Training the OSVOS parent network on 4-channel crops: the ``train`` stage's work.

Reads the HDF5 shards through :mod:`wss.net.inputs`, starts from the surgery trunk and saves the model
with a sidecar (:func:`sidecar`) that records the crop transform.

**Steps count optimizer updates.**  One update consumes ``accum_steps`` batches of ``batch_size``
and averages their gradients, so it is the update of one batch of ``accum_steps * batch_size``;
``steps``, the lr and side-weight boundaries, checkpoint and log cadence and the weight average
all count updates (OSVOS: 50,000 updates of 10 accumulated batches of 1).

**Checkpoints** (``--checkpoints``, ``persist``-ed by DVC) carry a fingerprint of everything that
shapes the weights: the params (but the cadences, and ``steps`` under a constant lr), the seed,
the shards, the init weights and the code of every module the train stage runs
(:mod:`wss.core.provenance`).  A different fingerprint starts over from step 0; the same one
resumes from the last checkpoint and skips exactly the data already consumed, so a killed run ends
with the weights of an uninterrupted one.  With a constant lr (``lr_decay: none``) raising
``steps`` continues and lowering it resumes from the newest kept checkpoint at or below the new
total, or starts over; with the default cosine decay the lr of every update depends on ``steps``,
so other steps are another run.  The loss log lives next to the checkpoints, so the curves and
``final_loss`` survive a resume (even one with no steps left).  A NaN or Inf loss stops the run
with the step where it happened.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from wss.config import TrainConfig, content_fields
from wss.core import provenance
from wss.errors import SetupError, StageInputError
from wss.labels import shards
from wss.net import hooks
from wss.net.loop import Hook, TrainLoop

if TYPE_CHECKING:
    import pandas as pd

REVIEWED_SHARDS = "reviewed-shards"  # in the checkpoint directory: the shards with the decisions applied

# The versions of what computes the weights go into the checkpoint fingerprint, with this module's code.
PACKAGES = ("tensorflow", "keras", "numpy", "h5py")


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


def box_terms(cfg: TrainConfig, x, logits, global_batch):
    """BoxInst's box-supervised terms on the fused ``logits`` of the network input ``x``, weighted
    as ``cfg`` says and averaged over the global batch.  Python branches: at weight 0 a term is not
    in the graph, so the weights are those of a run without it."""
    import tensorflow as tf

    from wss.net.model import BOX_SCALE, VGG_MEAN_BGR, colour_affinity, per_image_pairwise, per_image_projection

    box = tf.cast(x[..., 3] >= BOX_SCALE / 2, tf.float32)
    extra = tf.zeros([])
    if cfg.projection_weight:
        per = per_image_projection(box, logits)
        extra += cfg.projection_weight * tf.nn.compute_average_loss(per, global_batch_size=global_batch)
    if cfg.pairwise_weight:
        rgb = (x[..., :3] + VGG_MEAN_BGR)[..., ::-1]
        per = per_image_pairwise(box, logits, colour_affinity(rgb), cfg.pairwise_threshold)
        extra += cfg.pairwise_weight * tf.nn.compute_average_loss(per, global_batch_size=global_batch)
    return extra


def make_train_step(net, opt, cfg: TrainConfig, side_w, strategy=None):
    """One compiled optimizer update on ``(x, y)`` of shape ``(accum_steps, global batch, ...)``:
    the gradients of the ``accum_steps`` batches are averaged, then applied once.  The loss is
    ``cfg.label_weight`` times (the fused loss plus ``side_w`` times the side losses), plus
    BoxInst's box-supervised terms on the fused output, which need no label: ``cfg.projection_weight``
    times the projection loss and ``cfg.pairwise_weight`` times the colour-pairwise loss
    (:mod:`wss.net.model`).  ``cfg.iou_weight`` > 0 adds that times the fused output's soft-IoU
    loss to the fused loss.  Returns (loss, fused label loss), batch means.

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
            loss = cfg.label_weight * (fused + side_w * side)
            if cfg.projection_weight or cfg.pairwise_weight:
                loss += box_terms(cfg, x, out["fused"], global_batch)
            scaled = opt.scale_loss(loss) if scale_loss else loss
        return tape.gradient(scaled, net.trainable_variables), loss, fused

    @tf.function(jit_compile=cfg.jit_compile, reduce_retracing=True)
    def replica_step(x, y):
        global_batch = tf.shape(x)[1] * n_rep
        grads, loss, fused = grads_of(x[0], y[0], global_batch)
        for k in range(1, cfg.accum_steps):  # unrolled: accum_steps is a small constant
            more, loss_k, fused_k = grads_of(x[k], y[k], global_batch)
            grads = [a + b for a, b in zip(grads, more)]
            loss, fused = loss + loss_k, fused + fused_k
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
    if precision == "mixed_bfloat16" and not gpu and not cpu_runs_bf16():
        raise SetupError(
            "train.precision: mixed_bfloat16 needs AVX-512 on a CPU (oneDNN has no bfloat16 convolutions "
            "without it): set train.precision: auto or float32"
        )
    if precision != "auto":
        return precision
    if gpu:
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return "mixed_float16" if details.get("compute_capability", (0, 0)) >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) without AVX-512 (no bfloat16 convolutions at
# all) and those with AVX-512 but no bfloat16 instructions (bfloat16 emulated, slower than float32).
ISA_WITHOUT_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")
ISA_WITHOUT_BF16 = (*ISA_WITHOUT_AVX512, "AVX512_CORE", "AVX512_CORE_VNNI")


CPUINFO = Path("/proc/cpuinfo")


def cpu_flag_allowed(flags: tuple[str, ...], below: tuple[str, ...]) -> bool:
    """Whether this (Linux) CPU lists one of ``flags`` in ``/proc/cpuinfo`` (whole flags, so that
    ``avx512f`` is not found in ``avx512fp16``) and no ``ONEDNN_MAX_CPU_ISA`` cap of ``below`` hides it."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in below:
        return False
    try:
        cpuinfo = CPUINFO.read_text()
    except OSError:
        return False
    listed = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in listed for flag in flags)


def cpu_has_bf16() -> bool:
    """Whether this (Linux) CPU computes bfloat16 natively (AMX or AVX-512 BF16) and oneDNN may use
    it: an ``ONEDNN_MAX_CPU_ISA`` cap below ``AVX512_CORE_BF16`` makes it a CPU without (so that
    ``train.precision: auto`` picks float32, as it would on such a CPU)."""
    return cpu_flag_allowed(("amx_bf16", "avx512_bf16"), ISA_WITHOUT_BF16)


def cpu_runs_bf16() -> bool:
    """Whether oneDNN has bfloat16 convolutions on this CPU at all (natively or emulated on AVX-512)."""
    return cpu_flag_allowed(("avx512f",), ISA_WITHOUT_AVX512)


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
    weights_params = {**content_fields(cfg), "devices": replicas, "precision": policy}
    if cfg.lr_decay != "none":  # the lr of every update depends on where the run ends
        weights_params["steps"] = cfg.steps
    return provenance.digest(
        weights_params,
        seed,
        manifest["params_fingerprint"],
        [s["fingerprint"] for s in manifest["shards"]],
        provenance.file_digest(init),
        provenance.code_digest(__name__, PACKAGES),
    )


def train_rounds(
    cfg: TrainConfig,
    shard_dir: Path,
    init: Path,
    out: Path,
    ckpt_dir: Path,
    live_dir: Path,
    seed: int,
    decided: pd.DataFrame | None = None,
) -> dict:
    """:func:`train`, then ``cfg.rounds - 1`` rounds of self-training (:mod:`wss.net.selftrain`), each
    from ``init`` again on the previous round's model's relabelling; the last round's model is saved
    to ``out``.  Round 1 keeps its checkpoints in ``ckpt_dir`` (a run with ``rounds: 1`` resumes
    into it), round ``r`` in ``ckpt_dir/round-r`` with its model and relabelled shards beside.

    ``decided``, a reviewer's decisions (:func:`wss.data.decisions.read`), are applied to the
    shards first (:mod:`wss.net.reviewed`, in ``ckpt_dir/reviewed-shards``): an accepted mask is its
    instance's label in every round, a rejected instance is not trained on."""
    from wss.net import reviewed

    review = None
    if decided is not None and len(decided):
        review = reviewed.apply(shard_dir, decided, ckpt_dir / REVIEWED_SHARDS)
        print(
            f"train: your decisions: {review['accepted']} accepted masks are labels, "
            f"{review['rejected']} rejected instances left out"
        )
        shard_dir = ckpt_dir / REVIEWED_SHARDS
    summary = _rounds(cfg, shard_dir, init, out, ckpt_dir, live_dir, seed)
    return {**summary, "review": review} if review else summary


def _rounds(
    cfg: TrainConfig, shard_dir: Path, init: Path, out: Path, ckpt_dir: Path, live_dir: Path, seed: int
) -> dict:
    from wss.net import model, selftrain

    summary = train(
        cfg, shard_dir, init, out if cfg.rounds == 1 else ckpt_dir / "round-1.keras", ckpt_dir, live_dir, seed
    )
    rounds = [summary]
    labels, shards_in = cfg.labels, shard_dir
    for r in range(2, cfg.rounds + 1):
        relabelled = ckpt_dir / f"round-{r}-shards"
        net = model.load(str(ckpt_dir / f"round-{r - 1}.keras"))
        stats = selftrain.relabel(
            net, shards_in, relabelled, labels, cfg.votes_fg, cfg.votes_bg, cfg.box_i_core, cfg.holdout
        )
        print(f"train: round {r}: self labels from round {r - 1}'s model, {stats}")
        labels, shards_in = "self", relabelled
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
    import tensorflow as tf

    from wss.net import inputs

    plan = _plan(cfg, shard_dir)
    devices, policy, manifest, counted = plan["devices"], plan["policy"], plan["manifest"], plan["counted"]
    device, replicas, side = devices[0], len(devices), int(manifest["crop_size"])
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
        train_step = make_train_step(net, opt, cfg, side_w, strategy)

        def run_step(x, y) -> dict[str, float]:
            loss, fused = train_step(x, y)
            step_var.assign_add(1)
            return {"loss": float(loss), "loss_fused": float(fused)}

        global_cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size * replicas)
        per_update = cfg.accum_steps * global_cfg.batch_size
        files, val_files = plan["files"]

        def batches(start: int):
            return inputs.dataset(
                files, global_cfg, side, training=True, seed=seed, skip=start * per_update, val=val_files
            ).take(max(cfg.steps - start, 0))

        checkpointer = hooks.Checkpointer(
            tf.train.Checkpoint(model=net, optimizer=opt, step=step_var),
            step_var,
            ckpt_dir,
            fp,
            cfg.checkpoint_every,
            cfg.checkpoints_kept,
            keep=(REVIEWED_SHARDS,),
        )
        run = {"device": device, "devices": devices, "policy": policy, "side": side, "strategy": strategy}
        loop = TrainLoop(
            run_step,
            batches,
            cfg.steps,
            [
                checkpointer,
                Announce(announcement(cfg, plan, run)),
                hooks.Schedule(opt.learning_rate, side_w, cfg),
                hooks.NanGuard(),
                hooks.History(ckpt_dir / hooks.HISTORY, cfg.log_every),
                hooks.Live(live_dir, {**live_params(cfg), "device": device, "replicas": replicas, "precision": policy}),
                hooks.Progress(),
                hooks.SaveModel(
                    net,
                    opt,
                    out,
                    sidecar(cfg, manifest, counted),
                    plain=(lambda n: _plain_copy(n, cfg)) if policy != "float32" or strategy else None,
                ),
            ],
        )
        with placed():
            loop.train()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return summary(cfg, loop, plan, run, checkpointer.resumed, per_update)


def summary(cfg: TrainConfig, loop: TrainLoop, plan: dict, run: dict, resumed: bool, per_update: int) -> dict:
    """``train.json``: what was trained, how fast, and which instances it learnt from."""
    counted, counts = plan["counted"], plan["manifest"]["counts"]
    seen = (loop.step - loop.start) * per_update
    return {
        "labels": cfg.labels,
        "steps": loop.step,
        "lr": float(cfg.lr),
        "batch_size": cfg.batch_size,
        "accum_steps": cfg.accum_steps,
        "final_loss": round(loop.history[-1]["loss"], 6) if loop.history else None,
        "images_per_s": round(seen / loop.seconds, 3) if seen else None,
        "resumed_from_step": loop.start if resumed else None,
        "device": run["device"],
        "replicas": len(run["devices"]),
        "precision": run["policy"],
        "instances_used": counted["used"],
        "instances_left_out": counts["train"] + counts["val"] - counted["used"],
        "instances": instance_use(counted, counts, cfg.holdout),
    }


class Announce(Hook):
    """Prints what the run does, once it knows the update it starts from (``{start}`` in ``text``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def before_train(self, loop: TrainLoop) -> None:
        print(self.text.format(start=loop.start))


def announcement(cfg: TrainConfig, plan: dict, run: dict) -> str:
    """The lines that say what a run learns from and how (``{start}``: the update it starts from)."""
    devices, replicas = run["devices"], len(run["devices"])
    on = f"{replicas} replicas ({', '.join(devices)})" if replicas > 1 else f"device {run['device']}"
    return (
        f"train: {used_line(plan['counted'], plan['manifest']['counts'], cfg.holdout)}\n"
        f"train: {cfg.labels} labels, crop {run['side']}, updates {{start}}..{cfg.steps} of batch "
        f"{cfg.batch_size} x {replicas} replicas x accum {cfg.accum_steps}, {cfg.optimizer} lr "
        f"{cfg.lr:g}, {on}, precision {run['policy']}, XLA {cfg.jit_compile}"
    )


def sidecar(cfg: TrainConfig, manifest: dict, counted: dict) -> dict:
    """What predict needs to crop a new image exactly as the training crops were made, and how many
    instances the network learnt from, which says how far to trust it (:mod:`wss.core.trust`)."""
    return {
        "crop_size": int(manifest["crop_size"]),
        "context_margin": float(manifest["context_margin"]),
        "labels": cfg.labels,
        "instances_used": counted["used"],
    }


def live_params(cfg: TrainConfig) -> dict:
    """The params DVCLive records with the curves."""
    keys = ("lr", "labels", "steps", "batch_size", "accum_steps", "optimizer")
    return {k: getattr(cfg, k) for k in keys}


def _plan(cfg: TrainConfig, shard_dir: Path) -> dict:
    """What a run trains on and where, checked before anything is built: the devices, the dtype
    policy, the shards' manifest, the files training reads and the instances it learns from."""
    import tensorflow as tf

    from wss.net import inputs

    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        raise SetupError("train.device is gpu, but TensorFlow sees no GPU (install tensorflow[and-cuda])")
    devices = replica_devices(cfg, len(gpus))
    policy = resolve_precision(cfg.precision, devices[0].startswith("/GPU"))
    manifest = shards.read_manifest(shard_dir)
    files, val_files = inputs.training_files(shard_dir, cfg.holdout)
    if not files:
        raise StageInputError(
            f"{shard_dir} has no train shards, and no val instance without a ground-truth mask "
            f"(train.holdout: {cfg.holdout})"
        )
    if cfg.labels == "teacher_i" and not manifest.get("vote_runs"):
        raise StageInputError(
            "train.labels=teacher_i needs the votes of jittered GrabCuts; set labels.vote_runs > 0 "
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
    return {"devices": devices, "policy": policy, "manifest": manifest, "files": (files, val_files), "counted": counted}


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
