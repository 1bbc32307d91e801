"""Stage ``export``: the masks to take home, for every instance: written into the dataset's own
annotation files (``export.masks``: the model's, the teacher's or the two fused), as COCO files of
each kind of mask, and a review gallery, lowest quality first (see :mod:`wss.evaluation.export`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run

import_tensorflow_quietly()  # before wss imports TensorFlow

from wss import config
from wss.config import EvaluateConfig, ExportConfig, RefineConfig, ReviewConfig
from wss.data.instances import read_table
from wss.data import decisions
from wss.evaluation import trust
from wss.evaluation.predictor import Predictor
from wss.evaluation.export import export


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/model.keras", type=Path)
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--data", default="data/raw", type=Path, help="the dataset, whose own files are written back")
    ap.add_argument("--boundaries", default="data/boundaries", type=Path, help="HED maps, for refine.pairwise: hed")
    ap.add_argument("--out", default="data/export", type=Path)
    ap.add_argument(
        "--verdict",
        type=Path,
        help="evaluate's metrics (metrics/eval.json): its verdict on this model is reused, not measured again",
    )
    ap.add_argument(
        "--decisions", type=Path, help="the reviewer's decisions (review.decisions: a CSV or a directory of them)"
    )
    args = ap.parse_args(argv)
    # The model's masks are made exactly as evaluate scores them: its threshold, flip and batch size.
    p = config.load(args.params)
    cfg, cut, ecfg, rcfg = (config.read(c, p) for c in (EvaluateConfig, RefineConfig, ExportConfig, ReviewConfig))
    decided = decisions.empty()
    if args.decisions:
        decided = decisions.join(decisions.read(args.decisions), read_table(args.instances))
    predictor = Predictor.load(args.model, cfg, cut, args.data, args.boundaries)
    verdict = trust.recorded(args.verdict, cfg) if args.verdict else trust.judge(predictor, args.shards)
    if verdict["weak"]:
        print(f"export: {verdict['line']}")
    counts = export(predictor, args.shards, args.instances, args.data, args.out, ecfg.masks, rcfg, verdict, decided)
    for name, n in counts.items():
        if name == "review":
            order = "the score refitted on your decisions" if n["refitted"] else "quality"
            print(
                f"export: {args.out / 'review/index.html'}: {n['masks']} masks to review, worst first by {order}; {n}"
            )
        elif name == "decisions":
            if not n["accepted"] + n["rejected"]:
                continue
            print(
                f"export: your decisions ({args.decisions}): {n['accepted']} masks accepted (written as accepted), "
                f"{n['rejected']} rejected ({'left out' if n['rejected_as'] == 'drop' else 'flagged'}), "
                f"{n['not_reviewed']} not reviewed"
            )
        elif isinstance(n, dict):
            print(f"export: {args.out / name}/: {ecfg.masks} masks in the dataset's own format, {n}")
        else:
            print(f"export: {args.out / name}: {n} masks")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
