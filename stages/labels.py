"""Stage ``labels``: boxes -> GrabCut, box and ground-truth labels in HDF5 shards (see :mod:`wss.labels.build`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import run
from wss import config
from wss.core import atomic
from wss.labels import build as labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument(
        "--data", default="data/raw", type=Path, help="the dataset (image paths in the table are relative to it)"
    )
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument(
        "--boundaries", default="data/boundaries", type=Path, help="HED maps, for labels.method: grabcut_plus"
    )
    ap.add_argument("--out", default="data/shards", type=Path)
    ap.add_argument("--metrics", default="metrics/labels.json", type=Path)
    args = ap.parse_args(argv)
    p = config.load(args.params)
    cfg = config.read(config.LabelsConfig, p)
    result = labels.run(args.data, args.instances, args.out, cfg, config.seed(p), args.boundaries)
    atomic.write_json(args.metrics, result)
    print(
        f"labels: mIoU vs ground truth  teacher ({result['method']}) {result['train']['miou_teacher']} (train) "
        f"{result['val']['miou_teacher']} (val), box {result['train']['miou_box']} (train) "
        f"{result['val']['miou_box']} (val); fallbacks {result['fallbacks']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
