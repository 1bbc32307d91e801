"""Benchmark of BoxInst's box-supervised terms (``train.projection_weight``, ``train.pairwise_weight``):
the network, its teacher, the fused masks and full supervision on val, per COCO size, per seed.

Each variant runs the real ``train`` and ``evaluate`` stage commands (:func:`schedule.run`) on the
shards, trunk and photos of a project a ``dvc repro`` (or ``bench/pipeline.py --keep``) made on a
real dataset; ``base.seed`` moves the trunk's box filters and the training order (the labels are
the project's)::

    python bench/boxloss.py --data RUN --out RESULTS [--variants NAME ...] [--seeds 2017 2018]

Each result is kept as ``RESULTS/<variant>@<seed>.json``, so a later call adds rows (and skips
the ones already there); the table is printed from every result in ``RESULTS``.  ``--record
NAME`` adds the project's own train and evaluate metrics (its ``dvc repro``) as variant NAME at
its ``base.seed``, instead of training.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

# bench/ holds scripts, not a package: load the training bench's runner from its file.
_spec = importlib.util.spec_from_file_location("schedule", Path(__file__).with_name("schedule.py"))
schedule = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(schedule)
ROOT, run = schedule.ROOT, schedule.run

TERMS = {"projection_weight": 1.0, "pairwise_weight": 1.0}
NO_TERMS = {"projection_weight": 0.0, "pairwise_weight": 0.0}
VARIANTS = {  # name -> train params changed from params.yaml (the terms set either way, whatever its defaults)
    "teacher labels": {"labels": "teacher", "label_weight": 1.0, **NO_TERMS},
    "teacher + box terms": {"labels": "teacher", "label_weight": 1.0, **TERMS},
    "teacher + box terms x2": {"labels": "teacher", "label_weight": 1.0, **{k: 2 * v for k, v in TERMS.items()}},
    "box terms alone": {**TERMS, "labels": "box", "label_weight": 0.0, "rounds": 1},
    "true masks (full supervision)": {"labels": "gt", "label_weight": 1.0, "rounds": 1, **NO_TERMS},
}
SIZES = ("small", "medium", "large")


def sizes(block: dict) -> str:
    return " / ".join(f"{block['by_size'][s]:.3f}".lstrip("0") if s in block["by_size"] else "-" for s in SIZES)


def seconds(r: dict) -> str:
    return "-" if r["seconds"] is None else f"{r['seconds']:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="the project whose data/ and models/ a run made")
    ap.add_argument("--out", required=True, type=Path, help="the directory the results are kept in")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[2017, 2018])
    ap.add_argument("--isa", default="", help="ONEDNN_MAX_CPU_ISA for the runs ('' = the CPU's own)")
    ap.add_argument("--record", choices=list(VARIANTS), help="add RUN's own metrics as this variant")
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    if args.isa:
        env["ONEDNN_MAX_CPU_ISA"] = args.isa
    args.out.mkdir(parents=True, exist_ok=True)
    if args.record:
        seed = yaml.safe_load((args.data / "params.yaml").read_text())["base"]["seed"]
        metrics = {k: json.loads((args.data / f"metrics/{k}.json").read_text()) for k in ("train", "eval")}
        record = {"variant": args.record, "seed": seed, "seconds": None, **metrics}
        (args.out / f"{args.record}@{seed}.json").write_text(json.dumps(record, indent=1))
        args.variants = []
    for name in args.variants:
        for seed in args.seeds:
            kept = args.out / f"{name}@{seed}.json"
            if kept.exists():
                continue
            with tempfile.TemporaryDirectory() as tmp:
                r = run(VARIANTS[name], seed, Path(tmp), env, args.data)
            kept.write_text(json.dumps({"variant": name, "seed": seed, **r}, indent=1))
            print(f"{name} seed {seed}: {r['seconds']:.0f} s, val mIoU {r['eval']['miou']}", file=sys.stderr)

    rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("*@*.json"))]
    rows.sort(key=lambda r: (list(VARIANTS).index(r["variant"]) if r["variant"] in VARIANTS else 99, r["seed"]))
    print(f"\n{args.data}: val, mIoU and small / medium / large, mask AP; {os.cpu_count()} cores\n")
    print("| variant | seed | train s | model | per size | AP | fused | per size | teacher | per size |")
    print("|---|---:|---:|---:|---|---:|---:|---|---:|---|")
    for r in rows:
        e = r["eval"]
        print(
            f"| {r['variant']} | {r['seed']} | {seconds(r)} | {e['miou']:.4f} | {sizes(e)} | {e['AP']:.3f} | "
            f"{e['fused']['miou']:.4f} | {sizes(e['fused'])} | {e['teacher']['miou']:.4f} | {sizes(e['teacher'])} |"
        )


if __name__ == "__main__":
    main()
