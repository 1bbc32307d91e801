"""Stage ``convert``: SBD layout (``--sbd``) -> instance table and ground-truth masks (``--out``).

One bad file never stops the run: it becomes a row of ``rejects.csv`` (see :mod:`wss.convert`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wss import params
from wss.convert import ConvertConfig, convert


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--sbd", default="data/sbd", type=Path)
    ap.add_argument("--out", default="data/instances", type=Path)
    args = ap.parse_args(argv)
    section = params.section(params.load(args.params), "convert")
    max_reject = params.typed(ConvertConfig, section, "convert").max_reject_fraction
    if not args.sbd.is_dir():
        raise SystemExit(f"convert: {args.sbd} does not exist; run the download stage first (dvc repro download)")
    convert(args.sbd, args.out, max_reject)
    return 0


if __name__ == "__main__":
    sys.exit(main())
