"""Stage ``train``: the OSVOS parent network on the shards, labels chosen by ``train.labels``.

Writes the model and its sidecar, DVCLive curves, a summary, and fingerprinted checkpoints that a
killed or extended run resumes from (see :mod:`wss.net.training`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run

import_tensorflow_quietly()  # before wss imports TensorFlow

from wss import config
from wss.core import atomic
from wss.core import trust
from wss.data.instances import read_table
from wss.data import decisions
from wss.net import training


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", default="data/shards", type=Path)
    ap.add_argument("--init", default="models/vgg16_4ch.weights.h5", type=Path)
    ap.add_argument("--out", default="models/model.keras", type=Path)
    ap.add_argument("--checkpoints", default="models/checkpoints", type=Path)
    ap.add_argument("--live", default="metrics/train", type=Path)
    ap.add_argument("--metrics", default="metrics/train.json", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path, help="the instance table the decisions name")
    ap.add_argument(
        "--decisions", type=Path, help="the reviewer's decisions (review.decisions: a CSV or a directory of them)"
    )
    args = ap.parse_args(argv)
    p = config.load(args.params)
    cfg = config.read(config.TrainConfig, p)
    seed = config.seed(p)
    # The verdict's threshold is evaluate's, which decides how far the fused masks trust the network.
    ecfg = config.read(config.EvaluateConfig, p)
    decided = None
    if args.decisions:
        decided = decisions.join(decisions.read(args.decisions), read_table(args.instances))
    summary = training.train_rounds(cfg, args.shards, args.init, args.out, args.checkpoints, args.live, seed, decided)
    atomic.write_json(args.metrics, summary)
    print(f"train: done, {summary}")
    weak = trust.few_instances_line(summary["instances_used"], ecfg.trust_min_instances)
    if weak:
        print(f"train: {weak}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
