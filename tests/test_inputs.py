import numpy as np

from stages import inputs, shards
from stages.model import BOX_SCALE, VGG_MEAN_BGR

NO_AUG = inputs.Augment(flip=False, scale_jitter=0.0, box_jitter=0.0)


def test_eval_pipeline_reproduces_shard_content(tiny_shards):
    files = shards.files(tiny_shards, "train")
    data = [shards.read(f) for f in files]
    for source, field in shards.LABEL_SOURCES.items():
        ds = inputs.dataset(files, source, 3, 32, NO_AUG, training=False)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        x, y = np.concatenate(xs), np.concatenate(ys)
        n = sum(len(d["key"]) for d in data)
        assert x.shape == (n, 32, 32, 4) and y.shape == (n, 32, 32)
        np.testing.assert_array_equal(y, np.concatenate([d[field] for d in data]))
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
