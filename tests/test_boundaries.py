import json

import cv2
import numpy as np
import pytest

from tests.conftest import labels_cfg
from wss import config
from wss.data.instances import read_table
from wss.errors import StageInputError
from wss.labels import boundaries, shards
from wss.labels import build as labels

CFG = config.BoundariesConfig(batch_size=4)


@pytest.fixture(scope="module")
def hed():
    return boundaries.load_model()


def test_detect_finds_a_square_and_ignores_padding(hed):
    """A grey square on black: its rim is a boundary, its inside and the far background are not;
    an image padded in a batch with a larger one gets the map it gets alone."""
    img = np.zeros((72, 88, 3), np.uint8)
    img[20:52, 30:62] = 200
    big = np.full((120, 130, 3), 90, np.uint8)
    alone = boundaries.detect(hed, [img])[0]
    batched = boundaries.detect(hed, [img, big])[0]
    assert alone.shape == batched.shape == (72, 88)
    assert alone[20, 40:52].mean() > 0.5 and alone[36, 46] < 0.1 and alone[5, 5] < 0.1
    # Reflect padding adds no edge of its own, but HED's deep layers see far: a batch-mate changes
    # the map a little (so the stage fixes the batches, see the next test).
    assert np.abs(alone - batched).mean() < 0.01 and batched[20, 40:52].mean() > 0.5


def test_stage_writes_one_map_per_image_and_resumes_batch_by_batch(
    tiny_sbd, tiny_instances, tmp_path, hed, monkeypatch
):
    monkeypatch.setattr(boundaries, "load_model", lambda: hed)
    out = tmp_path / "boundaries"
    manifest = boundaries.run(tiny_sbd, tiny_instances, out, CFG, "grabcut_plus")
    files = sorted(set(read_table(tiny_instances).file))
    assert manifest["images"] == len(files) == len(list(out.glob("*.png")))
    for f in files:
        edges = boundaries.decode_map(boundaries.read_map(out, f))
        assert edges.shape == cv2.imread(str(tiny_sbd / f)).shape[:2]
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    # A killed run: one map of the last batch missing, no manifest.  The rerun redoes that batch only.
    table = read_table(tiny_instances).drop_duplicates("file").sort_values(["height", "width", "file"])
    lost = boundaries.map_name(table.file.iloc[0])  # in the first batch, a full one
    (out / lost).unlink()
    (out / boundaries.MANIFEST).unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    boundaries.run(tiny_sbd, tiny_instances, out, CFG, "grabcut_plus")
    again = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert again == first
    redone = {n for n, t in before.items() if (out / n).stat().st_mtime_ns != t}
    assert len(redone) == CFG.batch_size - 1  # the lost map's batch-mates, nothing else
    assert json.loads((out / boundaries.MANIFEST).read_text())["images"] == len(files)


def test_grabcut_needs_no_maps(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "boundaries"
    manifest = boundaries.run(tiny_sbd, tiny_instances, out, CFG, "grabcut")
    assert manifest["images"] == 0 and not list(out.glob("*.png"))


def test_grabcut_plus_shards_are_fingerprinted_with_their_maps(tiny_sbd, tiny_instances, tmp_path, hed, monkeypatch):
    monkeypatch.setattr(boundaries, "load_model", lambda: hed)
    maps = tmp_path / "boundaries"
    boundaries.run(tiny_sbd, tiny_instances, maps, CFG, "grabcut_plus")
    cfg = labels_cfg(method="grabcut_plus", crop_size=32, shard_size=4, n_jobs=1)
    out = tmp_path / "shards"
    result = labels.run(tiny_sbd, tiny_instances, out, cfg, seed=1, boundaries_dir=maps)
    assert shards.read_manifest(out)["method"] == "grabcut_plus"
    assert result["train"]["miou_teacher"] > result["train"]["miou_box"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")}
    # Change the map of the first image: its shard (and only it) is rebuilt.
    first = read_table(tiny_instances).file.iloc[0]
    path = maps / boundaries.map_name(first)
    edges = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(path), 255 - edges)
    labels.run(tiny_sbd, tiny_instances, out, cfg, seed=1, boundaries_dir=maps)
    changed = {n for n, t in mtimes.items() if (out / n).stat().st_mtime_ns != t}
    assert changed == {"shard-00000.h5"}
    with pytest.raises(StageInputError, match="boundaries stage"):
        labels.run(tiny_sbd, tiny_instances, tmp_path / "other", cfg, seed=1, boundaries_dir=tmp_path / "nowhere")
