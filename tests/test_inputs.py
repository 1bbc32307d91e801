import h5py
import numpy as np
import pytest

from tests.conftest import labels_cfg, train_cfg
from wss.core.masks import VOID
from wss.labels import build as labels
from wss.labels import shards
from wss.net import inputs
from wss.net.model import BOX_SCALE, VGG_MEAN_BGR

NO_AUG = {"flip": False, "scale_jitter": 0.0, "box_jitter": 0.0}
AUG = {"flip": True, "scale_jitter": 0.3, "box_jitter": 0.3, "shuffle_buffer": 8}


def test_eval_pipeline_reproduces_shard_content(tiny_shards):
    files = shards.files(tiny_shards, "train")
    data = [shards.read(f) for f in files]
    for source in ("teacher", "box", "gt"):
        ds = inputs.dataset(
            files, train_cfg(batch_size=3, skip_fallbacks=False, **NO_AUG), 32, training=False, labels=source
        )
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        x, y = np.concatenate(xs), np.concatenate(ys)
        n = sum(len(d["key"]) for d in data)
        assert x.shape == (n, 32, 32, 4) and y.shape == (n, 32, 32)
        np.testing.assert_array_equal(y, np.concatenate([d[shards.LABEL_FIELDS[source]] for d in data]))
    rgb = np.concatenate([d["image"] for d in data]).astype(np.float32)
    np.testing.assert_allclose(x[..., :3], rgb[..., ::-1] - VGG_MEAN_BGR, atol=1e-3)
    # The box channel rebuilt from the box coordinates matches the one the labels stage drew.
    box = np.concatenate([d["box"] for d in data])
    agree = (x[..., 3] == BOX_SCALE) == (box == 1)
    assert agree.mean() > 0.98


def test_training_pipeline_yields_one_update_per_element(tiny_shards):
    files = shards.files(tiny_shards, "train")
    ds = inputs.dataset(files, train_cfg(batch_size=2, accum_steps=3, **AUG), 32, training=True, seed=1)
    batches = list(ds.take(6))  # more than one pass over the tiny set
    assert all(tuple(x.shape) == (3, 2, 32, 32, 4) and tuple(y.shape) == (3, 2, 32, 32) for x, y in batches)
    for x, y in batches:
        assert set(np.unique(y.numpy())) <= {0.0, 1.0}
        assert set(np.unique(x.numpy()[..., 3])) <= {0.0, BOX_SCALE}
        assert (x.numpy()[..., 3] > 0).any()


def _stream(files, seed, n, skip=0, **over):
    cfg = train_cfg(batch_size=2, **{**AUG, **over})
    return [(x.numpy(), y.numpy()) for x, y in inputs.dataset(files, cfg, 32, True, seed=seed, skip=skip).take(n)]


def test_training_pipeline_is_reproducible(tiny_shards):
    files = shards.files(tiny_shards, "train")
    a, b, c = _stream(files, 1, 6), _stream(files, 1, 6), _stream(files, 2, 6)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


@pytest.mark.parametrize("accum", [1, 2])
def test_skipping_continues_the_stream_exactly(tiny_shards, accum):
    """A resume after k updates sees the batches an uninterrupted run sees from update k on."""
    files = shards.files(tiny_shards, "train")
    full = _stream(files, 5, 7, accum_steps=accum)
    k = 3
    rest = _stream(files, 5, 4, skip=k * accum * 2, accum_steps=accum)
    for (xf, yf), (xr, yr) in zip(full[k:], rest):
        np.testing.assert_array_equal(xf, xr)
        np.testing.assert_array_equal(yf, yr)


def test_box_mask_is_exclusive():
    import tensorflow as tf

    m = inputs._box_mask(tf.constant([2.0, 1.0, 5.0, 3.0]), 8).numpy()
    assert m.sum() == 3 * 2 and m[1, 2] == 1 and m[3, 5] == 0


def _set_fallbacks(path, reasons: dict[int, str]) -> None:
    with h5py.File(path, "a") as f:
        values = f["fallback"].asstr()[()]
        for i, r in reasons.items():
            values[i] = r
        del f["fallback"]
        f.create_dataset("fallback", data=values.astype(object), dtype=h5py.string_dtype())


