"""The review loop with a simulated reviewer, on a finished run of a dataset that has its masks.

    python bench/review.py --run RUN [--ks 5 10 20] [--retrain 10] [--seeds 5]

``RUN`` is a pipeline workspace after ``export`` (``dvc repro``, or ``bench/pipeline.py --keep``)
on a dataset with ground-truth masks (coco128, cocomval-dev).  The reviewer sees the masks the
export wrote into the user's files (``export.masks``) and accepts one when its IoU with the true
mask is at least 0.5, rejects it otherwise.  It reviews ``k``% of them, either the lowest ranked
by the quality score (as the gallery orders them) or a random ``k``%.  For each ``k``:

(a) the AUROC, for IoU < 0.5, of the score refitted on those decisions
    (:func:`wss.evaluation.review.refit`) on the masks not reviewed, beside the quality score's on
    the same masks (a random review: the mean over ``--seeds`` draws), and the ceiling: the
    refit on a random 80% of all masks, scored on the other 20%;
(b) with ``--retrain K``: the ``train`` and ``export`` stages run again with the decisions of
    ``K``% (``--decisions``, as ``dvc repro`` does after a review) and the masks that reach the
    user's files scored, over every instance and over the ones not reviewed, against the export
    without a retrain, for both orders (the random one: the first seed's draw).

The retrains run in ``RUN/bench-review/``; the run's own outputs are not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from wss.core.masks import from_segmentation
from wss.core.metrics import iou
from wss.data import decisions
from wss.data.instances import by_key, gt_mask, read_table
from wss.evaluation import review


from roundtrip import auroc


def exported(run: Path, export: Path, masks: str) -> dict[str, np.ndarray]:
    """The ``masks`` kind of mask of every instance, as the export at ``export`` wrote them."""
    rows = by_key(read_table(run / "data/instances"))
    out = {}
    for f in sorted(export.glob(f"{masks}_*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            r = rows[a["instance"]]
            out[a["instance"]] = from_segmentation(a["segmentation"], int(r.height), int(r.width))
    return out


def ious(run: Path, masks: dict[str, np.ndarray]) -> pd.Series:
    """IoU with the true mask of every instance that has one."""
    rows = by_key(read_table(run / "data/instances"))
    return pd.Series({k: iou(m, gt_mask(rows[k])) for k, m in masks.items() if rows[k].mask})


def picked(ranked: pd.DataFrame, k: float, order: str, seed: int) -> pd.DataFrame:
    n = max(1, round(len(ranked) * k / 100))
    if order == "lowest quality":
        return ranked.head(n)
    return ranked.sample(n=n, random_state=seed)


def refit_rows(rows: pd.DataFrame, good: pd.Series, k: float, order: str, seed: int, min_decisions: int) -> dict:
    seen = picked(rows, k, order, seed)
    decided = pd.DataFrame({"key": seen.key, "decision": np.where(good[seen.key], "accept", "reject")})
    p, report = review.refit(rows, decided, min_decisions)
    rest = ~rows.key.isin(seen.key)
    bad = ~good[rows.key[rest]].to_numpy()
    return {
        "reviewed": len(seen),
        "rejected": report["rejected"],
        "auroc_quality": auroc(rows.quality[rest].to_numpy(), bad),
        "auroc_refitted": auroc(p[rest].to_numpy(), bad) if report["refitted"] else None,
        "weights": report.get("weights", []),
    }


def ceiling(rows: pd.DataFrame, good: pd.Series, min_decisions: int) -> None:
    """What the refit could reach with decisions on most masks: fitted on a random 80% of them and
    scored on the other 20%, five folds (every mask scored once)."""
    from sklearn.model_selection import StratifiedKFold

    y = good[rows.key].to_numpy()
    p = np.zeros(len(rows))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(rows, y):
        decided = pd.DataFrame({"key": rows.key.iloc[fit], "decision": np.where(y[fit], "accept", "reject")})
        p[held] = review.refit(rows, decided, min_decisions)[0].to_numpy()[held]
    print(
        f"\nThe ceiling: the quality over all masks AUROC {auroc(rows.quality.to_numpy(), ~y):.3f}; "
        f"the refit on a random 80%, scored on the other 20% (5 folds), {auroc(p, ~y):.3f}"
    )


def average(values: list) -> float | None:
    """The mean of the values that are not ``None`` (``None`` when none is)."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def retrain(run: Path, rows: pd.DataFrame, good: pd.Series, masks: dict, k: float, order: str, seed: int) -> Path:
    """``train`` and ``export`` again with the simulated decisions on ``k``%; returns the export."""
    work = run / "bench-review" / f"{order.replace(' ', '-')}-{k:g}"
    work.mkdir(parents=True, exist_ok=True)
    seen = picked(rows, k, order, seed)
    verdicts = {key: "accept" if good[key] else "reject" for key in seen.key}
    (work / "reviews").mkdir(exist_ok=True)  # as a user saves them: review.decisions' default, beside params.yaml
    decisions.write(work / "reviews/decisions.csv", rows, verdicts, masks, "2026-12-07T00:00:00Z")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(run)}
    d = run / "data"
    t0 = time.perf_counter()
    for cmd in (
        ["stages.train", "--shards", d / "shards", "--init", run / "models/vgg16_4ch.weights.h5",
         "--out", work / "model.keras", "--checkpoints", work / "checkpoints", "--live", work / "live",
         "--metrics", work / "train.json", "--instances", d / "instances", "--decisions", "reviews"],
        ["stages.export", "--model", work / "model.keras", "--shards", d / "shards", "--instances", d / "instances",
         "--data", d / "raw", "--boundaries", d / "boundaries", "--decisions", "reviews",
         "--out", "export"],
    ):  # fmt: skip
        res = subprocess.run(
            [sys.executable, "-m", *map(str, cmd), "--params", str(run / "params.yaml")],
            cwd=work, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if res.returncode:
            raise SystemExit(f"{cmd[0]} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        with open(work / "log.txt", "a") as log:  # what the stages printed
            log.write(res.stdout)
    print(f"retrained ({order}, {k:g}%) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return work / "export"


def handed_back(run: Path, export: Path, kind: str, decided: dict[str, str], masks: dict) -> dict[str, np.ndarray]:
    """The masks in the user's files: the export's, the accepted ones as accepted."""
    out = exported(run, export, kind)
    out.update({k: masks[k] for k, d in decided.items() if d == "accept"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--ks", nargs="*", type=float, default=[5, 10, 20])
    ap.add_argument("--retrain", nargs="*", type=float, default=[], help="the k of the retrained rows")
    ap.add_argument("--seeds", type=int, default=5, help="random reviews drawn for (a)")
    args = ap.parse_args()
    run = args.run.resolve()
    params = yaml.safe_load((run / "params.yaml").read_text())
    kind, min_decisions = params["export"]["masks"], params["review"]["min_decisions"]
    rows = pd.read_csv(run / "data/export/review/review.csv", dtype={"source_id": str}, keep_default_na=False)
    rows = review.rank(rows.drop(columns=[c for c in ("p_accept", "decision") if c in rows]))
    masks = exported(run, run / "data/export", kind)
    score = ious(run, masks)
    rows = rows[rows.key.isin(score.index)].reset_index(drop=True)
    good = score >= 0.5
    print(f"{run.name}: {len(rows)} {kind} masks with a true mask, {int((~good).sum())} with IoU < 0.5\n")
    print("(a) the score refitted on the decisions, AUROC for IoU < 0.5 on the masks not reviewed\n")
    print("| k | reviewed | order | rejected | AUROC, quality | AUROC, refitted |")
    print("|---:|---:|---|---:|---:|---:|")
    for k in args.ks:
        for order in ("lowest quality", "random"):
            seeds = range(args.seeds) if order == "random" else [0]
            got = [refit_rows(rows, good, k, order, s, min_decisions) for s in seeds]
            mean = {key: average([g[key] for g in got]) for key in ("rejected", "auroc_quality", "auroc_refitted")}
            refitted = mean["auroc_refitted"]
            print(
                f"| {k:g}% | {got[0]['reviewed']} | {order}{f' ({len(got)} draws)' if len(got) > 1 else ''} | "
                f"{mean['rejected']:.0f} | {mean['auroc_quality']:.3f} | "
                f"{f'{refitted:.3f}' if refitted is not None else 'too few decisions'} |"
            )
        lowest = refit_rows(rows, good, k, "lowest quality", 0, min_decisions)["weights"]
        top = ", ".join(f"{name} {w:+.2f}" for name, w in lowest[:5])
        print(f"|  |  | the largest weights, lowest {k:g}%: {top} |  |  |  |")
    ceiling(rows, good, min_decisions)
    if not args.retrain:
        return
    print("\n(b, c) the masks in your files after one retrain with the decisions (mIoU against the truth)\n")
    print("| k | order | retrained | mIoU, all | mIoU, not reviewed | mIoU, reviewed |")
    print("|---:|---|---|---:|---:|---:|")
    for k in args.retrain:
        for order in ("lowest quality", "random"):
            seen = picked(rows, k, order, 0)
            verdicts = {key: "accept" if good[key] else "reject" for key in seen.key}
            rest = ~score.index.isin(seen.key)
            for again in (False, True):
                export = retrain(run, rows, good, masks, k, order, 0) if again else run / "data/export"
                got = ious(run, handed_back(run, export, kind, verdicts, masks))[score.index]
                print(
                    f"| {k:g}% | {order} | {'yes' if again else 'no'} | {got.mean():.4f} | {got[rest].mean():.4f} | "
                    f"{got[~rest].mean():.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
