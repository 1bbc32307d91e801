"""Benchmark of training: step throughput of ``params.yaml`` and of the variants around it (batch,
precision, deterministic kernels, XLA), achieved GFLOP/s against the machine's own matmul GFLOP/s,
and the input pipeline's rate against what a training step consumes.  All in one run::

    python bench/train.py [--shards data/shards] [--init models/vgg16_4ch.weights.h5] [--steps 20]

Run it under ``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` or ``AVX2`` to measure a CPU without bfloat16 or
without AVX-512 (``train.precision: auto`` follows the cap); bfloat16 rows then say the CPU has none.

FLOPs are counted analytically from the network's convolutions (2 * multiply-adds), forward
plus backward taken as 3x the forward pass, the usual convention.  Quote ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from wss import config
from wss.labels import shards
from wss.net import (
    inputs,
    training,
)


def conv_flops(net, side: int) -> float:
    """Forward FLOPs of one ``side x side`` image: 2 * multiply-adds of every (transposed) convolution."""
    total = 0.0

    def walk(model, scale_of):
        nonlocal total
        for layer in model.layers:
            if hasattr(layer, "layers"):
                walk(layer, scale_of)
            elif isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)):
                k = layer.kernel.shape  # (kh, kw, in, out) or (kh, kw, out, in) for transposed
                out_hw = layer.output.shape[1] if layer.output.shape[1] else None
                if out_hw is None:
                    # Shapes are dynamic (None x None input): infer the resolution from the layer's stride history.
                    out_hw = side // scale_of(layer.name)
                in_hw = out_hw // layer.strides[0] if isinstance(layer, tf.keras.layers.Conv2DTranspose) else out_hw
                spatial = in_hw if isinstance(layer, tf.keras.layers.Conv2DTranspose) else out_hw
                total += 2.0 * spatial * spatial * k[0] * k[1] * k[2] * k[3]

    def scale_of(name: str) -> int:
        if name.startswith("block"):
            return 2 ** (int(name[5]) - 1)
        if name.endswith("_prep"):
            return {"side2": 2, "side3": 4, "side4": 8, "side5": 16}[name[:5]]
        return 1  # heads, fused and the upsampled outputs run at full resolution

    walk(net, scale_of)
    return total


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a = tf.constant(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    b = tf.constant(np.random.default_rng(1).normal(size=(n, n)).astype(np.float32))
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(reps):
        c = f(a, b)
    c.numpy()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


VARIANTS = {  # name -> train params changed from params.yaml
    "float32, batch 8": {"precision": "float32", "batch_size": 8},
    "float32, batch 16": {"precision": "float32", "batch_size": 16},
    "float32, batch 32": {"precision": "float32", "batch_size": 32},
    "float32, batch 16, deterministic off": {"precision": "float32", "batch_size": 16, "deterministic": False},
    "float32, batch 16, XLA": {"precision": "float32", "batch_size": 16, "deterministic": False, "jit_compile": True},
    "bfloat16, batch 16": {"precision": "mixed_bfloat16", "batch_size": 16},
    "bfloat16, batch 32": {"precision": "mixed_bfloat16", "batch_size": 32},
    "params.yaml": {},
}


def step_rate(cfg, files, side: int, init: Path, steps: int, gpu: bool) -> float | None:
    """Training images per second of the compiled update of ``cfg`` (after 3 warm-up steps); None
    where the CPU (or the ``ONEDNN_MAX_CPU_ISA`` cap) has no kernels for its precision."""
    import keras

    if cfg.precision == "mixed_bfloat16" and not gpu and not training.cpu_runs_bf16():
        return None
    training.set_op_determinism(cfg.deterministic)  # as the train stage runs
    keras.mixed_precision.set_global_policy(training.resolve_precision(cfg.precision, gpu))
    try:
        it = iter(inputs.dataset(files, cfg, side, training=True, seed=0))
        net, opt = training.build(cfg, init)
        step = training.make_train_step(net, opt, cfg, tf.Variable(1.0, trainable=False))
        batches = [next(it) for _ in range(steps + 3)]
        for x, y in batches[:3]:  # trace and warm up
            step(x, y)
        t0 = time.perf_counter()
        for x, y in batches[3:]:
            loss, _ = step(x, y)
        float(loss)
        return steps * cfg.batch_size * cfg.accum_steps / (time.perf_counter() - t0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--init", default="models/vgg16_4ch.weights.h5", type=Path)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    p = config.load(args.params)
    cfg = config.read(config.TrainConfig, p)
    side = int(shards.read_manifest(args.shards)["crop_size"])
    files = shards.files(args.shards, "train")
    gpu = bool(tf.config.list_physical_devices("GPU"))

    ds = inputs.dataset(files, cfg, side, training=True, seed=0)
    it = iter(ds)
    for _ in range(5):
        next(it)
    n_batches = max(50, 4 * args.steps)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    per_update = cfg.batch_size * cfg.accum_steps
    pipeline = n_batches * per_update / (time.perf_counter() - t0)

    net, _ = training.build(cfg, args.init)
    fwd = conv_flops(net, side)
    peak = matmul_gflops()
    rates = {}
    for name, over in VARIANTS.items():
        v = config.read(config.TrainConfig, p, **over)
        rates[name] = (step_rate(v, files, side, args.init, args.steps, gpu), v)
    images = cfg.steps * cfg.batch_size * cfg.accum_steps
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)")
    print(
        f"\ncrop {side}, accum {cfg.accum_steps}, {args.steps} timed steps per variant, {os.cpu_count()} cores, "
        f"device {'GPU' if gpu else 'CPU'}, ONEDNN_MAX_CPU_ISA={isa}, forward {fwd / 1e9:.2f} GFLOP per image, "
        f"fp32 matmul 2048^3 {peak:.1f} GFLOP/s (same run)\n"
    )
    print(
        "| variant | batch | precision | deterministic | XLA | images/s | achieved GFLOP/s (3x fwd) | "
        f"vs float32, batch 16 | params.yaml's {images:,} images take |"
    )
    print("|---|---:|---|---|---|---:|---:|---:|---:|")
    base = rates["float32, batch 16"][0]
    for name, (rate, v) in rates.items():
        precision = v.precision if rate is None else training.resolve_precision(v.precision, gpu)
        head = f"| {name} | {v.batch_size} | {precision} | {v.deterministic} | "
        if rate is None:
            print(head + f"{v.jit_compile} | not on this CPU | | | |")
            continue
        print(
            head + f"{v.jit_compile} | {rate:.2f} | {3 * fwd * rate / 1e9:.1f} | {rate / base:.2f}x | "
            f"{images / rate / 60:.1f} min |"
        )
    after = rates["params.yaml"][0]
    print(
        f"\ninput pipeline {pipeline:.1f} samples/s = {pipeline / after:.1f}x what the params.yaml step consumes "
        f"(target >= 10x)"
    )
    print("(minutes of compiled steps only: the stage adds start-up, the input pipeline and checkpoints)")


if __name__ == "__main__":
    main()