def test_skip_fallbacks_leaves_out_fallback_shapes_only(tiny_shards):
    files = shards.files(tiny_shards, "train")
    n = sum(len(shards.read(f, ("key",))["key"]) for f in files)
    # Every fallback reason, as the labels stage writes them, and one GrabCut of a whole-image box.
    _set_fallbacks(files[0], {0: "empty_grabcut", 1: "tiny_box", 2: "whole_image"})
    _set_fallbacks(files[1], {0: "opencv_error", 1: ""})
    before = {f: shards.read(f, ("fallback",))["fallback"] for f in files}
    n_fallback = sum(int(np.isin(v, ("empty_grabcut", "tiny_box", "opencv_error")).sum()) for v in before.values())
    assert n_fallback >= 3

    def count(source, skip):
        ds = inputs.dataset(files, train_cfg(batch_size=1, skip_fallbacks=skip, **NO_AUG), 32, False, labels=source)
        return sum(1 for _ in ds)

    assert count("teacher", False) == n
    assert count("teacher", True) == n - n_fallback  # whole_image is GrabCut's own label: kept
    assert count("gt", True) == n  # other label sources never skip


def test_votes_label_thresholds():
    votes = np.array([[0, 50, 51, 178, 179, 255]], np.uint8)  # shares 0, .196, .2, .698, .702, 1
    np.testing.assert_array_equal(inputs.votes_label(votes, 0.7, 0.2), [[0, 0, VOID, VOID, 1, 1]])


@pytest.mark.parametrize("core", [0.2, 0.5])
def test_box_core_label_is_the_central_share(core):
    box = np.array([4.0, 8.0, 24.0, 28.0], np.float32)  # 20 x 20 crop pixels
    box_mask = np.zeros((32, 32), np.uint8)
    box_mask[8:28, 4:24] = 1
    label = inputs.box_core_label(box_mask, box, core)
    assert abs((label == 1).sum() / 400 - core) < 0.05
    ys, xs = np.nonzero(label == 1)
    assert (ys.mean(), xs.mean()) == (17.5, 13.5)  # centred on the box
    assert set(np.unique(label[box_mask == 0])) == {0} and set(np.unique(label[box_mask == 1])) == {1, VOID}


