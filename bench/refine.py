"""Test-time refinement and fused masks against the ground truth, per COCO size bucket, with cost.

    python bench/refine.py --split val                   # in a workspace where dvc repro ran
    python bench/refine.py --split train --limit 300     # the user's own images: labels exist too
    python bench/refine.py --gammas '' --thresholds 0.3,0.4,0.5,0.6   # the model's masks at other thresholds

For every instance with a ground-truth mask: the model's mask (``evaluate.threshold``), the
teacher's label, and :mod:`wss.evaluation.refine`'s graph cut on the model's probability and on
the model's probability fused with the teacher, with the colour and (when the boundaries stage
wrote maps) the HED pairwise term, for each ``--gammas``; the model's mask at each of
``--thresholds``.  Prints mIoU per size bucket and the cut's cost per instance (one process).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from wss import config
from wss.core.image import read as read_image
from wss.core.metrics import iou, size_buckets
from wss.data.instances import by_key, gt_mask, read_table
from wss.evaluation import refine
from wss.evaluation.predictor import Predictor
from wss.labels import boundaries, shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/model.keras", type=Path)
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--data", default="data/raw", type=Path)
    ap.add_argument("--boundaries", default="data/boundaries", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--gammas", default="10,25,50", help="pairwise weights of the cuts ('' = no cut)")
    ap.add_argument("--thresholds", default="", help="the model's mask at these thresholds too, e.g. 0.3,0.4")
    ap.add_argument("--max-side", type=int, default=0)
    args = ap.parse_args()
    p = config.load(args.params)
    cfg = config.read(config.EvaluateConfig, p)
    cut = config.read(config.RefineConfig, p, apply=False)
    gammas = [float(g) for g in args.gammas.split(",") if g]
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    rows = by_key(read_table(args.instances))
    has_maps = refine.has_maps(args.boundaries)
    predictor = Predictor.load(args.model, cfg, cut)
    total = shards.count(args.shards, args.split)
    out, cost = [], {}
    for n, inst in enumerate(tqdm(predictor.instances(args.shards, args.split), total=total, unit="inst")):
        if args.limit and n >= args.limit:
            break
        r = rows[inst.key]
        gt = gt_mask(r)
        if gt is None:
            continue
        image = read_image(args.data / r.file) if gammas else None
        edges = boundaries.decode_map(boundaries.read_map(args.boundaries, r.file)) if has_maps and gammas else None
        fused = refine.fuse(inst.prob, inst.teacher) if gammas else None
        row = {
            "area": int(gt.sum()),
            "model": iou(inst.mask, gt),
            "teacher": iou(inst.teacher, gt),
            "model and teacher": iou(inst.mask & inst.teacher, gt),
            "model or teacher": iou(inst.mask | inst.teacher, gt),
        }
        for t in thresholds:
            row[f"model at threshold {t:g}"] = iou((inst.prob >= t).astype(np.uint8), gt)
        for g in gammas:
            for pair, e in (("colour", None), ("hed", edges)):
                if pair == "hed" and e is None:
                    continue
                for what, prob in (("model", inst.prob), ("fused", fused)):
                    name = f"{what} + cut ({pair}, gamma {g:g})"
                    t = time.perf_counter()
                    mask = refine.refine(image, prob, inst.box, e, g, cut.sigma, args.max_side)
                    cost.setdefault(name, []).append(time.perf_counter() - t)
                    row[name] = iou(mask, gt)
        out.append(row)
    df = pd.DataFrame(out)
    buckets = size_buckets(df.area.to_numpy())
    print(f"{len(df)} {args.split} instances with masks, max_side {args.max_side}")
    print("| masks | mIoU | " + " | ".join(buckets) + " | ms/instance |")
    print("|---|---:|" + "---:|" * len(buckets) + "---:|")
    for col in [c for c in df.columns if c != "area"]:
        ms = f"{1000 * np.mean(cost[col]):.1f}" if col in cost else ""
        per = " | ".join(f"{df[col][m].mean():.4f}" for m in buckets.values())
        print(f"| {col} | {df[col].mean():.4f} | {per} | {ms} |")
    print("n per size:", {k: int(m.sum()) for k, m in buckets.items()})


if __name__ == "__main__":
    main()
