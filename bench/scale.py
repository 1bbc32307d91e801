"""Benchmark of growth: time and peak memory of each stage as the data grows 1x, 4x, 16x.

Generates the built-in sample at each size (``data.sample.n_train`` and ``n_val`` times the
factor, times ``--base``), runs the real stage commands on it in fresh processes, and prints one
table, then an extrapolation to the full SBD and to COCO::

    python bench/scale.py [--factors 1 4 16] [--base 1.0] [--train-steps 60] [--keep DIR]

Time should grow linearly with the instances (seconds per instance flat) and peak memory (RSS of
the stage process, ``wait4``'s ``ru_maxrss``: the largest of the process and the children it
waited for, so the labels workers count) should stay flat: every stage streams.  ``train`` runs a
fixed number of steps at every size, so its time per step must not grow with the data.
Quote ratios, not seconds: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    "download": ["--out", "raw"],
    "convert": ["--data", "raw", "--out", "instances"],
    "labels": ["--data", "raw", "--instances", "instances", "--out", "shards", "--metrics", "labels.json"],
    "surgery": ["--out", "init.weights.h5"],
    "train": [
        "--shards",
        "shards",
        "--init",
        "init.weights.h5",
        "--out",
        "model/model.keras",
        "--checkpoints",
        "ckpt",
        "--live",
        "live",
        "--metrics",
        "train.json",
    ],
    "evaluate": [
        "--model",
        "model/model.keras",
        "--shards",
        "shards",
        "--instances",
        "instances",
        "--data",
        "raw",
        "--metrics",
        "eval.json",
        "--per-class",
        "per_class.json",
        "--plots",
        "plots",
    ],
}
MEASURED = ("convert", "labels", "train", "evaluate")
SBD, COCO = 26_843, 860_000  # instances (SBD: 11,355 images; COCO train2017: 118k images)


def run_stage(name: str, work: Path) -> tuple[float, float]:
    """Run ``python -m stages.<name>`` in ``work``; return (seconds, peak RSS in MiB)."""
    cmd = [sys.executable, "-m", f"stages.{name}", "--params", "params.yaml", *STAGES[name]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: stage {name} failed in {work}; see {work / (name + '.log')}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--base", type=float, default=1.0, help="share of the sample's size that is 1x")
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--keep", type=Path, help="keep the work directories here (default: a temp dir, removed)")
    args = ap.parse_args()
    p = yaml.safe_load(Path(args.params).read_text())
    n_train, n_val = p["data"]["sample"]["n_train"], p["data"]["sample"]["n_val"]
    top = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows = []
    try:
        for k in args.factors:
            work = top / f"x{k}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            q = json.loads(json.dumps(p))
            q["data"]["sample"].update(n_train=round(n_train * k * args.base), n_val=round(n_val * k * args.base))
            q["train"].update(steps=args.train_steps, checkpoint_every=max(args.train_steps, 1))
            (work / "params.yaml").write_text(yaml.safe_dump(q))
            row = {"factor": k}
            for name in STAGES:
                row[name] = run_stage(name, work)
            eval_json = json.loads((work / "eval.json").read_text())
            row["instances"] = json.loads((work / "labels.json").read_text())["instances"]
            row["val_instances"] = eval_json["instances"]
            summary = json.loads((work / "train.json").read_text())
            row["images_per_s"], row["batch"] = summary["images_per_s"], summary["batch_size"] * summary["replicas"]
            rows.append(row)
            print(f"x{k}: {row['instances']} instances done", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    report(rows, args, os.cpu_count() or 1)


def report(rows: list[dict], args, cores: int) -> None:
    one = rows[0]
    print(
        f"\nsample x{args.base:g} = 1x, factors {args.factors}, {cores} cores, "
        f"train {args.train_steps} steps per size\n"
    )
    print(
        "| size | instances | convert s | labels s | labels ms/inst | train s/step | evaluate s | "
        "evaluate ms/val inst | peak RSS MiB convert / labels / train / evaluate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n, nv = r["instances"], r["val_instances"]
        print(
            f"| {r['factor']}x | {n} | {r['convert'][0]:.1f} | {r['labels'][0]:.1f} | {1000 * r['labels'][0] / n:.1f} "
            f"| {r['batch'] / r['images_per_s']:.3f} | {r['evaluate'][0]:.1f} | {1000 * r['evaluate'][0] / nv:.1f} | "
            + " / ".join(f"{r[s][1]:.0f}" for s in MEASURED)
            + " |"
        )
    last = rows[-1]
    grow = last["instances"] / one["instances"]
    print(f"\nfrom {one['factor']}x to {last['factor']}x ({grow:.1f}x the instances):")
    for s in MEASURED:
        t = last[s][0] / one[s][0]
        print(
            f"  {s:9s} time x{t:.2f} (linear: x{grow:.1f}{'' if s != 'train' else '; fixed steps: x1'}), "
            f"peak RSS x{last[s][1] / one[s][1]:.2f}"
        )
    # Marginal costs between the two largest runs: what one more instance costs, start-up excluded
    # (with a single size, the plain average).
    zero = {"factor": 0, "instances": 0, "val_instances": 0, "labels": (0.0, 0.0), "evaluate": (0.0, 0.0)}
    a = rows[-2] if len(rows) > 1 else zero
    per_inst = (last["labels"][0] - a["labels"][0]) / (last["instances"] - a["instances"])
    per_val = (last["evaluate"][0] - a["evaluate"][0]) / (last["val_instances"] - a["val_instances"])
    print(
        f"\nmarginal cost ({a['factor']}x -> {last['factor']}x): labels {1000 * per_inst:.1f} ms per instance "
        f"on {cores} cores, evaluate {1000 * per_val:.1f} ms per val instance; train "
        f"{last['images_per_s']:.1f} images/s whatever the data size"
    )
    print("\nextrapolated (labels scale with Dask workers, linearly as measured above; 1 worker = 1 core):")
    print(
        "| dataset | instances | labels, "
        + " | labels, ".join(f"{n} cores" for n in (cores, 32, 256))
        + " | evaluate, 20% val, 1 process | one epoch of train on this CPU |"
    )
    print("|---|---:|" + "---:|" * 5)
    for name, n in (("SBD", SBD), ("COCO", COCO)):
        total = per_inst * n * cores  # core-seconds
        cells = [_duration(total / c) for c in (cores, 32, 256)]
        print(
            f"| {name} | {n:,} | " + " | ".join(cells) + f" | {_duration(per_val * n * 0.2)} | "
            f"{_duration(n * 0.8 / last['images_per_s'])} |"
        )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
