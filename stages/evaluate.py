"""Stage ``evaluate``: the trained model on every val instance, scored at full resolution.

Writes the headline numbers of the model and of its teacher, the raw GrabCut labels (at full
resolution and pasted through the crops), per-class numbers and plots (see :mod:`wss.evaluation.evaluate`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run

import_tensorflow_quietly()  # before wss imports TensorFlow

from wss import config
from wss.config import EvaluateConfig, RefineConfig
from wss.core import atomic
from wss.evaluation import trust
from wss.evaluation.evaluate import evaluate
from wss.evaluation.predictor import Predictor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/model.keras", type=Path)
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--data", default="data/raw", type=Path, help="the dataset (for the overlays' images)")
    ap.add_argument("--boundaries", default="data/boundaries", type=Path, help="HED maps, for refine.pairwise: hed")
    ap.add_argument("--metrics", default="metrics/eval.json", type=Path)
    ap.add_argument("--per-class", default="metrics/eval_per_class.json", type=Path)
    ap.add_argument("--plots", default="metrics/eval", type=Path)
    args = ap.parse_args(argv)
    p = config.load(args.params)
    cfg, cut = config.read(EvaluateConfig, p), config.read(RefineConfig, p)
    predictor = Predictor.load(args.model, cfg, cut, args.data, args.boundaries)
    verdict = trust.judge(predictor, args.shards)
    if verdict["weak"]:
        print(f"evaluate: {verdict['line']}")
    result, per_class = evaluate(predictor, args.shards, args.instances, args.data, args.plots, verdict)
    atomic.write_json(args.metrics, result)
    atomic.write_json(args.per_class, per_class)
    a, sc = result["agreement_with_teacher"], result["score"]
    free = (
        f"agreement with the teacher ({result['teacher_method']}) mIoU {a['miou']:.4f}, score median "
        f"{sc['median']:.4f} ({result['instances_with_masks']} instances with masks, "
        f"{result['instances_without_masks']} without)"
    )
    if not result["instances_with_masks"]:
        print(f"evaluate: no val instance has a ground-truth mask (a boxes-only dataset): {free}")
        return 0
    g, c, b = result["teacher"], result["teacher_via_crops"], result["filled_box"]
    print(
        f"evaluate: model mIoU {result['miou']:.4f} mask AP {result['AP']} recall@0.5 {result['recall@0.5']:.4f} "
        f"boundary F {result['boundary_f']:.4f} | teacher ({result['teacher_method']}) mIoU {g['miou']:.4f} (via the "
        f"crops {c['miou']:.4f}) mask AP {g['AP']} | fused mIoU {result['fused']['miou']:.4f} | filled box mIoU "
        f"{b['miou']:.4f} | {free}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
