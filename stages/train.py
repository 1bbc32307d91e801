"""Stage ``train``: the OSVOS parent network on 4-channel crops, labels chosen by ``train.labels``.

Reads the HDF5 shards through :mod:`stages.inputs`, starts from the surgery trunk, and writes
``models/model.keras``, DVCLive curves under ``metrics/train/`` and a summary in
``metrics/train.json``.  Checkpoints under ``models/checkpoints/`` (``persist``-ed) carry a
fingerprint of params and inputs: after a kill, the same params resume from the last one, other
params start afresh.  A NaN or Inf loss stops the run with the step where it happened.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from stages import atomic, params, shards



@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` params section; steps count batches (one optimizer update per ``accum_steps``)."""

    labels: str = "grabcut"
    steps: int = 1000
    batch_size: int = 4
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    ema: float = 0.0  # > 0: the saved model holds the moving average of the weights with this momentum
    accum_steps: int = 1
    lr_boundaries: tuple[int, ...] = ()
    lr_factors: tuple[float, ...] = (1.0,)
    side_boundaries: tuple[int, ...] = ()
    side_weights: tuple[float, ...] = (1.0,)
    loss_reduction: str = "mean"
    class_balance: bool = True
    skip_fallbacks: bool = False
    consensus_fg: float = 0.7  # grabcut_i: share of jittered GrabCuts that makes a pixel foreground
    consensus_bg: float = 0.2  # ... and below which it is background; in between it is ignored
    flip: bool = True
    scale_jitter: float = 0.15
    box_jitter: float = 0.1
    shuffle_buffer: int = 512
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool = False

    @classmethod
    def from_params(cls, section: dict) -> TrainConfig:
        cfg = params.typed(cls, section, "train")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.labels not in shards.LABEL_SOURCES:
            raise SystemExit(f"params.yaml: train.labels must be one of {sorted(shards.LABEL_SOURCES)}, not {self.labels!r}")
        if not 0 <= self.consensus_bg <= self.consensus_fg <= 1:
            raise SystemExit("params.yaml: train.consensus_bg <= train.consensus_fg must both lie in [0, 1]")
        if len(self.lr_factors) != len(self.lr_boundaries) + 1:
            raise SystemExit("params.yaml: train.lr_factors needs one more entry than train.lr_boundaries")
        if len(self.side_weights) != len(self.side_boundaries) + 1:
            raise SystemExit("params.yaml: train.side_weights needs one more entry than train.side_boundaries")
        if not 0 <= self.ema < 1:
            raise SystemExit(f"params.yaml: train.ema must lie in [0, 1) (0 = off), not {self.ema!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise SystemExit(f"params.yaml: train.optimizer must be sgd or adam, not {self.optimizer!r}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise SystemExit(f"params.yaml: train.device must be auto, cpu or gpu, not {self.device!r}")


def piecewise(step: int, boundaries: tuple[int, ...], values: tuple[float, ...]) -> float:
    """``values[i]`` for the ``i``-th interval of ``boundaries`` that ``step`` falls in."""
    return float(values[sum(step >= b for b in boundaries)])


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class NonFiniteLoss(FloatingPointError):
    pass


def sidecar(model_path: Path) -> Path:
    """``models/model.keras`` -> ``models/model.json``: the crop transform the model was trained with."""
    return Path(model_path).with_suffix(".json")


def build(cfg: TrainConfig, init: Path):
    """The OSVOS network on the surgery trunk ``init``, and its optimizer (built, so checkpoints match)."""
    import keras

    from stages.model import osvos, vgg16_trunk

    trunk = vgg16_trunk(4)
    trunk.load_weights(str(init))
    net = osvos(trunk)
    common = {"gradient_accumulation_steps": cfg.accum_steps if cfg.accum_steps > 1 else None,
              "use_ema": cfg.ema > 0, "ema_momentum": cfg.ema or 0.99}  # fmt: skip
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay or None, **common)
    else:
        opt = keras.optimizers.AdamW(cfg.lr, weight_decay=cfg.weight_decay, **common)
    if cfg.mixed_precision:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    opt.build(net.trainable_variables)
    return net, opt