def test_ignore_label_sources_reach_the_loss_with_void(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(
        tiny_sbd,
        tiny_instances,
        out,
        labels_cfg(crop_size=32, shard_size=4, n_jobs=1, vote_runs=4, vote_jitter=0.15),
        seed=1,
    )
    files = shards.files(out, "train")
    votes = np.concatenate([shards.read(f, ("teacher_votes",))["teacher_votes"] for f in files])
    boxes = np.concatenate([shards.read(f, ("box",))["box"] for f in files])
    cfg = train_cfg(batch_size=4, votes_fg=0.6, votes_bg=0.3, skip_fallbacks=False, **NO_AUG)
    for source, expect in (("teacher_i", [inputs.votes_label(v, 0.6, 0.3) for v in votes]), ("box_i", None)):
        ds = inputs.dataset(files, cfg, 32, training=False, labels=source)
        y = np.concatenate([y.numpy() for _, y in ds])
        assert set(np.unique(y)) == {0, 1, VOID}
        if expect is not None:
            np.testing.assert_array_equal(y, np.stack(expect))
        else:
            assert np.all(y[boxes == 0] == 0) and np.all(y[boxes == 1] != 0)
    # Augmented batches keep the three values and nothing else.
    for _, y in _stream(files, 2, 4, labels="teacher_i", box_jitter=0.2):
        assert set(np.unique(y)) <= {0.0, 1.0, float(VOID)}


def boxes_only_val(tiny_shards, tmp_path):
    """A copy of the tiny shards whose first val shard holds no ground-truth mask (a boxes-only part)."""
    import json
    import shutil

    out = tmp_path / "boxes-only-shards"
    shutil.copytree(tiny_shards, out)
    first = shards.files(out, "val")[0]
    data = shards.read(first)
    data["has_gt"] = np.zeros_like(data["has_gt"])
    shards.write(first, data, shards.read_fingerprint(first))
    json.loads((out / shards.MANIFEST).read_text())  # the manifest is unchanged
    return out, first


def test_holdout_auto_teaches_with_val_boxes_that_have_no_mask_and_holds_back_the_masked_ones(tiny_shards, tmp_path):
    out, boxes_only = boxes_only_val(tiny_shards, tmp_path)
    train = shards.files(out, "train")
    files, picked = inputs.training_files(out, "auto")
    assert files == train + [boxes_only] and picked == [boxes_only]
    assert inputs.training_files(out, "split") == (train, [])
    cfg = train_cfg(batch_size=1, skip_fallbacks=False, **NO_AUG)
    counted = inputs.count(files, cfg, val=picked)
    n_train = sum(len(shards.read(f, ("key",))["key"]) for f in train)
    n_free = len(shards.read(boxes_only, ("key",))["key"])
    assert counted["train_used"] == counted["train"] == n_train
    assert counted["val_used"] == counted["val"] == n_free and counted["used"] == n_train + n_free
    # What the pipeline yields is exactly that: the train instances, then the boxes-only val ones.
    seen = sum(1 for _ in inputs.dataset(files, cfg, 32, training=False, val=picked))
    assert seen == n_train + n_free
    # A masked val shard read as val gives nothing: its instances are held out.
    masked = shards.files(tiny_shards, "val")[0]  # the same shard, its masks kept
    assert sum(1 for _ in inputs.dataset([masked], cfg, 32, training=False, val=[masked])) == 0
    held = inputs.count([*files, masked], cfg, val=[*picked, masked])
    assert held["held_out"] == len(shards.read(masked, ("key",))["key"]) and held["used"] == counted["used"]


def test_trained_on_holds_back_val_instances_with_a_mask_for_every_source():
    for source in ("teacher", "box", "gt"):
        assert not inputs.trained_on(source, False, "", True, val=True)
        assert inputs.trained_on(source, False, "", True, val=False)
    assert inputs.trained_on("teacher", False, "", False, val=True)  # a boxes-only val instance teaches
    assert not inputs.trained_on("gt", False, "", False, val=True)  # ... but not with the true masks
    assert not inputs.trained_on("teacher", True, "empty_grabcut", False, val=True)  # a fallback stays out


def test_input_side_resamples_the_training_crops_and_nothing_else(tiny_shards):
    """``train.input_side``: training sees the crops resampled to that side (the box channel and the
    label with them); evaluation still reads the labels' crops as they are."""
    from wss import config
    from wss.errors import ConfigError

    files = shards.files(tiny_shards, "train")
    small = inputs.dataset(files, train_cfg(batch_size=2, input_side=16, **NO_AUG), 32, training=True, seed=1)
    full = inputs.dataset(files, train_cfg(batch_size=2, **NO_AUG), 32, training=True, seed=1)
    (xs, ys), (xf, yf) = next(iter(small)), next(iter(full))
    assert tuple(xs.shape) == (1, 2, 16, 16, 4) and tuple(ys.shape) == (1, 2, 16, 16)
    # The same instances, halved: the label's foreground share stays, the box channel is 0 or the box.
    np.testing.assert_allclose(ys.numpy().mean(), yf.numpy().mean(), atol=0.05)
    assert set(np.unique(xs.numpy()[..., 3])) <= {0.0, BOX_SCALE}
    np.testing.assert_allclose((xs.numpy()[..., 3] > 0).mean(), (xf.numpy()[..., 3] > 0).mean(), atol=0.1)
    ev = inputs.dataset(files, train_cfg(batch_size=2, input_side=16, **NO_AUG), 32, training=False)
    assert tuple(next(iter(ev))[0].shape) == (2, 32, 32, 4)
    with pytest.raises(ConfigError, match="input_side"):
        train_cfg(input_side=24)
    assert config.read(config.TrainConfig, {"train": {**train_cfg().__dict__, "input_side": 48}}).input_side == 48
