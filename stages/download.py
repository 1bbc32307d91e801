"""Stage ``download``: put the ``data.source`` dataset, in its own format, at ``--out`` (default ``data/raw``).

``sample`` generates the embedded synthetic dataset (SBD layout).  Every other source is an
archive (.zip, .tar, .tar.gz) or a directory: ``data.archive`` when it holds a dataset, else
``data.url`` (resumable download, MD5 check against ``data.md5``); it is extracted safely and
atomically.  ``sbd`` keeps only the archive's ``benchmark_RELEASE/dataset`` and, with
``data.url`` empty, fetches the official release.

``data.archive`` is a DVC dependency of this stage (``dvc.yaml`` names ``${data.archive}``), so
DVC reruns it, and everything after it, when the dataset's content changes.  DVC needs that path
to exist even when nothing is read from it; its default, ``datasets/``, is a folder kept in git
that holds only a README until a dataset is put there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages import run
from wss import config
from wss.data import fetch, sample
from wss.data.readers import sbd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/raw", type=Path)
    ap.add_argument("--cache", default="data/downloads", type=Path, help="where partial downloads live")
    args = ap.parse_args(argv)
    p = config.load(args.params)
    data = config.read(config.DataConfig, p)
    if data.source == "sample":
        sample.generate(args.out, config.seed(p), config.read(config.SampleConfig, p))
    else:
        url, md5 = data.url, data.md5
        if data.source == "sbd" and not url:
            url, md5 = sbd.RELEASE_URL, md5 or sbd.RELEASE_MD5
        if not data.archive:
            raise fetch.FetchError(
                "data.archive is empty; DVC depends on it, so it names an existing path: the "
                "dataset, or datasets/ (the default) to download from data.url"
            )
        archive = Path(data.archive)
        if not archive.exists():
            raise fetch.FetchError(f"data.archive is {archive}, but there is no such file or directory")
        if not fetch.holds_dataset(archive):
            if not url:
                raise fetch.FetchError(
                    f"data.archive is {archive}, which holds no dataset: put the {data.source} "
                    "dataset there, or point data.archive at it (a .zip, .tar, .tar.gz or a "
                    "directory), or set data.url to download it"
                )
            archive = args.cache / Path(url).name
            if not archive.is_file():
                fetch.download(url, archive)
        if archive.is_file():
            print(f"verifying {archive}")
            fetch.verify(archive, md5)
        fetch.extract(archive, args.out, sbd.ARCHIVE_ROOT if data.source == "sbd" else "")
    print(f"{data.source} dataset ready at {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
