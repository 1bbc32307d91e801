"""Stage ``download``: put a dataset in SBD layout at ``--out`` (default ``data/sbd``).

``data.source: sample`` generates the embedded synthetic dataset; ``data.source: sbd`` fetches,
verifies and extracts the Berkeley release (or uses ``data.archive``, a local benchmark.tgz).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wss import fetch, params, sample, sbd

SOURCES = ("sample", "sbd")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/sbd", type=Path)
    ap.add_argument("--cache", default="data/downloads", type=Path, help="where partial downloads live")
    args = ap.parse_args(argv)
    p = params.load(args.params)
    data = params.section(p, "data")
    source = data.get("source")
    params.require(source in SOURCES, "data.source", f"be one of {', '.join(SOURCES)}", source)
    if source == "sample":
        cfg = params.typed(sample.SampleConfig, params.section(p, "data.sample"), "data.sample")
        sample.generate(args.out, params.seed(p), cfg)
    else:
        if data.get("archive"):
            archive = Path(data["archive"])
            if not archive.is_file():
                raise fetch.FetchError(f"data.archive is {archive}, but there is no such file")
        else:
            archive = args.cache / Path(data["url"]).name
            if not archive.is_file():
                fetch.download(data["url"], archive)
        print(f"verifying {archive}")
        fetch.verify(archive, data.get("md5"))
        fetch.extract(archive, args.out, sbd.ARCHIVE_ROOT)
    print(f"dataset ready at {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fetch.FetchError as exc:
        sys.exit(f"download: {exc}")