def make_train_step(net, opt, cfg: TrainConfig, side_w):
    """One compiled step: fused loss plus ``side_w`` times the side losses; returns (loss, fused loss)."""
    import tensorflow as tf

    from stages.model import SIDES, balanced_bce

    @tf.function(jit_compile=cfg.jit_compile, reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            out = net(x, training=True)
            fused = balanced_bce(y, out["fused"], cfg.loss_reduction, cfg.class_balance)
            side_loss = tf.add_n([balanced_bce(y, out[s], cfg.loss_reduction, cfg.class_balance) for s in SIDES])
            loss = fused + side_w * side_loss
            scaled = opt.scale_loss(loss) if cfg.mixed_precision else loss
        grads = tape.gradient(scaled, net.trainable_variables)
        opt.apply(grads, net.trainable_variables)
        return loss, fused

    return train_step


def train(cfg: TrainConfig, shard_dir: Path, init: Path, out: Path, ckpt_dir: Path, live_dir: Path, seed: int) -> dict:
    """Train and save the model to ``out``; return the summary metrics."""
    import keras
    import numpy as np
    import tensorflow as tf
    from dvclive import Live

    from stages import inputs

    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        raise SystemExit("train: train.device is gpu, but TensorFlow sees no GPU (install tensorflow[and-cuda])")
    device = "/GPU:0" if gpus and cfg.device != "cpu" else "/CPU:0"
    keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
    keras.utils.set_random_seed(seed)

    manifest = shards.read_manifest(shard_dir)
    side = int(manifest["crop_size"])
    files = shards.files(shard_dir, "train")
    if not files:
        raise SystemExit(f"train: {shard_dir} has no train shards")
    if cfg.labels == "grabcut_i" and not manifest.get("consensus_runs"):
        raise SystemExit("train: train.labels=grabcut_i needs the jittered GrabCut votes; set labels.consensus_runs > 0 "
                         "in params.yaml and run the labels stage")  # fmt: skip
    fingerprint = shards.fingerprint(
        {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("steps", "log_every", "checkpoint_every")},
        seed, manifest["params_fingerprint"], [s["fingerprint"] for s in manifest["shards"]], _digest(init),
    )  # fmt: skip

    with tf.device(device):
        net, opt = build(cfg, init)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        side_w = tf.Variable(1.0, trainable=False)

    ckpt = tf.train.Checkpoint(model=net, optimizer=opt, step=step_var)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
    stamp = ckpt_dir / "fingerprint.json"
    # train.steps is left out of the fingerprint: raising it continues from the last checkpoint
    # (nothing in the schedule depends on the total); lowering it resumes from the newest kept
    # checkpoint that is not beyond the new total, or starts over when there is none.
    usable = [c for c in manager.checkpoints if int(c.rsplit("-", 1)[1]) <= cfg.steps]
    resumed = bool(usable) and stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    if resumed:
        ckpt.restore(usable[-1]).assert_existing_objects_matched()
        print(f"train: resuming from {usable[-1]} at step {int(step_var.numpy())}")
    else:
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
        atomic.write_json(stamp, {"fingerprint": fingerprint})
        if live_dir.exists():
            shutil.rmtree(live_dir)

    train_step = make_train_step(net, opt, cfg, side_w)

    aug = inputs.Augment(flip=cfg.flip, scale_jitter=cfg.scale_jitter, box_jitter=cfg.box_jitter)
    start = int(step_var.numpy())
    ds = inputs.dataset(files, cfg.labels, cfg.batch_size, side, aug, training=True, seed=seed + start,
                        shuffle_buffer=cfg.shuffle_buffer, skip_fallbacks=cfg.skip_fallbacks,
                        consensus=(cfg.consensus_fg, cfg.consensus_bg))  # fmt: skip
    live = Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False, report=None)
    live.log_params({"lr": cfg.lr, "labels": cfg.labels, "steps": cfg.steps, "batch_size": cfg.batch_size,
                     "optimizer": cfg.optimizer, "device": device})  # fmt: skip
    print(f"train: {cfg.labels} labels, {manifest['counts']['train']} instances, crop {side}, steps {start}..{cfg.steps}, "
          f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size} x accum {cfg.accum_steps}, device {device}, "
          f"mixed precision {cfg.mixed_precision}, XLA {cfg.jit_compile}")  # fmt: skip
    from tqdm import tqdm

    t0, seen, window = time.perf_counter(), 0, []
    loss_v = fused_v = float("nan")
    with tf.device(device), tqdm(total=cfg.steps, initial=start, desc="train", unit="step") as bar:
        for x, y in ds.take(max(cfg.steps - start, 0)):
            step = int(step_var.numpy())
            opt.learning_rate.assign(cfg.lr * piecewise(step, cfg.lr_boundaries, cfg.lr_factors))
            side_w.assign(piecewise(step, cfg.side_boundaries, cfg.side_weights))
            loss, fused = train_step(x, y)
            loss_v, fused_v = float(loss), float(fused)
            if not (np.isfinite(loss_v) and np.isfinite(fused_v)):
                raise NonFiniteLoss(
                    f"train: loss is {loss_v} at step {step} (lr {float(opt.learning_rate.numpy()):g}); the last "
                    f"good checkpoint is kept. Lower train.lr or check the inputs."
                )
            step_var.assign_add(1)
            seen += int(x.shape[0])
            window.append(loss_v)
            bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                live.step = done
                live.log_metric("loss", float(np.mean(window)))
                live.log_metric("loss_fused", fused_v)
                live.log_metric("lr", float(opt.learning_rate.numpy()))
                live.log_metric("side_weight", float(side_w.numpy()))
                live.next_step()
                bar.set_postfix(loss=f"{np.mean(window):.4f}")
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
    if cfg.mixed_precision:  # save a float32 model: evaluation and predict run anywhere
        keras.mixed_precision.set_global_policy("float32")
    with atomic.target(out) as tmp:
        net.save(str(tmp))
    # What predict needs to crop a new image exactly as the training crops were made.
    atomic.write_json(sidecar(out), {"crop_size": side, "context_margin": float(manifest["context_margin"]),
                                     "labels": cfg.labels})  # fmt: skip
    summary = {
        "labels": cfg.labels, "steps": last, "lr": float(cfg.lr), "batch_size": cfg.batch_size,
        "final_loss": round(loss_v, 6), "images_per_s": round(seen / seconds, 3) if seen else None,
        "resumed_from_step": start if resumed else None, "device": device,
    }  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--init", default="models/vgg16_4ch.weights.h5", type=Path)
    ap.add_argument("--out", default="models/model.keras", type=Path)
    ap.add_argument("--checkpoints", default="models/checkpoints", type=Path)
    ap.add_argument("--live", default="metrics/train", type=Path)
    ap.add_argument("--metrics", default="metrics/train.json", type=Path)
    args = ap.parse_args(argv)
    p = params.load(args.params)
    cfg = TrainConfig.from_params(p["train"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        summary = train(cfg, args.shards, args.init, args.out, args.checkpoints, args.live, int(p["base"]["seed"]))
    except NonFiniteLoss as exc:
        sys.exit(str(exc))
    atomic.write_json(args.metrics, summary)
    print(f"train: done, {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
