"""Stage ``surgery``: a 3-channel VGG16 trunk -> the 4-channel trunk (RGB + box) that training starts from.

``surgery.init`` picks the 3-channel weights (see :mod:`wss.net.surgery`); conv1_1 gets a box channel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import import_tensorflow_quietly, run

import_tensorflow_quietly()  # before wss imports TensorFlow

from wss import config
from wss.net import surgery


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="models/vgg16_4ch.weights.h5", type=Path)
    args = ap.parse_args(argv)
    p = config.load(args.params)
    cfg = config.read(config.SurgeryConfig, p)
    trunk = surgery.make_trunk(cfg, config.seed(p))
    surgery.save(trunk, args.out)
    print(f"surgery: {cfg.init} VGG16 trunk widened to 4 channels (box filters ~ N(0, {cfg.box_std})) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
