"""Stage ``convert``: the dataset at ``--data``, in its own format (``data.source``) -> the instance table (``--out``).

One bad file never stops the run: it becomes a row of ``rejects.csv`` (see :mod:`wss.data.convert`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import run
from wss import config
from wss.config import ConvertConfig, DataConfig
from wss.data.convert import convert
from wss.errors import StageInputError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/raw", type=Path)
    ap.add_argument("--out", default="data/instances", type=Path)
    args = ap.parse_args(argv)
    p = config.load(args.params)
    data = config.read(DataConfig, p)
    ccfg = config.read(ConvertConfig, p)
    if not args.data.is_dir():
        raise StageInputError(f"{args.data} does not exist; run the download stage first (dvc repro download)")
    convert(args.data, args.out, data, ccfg.max_reject_fraction, ccfg.max_image_pixels)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
