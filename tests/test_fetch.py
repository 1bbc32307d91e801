"""The SBD download path against a real HTTP server on 127.0.0.1 that the tests start."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stages import download
from tests.conftest import DATA
from tests.conftest import write_params as params_file
from wss.data import convert, fetch
from wss.data.readers import sbd


def make_archive(dataset: Path, path: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A benchmark.tgz holding ``dataset`` under benchmark_RELEASE/dataset (plus ``extra`` members)."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(dataset, arcname=sbd.ARCHIVE_ROOT)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


class Server:
    """Serves one payload; honours Range; can cut the first ``cut`` responses short."""

    def __init__(self, payload: bytes, cut: int = 0, ranges: bool = True):
        self.payload, self.cut, self.ranges = payload, cut, ranges
        self.requests: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if (rng and outer.ranges) else 0
                if start >= len(outer.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = outer.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut > 0:
                    outer.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/benchmark.tgz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(tiny_sbd, tmp_path):
    path = tmp_path / "benchmark.tgz"
    data = make_archive(tiny_sbd, path)
    return path, data, hashlib.md5(data).hexdigest()


def write_params(tmp_path, **data):
    holder = tmp_path / "datasets"  # as the project's datasets/: only a README
    holder.mkdir(exist_ok=True)
    (holder / "README.md").write_text("put a dataset here")
    over = {"source": "sbd", "url": "", "md5": "", "archive": str(holder), "annotations": "", **data}
    return str(params_file(tmp_path / "params.yaml", data=over))


def test_interrupted_download_resumes(archive, tmp_path):
    _, data, md5 = archive
    with Server(data, cut=2) as srv:
        dest = fetch.download(srv.url, tmp_path / "dl" / "benchmark.tgz")
    assert dest.read_bytes() == data and fetch.md5sum(dest) == md5
    assert srv.requests[0] is None and srv.requests[1].startswith("bytes=") and len(srv.requests) == 3
    assert not dest.with_name("benchmark.tgz.part").exists()


def test_part_file_from_killed_run_is_resumed(archive, tmp_path):
    _, data, _ = archive
    part = tmp_path / "benchmark.tgz.part"
    part.write_bytes(data[:1000])
    with Server(data) as srv:
        fetch.download(srv.url, tmp_path / "benchmark.tgz")
    assert srv.requests == ["bytes=1000-"]
    assert (tmp_path / "benchmark.tgz").read_bytes() == data


def test_server_without_range_restarts_cleanly(archive, tmp_path):
    _, data, _ = archive
    (tmp_path / "benchmark.tgz.part").write_bytes(b"stale bytes")
    with Server(data, ranges=False) as srv:
        fetch.download(srv.url, tmp_path / "benchmark.tgz")
    assert (tmp_path / "benchmark.tgz").read_bytes() == data


def test_download_stage_end_to_end_then_convert(archive, tmp_path):
    _, data, md5 = archive
    out = tmp_path / "extracted"
    with Server(data) as srv:
        params = write_params(tmp_path, url=srv.url, md5=md5)
        download.main(["--params", params, "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert sbd.read_split(out, "train") and (out / "img").is_dir()
    table = convert.convert(out, tmp_path / "instances", DATA, 0.0)
    assert len(table) > 0


def test_checksum_mismatch_leaves_no_dataset(archive, tmp_path):
    _, data, _ = archive
    out = tmp_path / "extracted"
    with Server(data) as srv:
        params = write_params(tmp_path, url=srv.url, md5="0" * 32)
        with pytest.raises(fetch.FetchError, match="does not match data.md5"):
            download.main(["--params", params, "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_local_archive_is_used_without_network(archive, tmp_path):
    path, _, md5 = archive
    out = tmp_path / "extracted"
    params = write_params(tmp_path, url="http://127.0.0.1:9/never", md5=md5, archive=str(path))
    download.main(["--params", params, "--out", str(out)])
    assert (out / "train.txt").is_file()


def test_missing_local_archive_names_the_file(tmp_path):
    params = write_params(tmp_path, archive=str(tmp_path / "nope.tgz"))
    with pytest.raises(fetch.FetchError, match="nope.tgz"):
        download.main(["--params", params, "--out", str(tmp_path / "extracted")])


def test_an_empty_datasets_folder_says_what_to_do(tmp_path):
    params = write_params(tmp_path, source="coco")
    with pytest.raises(fetch.FetchError, match=r"datasets, which holds no dataset: put the coco dataset there"):
        download.main(["--params", params, "--out", str(tmp_path / "extracted")])
    assert not (tmp_path / "extracted").exists()


def test_a_folder_holds_a_dataset_once_anything_but_its_readme_is_in_it(tmp_path):
    (tmp_path / "README.md").write_text("x")
    (tmp_path / ".gitignore").write_text("*")
    assert not fetch.holds_dataset(tmp_path)
    (tmp_path / "images").mkdir()
    assert fetch.holds_dataset(tmp_path)
    assert fetch.holds_dataset(tmp_path / "README.md")  # a file is an archive


def test_offline_says_what_to_do(tmp_path):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(fetch.FetchError, match="set data.archive"):
        fetch.download("http://127.0.0.1:9/benchmark.tgz", tmp_path / "benchmark.tgz", timeout=5)


def test_member_escaping_target_is_rejected(tiny_sbd, tmp_path):
    path = tmp_path / "evil.tgz"
    make_archive(tiny_sbd, path, extra={"benchmark_RELEASE/../../escaped.txt": b"gotcha"})
    out = tmp_path / "x" / "extracted"
    with pytest.raises(fetch.FetchError, match="unsafe archive member"):
        fetch.extract(path, out, sbd.ARCHIVE_ROOT)
    assert not out.exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_archive_without_dataset_dir(tmp_path):
    src = tmp_path / "other"
    src.mkdir()
    (src / "readme").write_text("hi")
    path = tmp_path / "other.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="other")
    with pytest.raises(fetch.FetchError, match="is this the SBD benchmark.tgz"):
        fetch.extract(path, tmp_path / "extracted", sbd.ARCHIVE_ROOT)
    assert not (tmp_path / "extracted").exists()


def test_truncated_archive(archive, tmp_path):
    path, data, _ = archive
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(fetch.FetchError, match="cannot extract"):
        fetch.extract(path, tmp_path / "extracted", sbd.ARCHIVE_ROOT)
    assert not (tmp_path / "extracted").exists()
