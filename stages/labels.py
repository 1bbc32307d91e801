"""Stage ``labels``: boxes -> GrabCut, box and ground-truth labels in HDF5 shards (see :mod:`wss.labels`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wss import atomic, labels, params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/raw", type=Path, help="the dataset (image paths in the table are relative to it)")
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--boundaries", default="data/boundaries", type=Path, help="HED maps, for labels.method: grabcut_plus")
    ap.add_argument("--out", default="data/shards", type=Path)
    ap.add_argument("--metrics", default="metrics/labels.json", type=Path)
    args = ap.parse_args(argv)
    p = params.load(args.params)
    cfg = labels.LabelsConfig.from_params(params.section(p, "labels"))
    result = labels.run(args.data, args.instances, args.out, cfg, params.seed(p), args.boundaries)
    atomic.write_json(args.metrics, result)
    print(f"labels: mIoU vs ground truth  grabcut {result['train']['miou_grabcut']} (train) "
          f"{result['val']['miou_grabcut']} (val), box {result['train']['miou_box']} (train) "
          f"{result['val']['miou_box']} (val); fallbacks {result['fallbacks']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
