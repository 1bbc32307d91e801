"""Fused masks against the teacher and the model, for networks of every strength, scored against the truth.

    python bench/fusion.py --model models/model.keras                       # in a workspace where dvc repro ran
    python bench/fusion.py --model weak.keras --model models/model.keras --weights 0,0.25,0.5

For each ``--model`` (its sidecar says how many instances it learnt from): the trust evidence
(:mod:`wss.evaluation.trust`: the instances and the crop agreement with the teacher, which need no
ground truth) and the weight ``evaluate.trust_*`` gives the model; then, on every instance of
``--split`` with a ground-truth mask, the mIoU of the teacher, of the model's mask, of the fused
masks at each of ``--weights`` (the model's share of the fused probability; 0 = the teacher) and
of the fused masks at the trusted weight (what ``export`` hands back).  Prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wss import config
from wss.core.metrics import iou
from wss.data.instances import by_key, gt_mask, read_table
from wss.evaluation import trust
from wss.evaluation.predictor import Predictor
from wss.labels import shards


def score(model_path: Path, args, cfg, rows) -> dict:
    predictor = Predictor.load(model_path, *cfg, args.data, args.boundaries)
    verdict = trust.judge(predictor, args.shards)
    weights = sorted({*args.weights, verdict["model_weight"]})
    ious = {"teacher": [], "model": [], **{w: [] for w in weights}}
    total = shards.count(args.shards, args.split)
    files = {key: r.file for key, r in rows.items()}
    insts = predictor.instances(args.shards, args.split, files)
    for inst in tqdm(insts, total=total, unit="inst", desc=model_path.stem):
        gt = gt_mask(rows[inst.key])
        if gt is None:
            continue
        ious["teacher"].append(iou(inst.teacher, gt))
        ious["model"].append(iou(inst.mask, gt))
        for w in weights:
            ious[w].append(iou(predictor.fused(inst, w), gt))
    mean = {k: float(np.mean(v)) for k, v in ious.items()}
    return {
        "model": model_path.name,
        "instances_used": verdict["instances"],
        "agreement": verdict["agreement"],
        "weight": verdict["model_weight"],
        "n": len(ious["teacher"]),
        "mean": mean,
        "weights": weights,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", action="append", type=Path, required=True)
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--data", default="data/raw", type=Path)
    ap.add_argument("--boundaries", default="data/boundaries", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default="0.25,0.5", help="the model's shares of the fused probability to score")
    args = ap.parse_args()
    args.weights = [float(w) for w in args.weights.split(",") if w]
    p = config.load(args.params)
    cfg = config.read(config.EvaluateConfig, p), config.read(config.RefineConfig, p)
    rows = by_key(read_table(args.instances))
    results = [score(m, args, cfg, rows) for m in args.model]
    weights = sorted({w for r in results for w in r["weights"]})
    head = [
        "model",
        "learnt from",
        "agreement (crops)",
        "weight",
        "n",
        "teacher",
        "model mIoU",
        *[f"fused w={w:g}" for w in weights],
        "handed back",
        "vs best of teacher/model",
    ]
    print(
        f"\n{args.split} instances with a ground-truth mask; evaluate.trust_min_instances "
        f"{cfg.trust_min_instances}, trust_agreement {list(cfg.trust_agreement)}\n"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        m = r["mean"]
        back = m[r["weight"]]
        cells = [
            r["model"],
            r["instances_used"],
            r["agreement"],
            r["weight"],
            r["n"],
            f"{m['teacher']:.4f}",
            f"{m['model']:.4f}",
            *[f"{m[w]:.4f}" if w in m else "" for w in weights],
            f"**{back:.4f}**",
            f"{back - max(m['teacher'], m['model']):+.4f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
