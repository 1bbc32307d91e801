"""Getting a dataset archive: a resumable HTTP download, an MD5 check and a safe, atomic extraction."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from wss.core import atomic
from wss.errors import DataError

CHUNK = 1 << 20


class FetchError(DataError):
    """The archive could not be obtained or verified; the message says what to do."""


def holds_dataset(path: Path) -> bool:
    """Whether ``path`` (an existing file or directory) is a dataset rather than an empty holder.

    A file always is.  A directory is unless it holds nothing but dot files and ``README.md``:
    the project's ``datasets/`` folder, which exists so that DVC has a path to depend on.
    """
    if not path.is_dir():
        return True
    return any(not (p.name.startswith(".") or p.name == "README.md") for p in path.iterdir())


def md5sum(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def download(url: str, dest: Path, timeout: float = 30.0, attempts: int = 5) -> Path:
    """Stream ``url`` to ``dest``, resuming ``dest.part`` with HTTP Range requests.

    A dropped connection is resumed where it stopped, up to ``attempts`` times; a part file
    left by an earlier, interrupted run is resumed too.  The finished file appears under
    ``dest`` only once complete.  A server that ignores Range gets a clean restart rather than
    a corrupt concatenation.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            if _fetch_once(url, part, timeout):
                os.replace(part, dest)
                return dest
        except _Interrupted as exc:
            print(f"download interrupted ({exc}); resuming, attempt {attempt + 1} of {attempts}")
    raise FetchError(f"download of {url} kept failing after {attempts} attempts; run again to resume from {part}")


class _Interrupted(Exception):
    """The transfer stopped early; the part file holds what arrived."""


def _fetch_once(url: str, part: Path, timeout: float) -> bool:
    """One request; True when ``part`` is now the complete file."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is already the whole thing
            return True
        raise FetchError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(
            f"cannot download {url} ({getattr(exc, 'reason', exc)}). Without network access, download "
            f"it elsewhere and either copy it to {part.with_suffix('')} or set data.archive in "
            f"params.yaml to its path, then run `dvc repro` again."
        ) from exc
    with response:
        resumed = bool(have) and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        try:
            with (
                open(part, "ab" if resumed else "wb") as f,
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"download {part.stem}") as bar,
            ):
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
        except (http.client.IncompleteRead, OSError) as exc:
            raise _Interrupted(f"{type(exc).__name__} after {part.stat().st_size} bytes") from exc
    if total is not None and part.stat().st_size < total:
        raise _Interrupted(f"got {part.stat().st_size} of {total} bytes")
    return True


def verify(path: Path, md5: str | None) -> None:
    """Raise :class:`FetchError` unless ``path`` has MD5 ``md5`` (skipped when ``md5`` is empty)."""
    if not md5:
        return
    got = md5sum(path)
    if got.lower() != md5.lower():
        raise FetchError(
            f"{path}: MD5 {got} does not match data.md5 {md5}. The file is corrupt or not the "
            f"expected release; delete it and download again, or fix data.md5 in params.yaml."
        )


def extract(archive: Path, out_dir: Path, member_root: str = "") -> None:
    """Put ``member_root`` of ``archive`` (a .zip, a tar of any compression, or a directory) at
    ``out_dir``, atomically and safely.

    No member may land outside the target: tarfile's ``data`` filter rejects ``../``, absolute
    paths, links pointing out and special files, and zip members are checked the same way.  A
    directory is linked file by file (hard links, copies across file systems), not moved.
    Extraction goes to a temporary directory that replaces ``out_dir`` only on success.
    """
    archive = Path(archive)
    with atomic.target(out_dir, directory=True) as tmp:
        work = tmp / "_extract"
        try:
            if archive.is_dir():
                shutil.copytree(archive, work, copy_function=link_or_copy, symlinks=False)
            elif zipfile.is_zipfile(archive):
                _unzip(archive, work)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(work, filter="data")
        except tarfile.FilterError as exc:
            raise FetchError(f"{archive}: unsafe archive member rejected ({exc})") from exc
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise FetchError(
                f"{archive}: cannot extract ({type(exc).__name__}: {exc}); is it a .zip, .tar, .tar.gz or a directory?"
            ) from exc
        src = work / member_root if member_root else work
        if not src.is_dir():
            raise FetchError(f"{archive}: has no {member_root}/ directory; is this the SBD benchmark.tgz?")
        for item in src.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(work)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """``dst`` as a hard link to ``src`` where the file system allows (no bytes copied), else a copy;
    an existing ``dst`` is replaced."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _unzip(archive: Path, work: Path) -> None:
    """Extract a zip whose every member stays inside ``work`` (zipfile would silently rewrite a bad name)."""
    work.mkdir(parents=True)
    root = work.resolve()
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = (work / info.filename).resolve()
            if info.filename.startswith(("/", "\\")) or not target.is_relative_to(root):
                raise FetchError(f"{archive}: unsafe archive member rejected ({info.filename!r} leaves the target)")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise FetchError(f"{archive}: unsafe archive member rejected ({info.filename!r} is a symlink)")
        z.extractall(work)
