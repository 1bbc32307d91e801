"""Benchmark of the training budget: val mIoU against the number of updates and the lr schedule.

Each variant runs the real ``train`` and ``evaluate`` stage commands, in fresh processes, on the
shards and trunk an earlier ``dvc repro`` made, with ``params.yaml`` changed only as the variant
says; the table gives the train stage's wall time, its images/s and the val scores::

    python bench/schedule.py [--variants NAME ...] [--seeds 2017] [--isa AVX2] [--precision float32]

``--isa`` caps oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``), so that a CPU with AMX or
AVX512-BF16 can measure what one without does.  Quote ratios and differences, not seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

ONE_CYCLE = {"lr_decay": "cosine", "ema": 0.0}
VARIANTS = {  # name -> train params changed from params.yaml
    "params.yaml": {},
    "constant lr, 1,500 x 16": {"steps": 1500, "batch_size": 16, "lr": 3e-4, "lr_warmup": 0, "lr_decay": "none",
                                "ema": 0.995},
    "one cycle, 400 x 16": {**ONE_CYCLE, "steps": 400, "batch_size": 16, "lr": 3e-4, "lr_warmup": 40},
    "one cycle, 400 x 16, lr 6e-4": {**ONE_CYCLE, "steps": 400, "batch_size": 16, "lr": 6e-4, "lr_warmup": 40},
    "one cycle, 1,000 x 16, lr 6e-4": {**ONE_CYCLE, "steps": 1000, "batch_size": 16, "lr": 6e-4, "lr_warmup": 50},
    "one cycle, 500 x 32, lr 6e-4": {**ONE_CYCLE, "steps": 500, "batch_size": 32, "lr": 6e-4, "lr_warmup": 25},
    "one cycle, 500 x 32, lr 1e-3": {**ONE_CYCLE, "steps": 500, "batch_size": 32, "lr": 1e-3, "lr_warmup": 25},
    "one cycle, 500 x 32, lr 2e-3": {**ONE_CYCLE, "steps": 500, "batch_size": 32, "lr": 2e-3, "lr_warmup": 25},
    "one cycle, 400 x 32, lr 2e-3": {**ONE_CYCLE, "steps": 400, "batch_size": 32, "lr": 2e-3, "lr_warmup": 20},
    "500 x 32, trained at 48 px": {**ONE_CYCLE, "steps": 500, "batch_size": 32, "lr": 2e-3, "lr_warmup": 25,
                                   "input_side": 48},
    "600 x 32, trained at 48 px": {**ONE_CYCLE, "steps": 600, "batch_size": 32, "lr": 2e-3, "lr_warmup": 30,
                                   "input_side": 48},
}  # fmt: skip


def run(variant: dict, seed: int, work: Path, env: dict, data: Path) -> dict:
    """The train and evaluate stages in ``work`` on ``data``'s shards, trunk, photos and boundaries,
    with ``params.yaml``'s params (its ``data`` section ``data``'s own: the dataset the shards came
    from), ``base.seed`` = ``seed`` and ``variant``'s train params."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if (data / "params.yaml").exists():
        params["data"] = yaml.safe_load((data / "params.yaml").read_text())["data"]
    params["base"]["seed"] = seed
    params["train"].update(variant)
    p = work / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    d, w = data / "data", work
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "stages.train", "--params", str(p), "--shards", str(d / "shards"),
         "--init", str(data / "models/vgg16_4ch.weights.h5"), "--out", str(w / "model.keras"),
         "--checkpoints", str(w / "checkpoints"), "--live", str(w / "live"), "--metrics", str(w / "train.json")],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "--params", str(p), "--model", str(w / "model.keras"),
         "--shards", str(d / "shards"), "--instances", str(d / "instances"),
         "--data", str(d / "raw"), "--boundaries", str(d / "boundaries"),
         "--metrics", str(w / "eval.json"), "--per-class", str(w / "per_class.json"), "--plots", str(w / "plots")],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    train = json.loads((work / "train.json").read_text())
    ev = json.loads((work / "eval.json").read_text())
    return {"seconds": seconds, "train": train, "eval": ev, "steps": params["train"]["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=ROOT, type=Path, help="the project whose data/ and models/ a dvc repro made")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[2017])
    ap.add_argument("--isa", default="", help="ONEDNN_MAX_CPU_ISA for the runs ('' = the CPU's own)")
    ap.add_argument("--precision", default="", help="train.precision for every variant ('' = params.yaml's)")
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    if args.isa:
        env["ONEDNN_MAX_CPU_ISA"] = args.isa
    rows = []
    for name in args.variants:
        variant = copy.deepcopy(VARIANTS[name])
        if args.precision:
            variant["precision"] = args.precision
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = run(variant, seed, Path(tmp), env, args.data)
            rows.append((name, seed, r))
            print(f"{name} seed {seed}: {r['seconds']:.0f} s, val mIoU {r['eval']['miou']}", file=sys.stderr)
    precision = rows[0][2]["train"]["precision"]
    print(f"\n{os.cpu_count()} cores, ONEDNN_MAX_CPU_ISA={args.isa or '(unset)'}, precision {precision}\n")
    print("| variant | seed | updates | train s | images/s | val mIoU | fused mIoU | mask AP | agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, seed, r in rows:
        t, e = r["train"], r["eval"]
        print(
            f"| {name} | {seed} | {r['steps']} | {r['seconds']:.0f} | {t['images_per_s']} | {e['miou']:.4f} | "
            f"{e['fused']['miou']:.4f} | {e['AP']} | {e['agreement_with_teacher']['miou']:.4f} |"
        )


if __name__ == "__main__":
    main()
