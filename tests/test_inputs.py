import numpy as np

from stages import VOID, inputs, labels, shards
from stages.model import BOX_SCALE, VGG_MEAN_BGR

NO_AUG = inputs.Augment(flip=False, scale_jitter=0.0, box_jitter=0.0)


def test_eval_pipeline_reproduces_shard_content(tiny_shards):
    files = shards.files(tiny_shards, "train")
    data = [shards.read(f) for f in files]
    for source in ("grabcut", "box", "gt"):
        ds = inputs.dataset(files, source, 3, 32, NO_AUG, training=False)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        x, y = np.concatenate(xs), np.concatenate(ys)
        n = sum(len(d["key"]) for d in data)
        assert x.shape == (n, 32, 32, 4) and y.shape == (n, 32, 32)
        np.testing.assert_array_equal(y, np.concatenate([d[shards.LABEL_SOURCES[source]] for d in data]))
    rgb = np.concatenate([d["image"] for d in data]).astype(np.float32)
    np.testing.assert_allclose(x[..., :3], rgb[..., ::-1] - VGG_MEAN_BGR, atol=1e-3)
    # The box channel rebuilt from the box coordinates matches the one the labels stage drew.
    box = np.concatenate([d["box"] for d in data])
    agree = (x[..., 3] == BOX_SCALE) == (box == 1)
    assert agree.mean() > 0.98


def test_training_pipeline_augments_and_repeats(tiny_shards):
    files = shards.files(tiny_shards, "train")
    aug = inputs.Augment(flip=True, scale_jitter=0.3, box_jitter=0.3)
    ds = inputs.dataset(files, "grabcut", 4, 32, aug, training=True, seed=1)
    batches = list(ds.take(12))  # more than one pass over the tiny set
    assert all(tuple(x.shape) == (4, 32, 32, 4) for x, _ in batches)
    for x, y in batches:
        assert set(np.unique(y.numpy())) <= {0.0, 1.0}
        assert set(np.unique(x.numpy()[..., 3])) <= {0.0, BOX_SCALE}
        assert (x.numpy()[..., 3] > 0).any()


def test_training_pipeline_is_reproducible(tiny_shards):
    files = shards.files(tiny_shards, "train")
    aug = inputs.Augment(flip=True, scale_jitter=0.3, box_jitter=0.3)

    def stream(seed):
        return [(x.numpy(), y.numpy()) for x, y in inputs.dataset(files, "grabcut", 4, 32, aug, True, seed=seed).take(6)]

    a, b, c = stream(1), stream(1), stream(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_box_mask_is_exclusive():
    import tensorflow as tf

    m = inputs._box_mask(tf.constant([2.0, 1.0, 5.0, 3.0]), 8).numpy()
    assert m.sum() == 3 * 2 and m[1, 2] == 1 and m[3, 5] == 0


def test_skip_fallbacks_leaves_out_failed_grabcut_only(tiny_shards):
    files = shards.files(tiny_shards, "train")
    fallback = np.concatenate([shards.read(f, ("fallback",))["fallback"] for f in files])
    # Mark one instance as a fallback, as the labels stage does when GrabCut fails.
    import h5py

    with h5py.File(files[0], "a") as f:
        values = f["fallback"].asstr()[()]
        values[0] = "empty_grabcut"
        del f["fallback"]
        f.create_dataset("fallback", data=values.astype(object), dtype=h5py.string_dtype())
    n = len(fallback)
    expected_skipped = int((fallback != "").sum()) + (fallback[0] == "")

    def count(labels, skip):
        ds = inputs.dataset(files, labels, 1, 32, NO_AUG, training=False, skip_fallbacks=skip)
        return sum(1 for _ in ds)

    assert count("grabcut", False) == n
    assert count("grabcut", True) == n - expected_skipped
    assert count("gt", True) == n  # other label sources never skip


def test_consensus_label_thresholds():
    votes = np.array([[0, 50, 51, 178, 179, 255]], np.uint8)  # shares 0, .196, .2, .698, .702, 1
    np.testing.assert_array_equal(inputs.consensus_label(votes, 0.7, 0.2), [[0, 0, VOID, VOID, 1, 1]])


def test_box_core_label_is_the_central_fifth():
    box = np.array([4.0, 8.0, 24.0, 28.0], np.float32)  # 20 x 20 crop pixels
    box_mask = np.zeros((32, 32), np.uint8)
    box_mask[8:28, 4:24] = 1
    label = inputs.box_core_label(box_mask, box)
    assert abs((label == 1).sum() / 400 - inputs.BOX_I_CORE) < 0.05
    ys, xs = np.nonzero(label == 1)
    assert (ys.mean(), xs.mean()) == (17.5, 13.5)  # centred on the box
    assert set(np.unique(label[box_mask == 0])) == {0} and set(np.unique(label[box_mask == 1])) == {1, VOID}


def test_ignore_label_sources_reach_the_loss_with_void(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    cfg = labels.LabelsConfig(crop_size=32, shard_size=4, n_jobs=1, consensus_runs=4, consensus_jitter=0.15)
    labels.run(tiny_sbd, tiny_instances, out, cfg, seed=1)
    files = shards.files(out, "train")
    votes = np.concatenate([shards.read(f, ("grabcut_votes",))["grabcut_votes"] for f in files])
    boxes = np.concatenate([shards.read(f, ("box",))["box"] for f in files])
    for source, expect in (("grabcut_i", [inputs.consensus_label(v, 0.6, 0.3) for v in votes]),
                           ("box_i", None)):  # fmt: skip
        ds = inputs.dataset(files, source, 4, 32, NO_AUG, training=False, consensus=(0.6, 0.3))
        y = np.concatenate([y.numpy() for _, y in ds])
        assert set(np.unique(y)) == {0, 1, VOID}
        if expect is not None:
            np.testing.assert_array_equal(y, np.stack(expect))
        else:
            assert np.all(y[boxes == 0] == 0) and np.all(y[boxes == 1] != 0)
    # Augmented batches keep the three values and nothing else.
    aug = inputs.Augment(flip=True, scale_jitter=0.3, box_jitter=0.2)
    for _, y in inputs.dataset(files, "grabcut_i", 4, 32, aug, training=True, seed=2).take(4):
        assert set(np.unique(y.numpy())) <= {0.0, 1.0, float(VOID)}
