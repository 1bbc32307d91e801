"""Stage ``boundaries``: HED boundary maps of every image, for ``labels.method: grabcut_plus``
(see :mod:`wss.labels.boundaries`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run
from wss import config
from wss.labels import boundaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument(
        "--data", default="data/raw", type=Path, help="the dataset (image paths in the table are relative to it)"
    )
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--out", default="data/boundaries", type=Path)
    args = ap.parse_args(argv)
    p = config.load(args.params)
    cfg = config.read(config.BoundariesConfig, p)
    method = config.section(p, "labels")["method"]
    if method in boundaries.METHODS_WITH_BOUNDARIES:
        import_tensorflow_quietly()
    manifest = boundaries.run(args.data, args.instances, args.out, cfg, method)
    print(f"boundaries: {manifest['images']} maps under {args.out} (labels.method={method})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
