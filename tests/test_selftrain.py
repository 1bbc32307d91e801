import numpy as np
import pytest

from tests.conftest import TINY_TRAIN, train_cfg
from wss.core.masks import VOID
from wss.labels import shards
from wss.net import model, selftrain, training


def test_combine_keeps_agreement_inside_the_box_and_voids_the_rest():
    box = np.zeros((4, 4), np.uint8)
    box[:, :3] = 1
    label = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [VOID, VOID, 1, 0], [0, 0, 0, 0]], np.uint8)
    prob = np.array(
        [[0.9, 0.2, 0.1, 0.9], [0.6, 0.7, 0.4, 0.1], [0.9, 0.1, 0.8, 0.1], [0.1, 0.1, 0.1, 0.1]], np.float32
    )
    out = selftrain.combine(prob, label, box)
    want = np.array(
        [
            [1, VOID, 0, 0],  # (0, 3): predicted, but outside the box -> 0, agrees
            [1, VOID, 0, 0],
            [VOID, VOID, 1, 0],  # VOID stays VOID whatever the model says
            [0, 0, 0, 0],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(out, want)


@pytest.mark.slow
def test_two_rounds_train_on_the_relabelled_shards_and_resume(tmp_path, tiny_shards, random_init):
    cfg = train_cfg(steps=2, rounds=2, **TINY_TRAIN)
    out, ckpt = tmp_path / "model.keras", tmp_path / "ckpt"
    summary = training.train_rounds(cfg, tiny_shards, random_init, out, ckpt, tmp_path / "live", seed=1)
    assert summary["rounds"] == 2 and len(summary["per_round"]) == 2 and out.is_file()
    stats = summary["per_round"][1]["self_labels"]
    assert stats["instances"] == shards.count(tiny_shards, "train")
    # The round-2 shards hold the combination of round 1's model and labels, nothing else.
    net = model.load(str(ckpt / "round-1.keras"))
    relabelled = ckpt / "round-2-shards"
    assert shards.files(relabelled, "val") == []
    for path in shards.files(relabelled, "train"):
        data = shards.read(path)
        probs = model.predict_proba(net, data["image"], data["box"], 32)
        for i in range(len(probs)):
            np.testing.assert_array_equal(
                data["self_label"][i], selftrain.combine(probs[i], data["teacher"][i], data["box"][i])
            )
    # Rerun: both rounds resume (nothing left to train), the same final weights.
    weights = [w.copy() for w in model.load(str(out)).get_weights()]
    again = training.train_rounds(cfg, tiny_shards, random_init, out, ckpt, tmp_path / "live", seed=1)
    assert again["resumed_from_step"] == 2
    for a, b in zip(weights, model.load(str(out)).get_weights()):
        np.testing.assert_array_equal(a, b)
    # rounds: 1 afterwards resumes round 1 itself.
    one = training.train_rounds(
        train_cfg(steps=2, rounds=1, **TINY_TRAIN),
        tiny_shards,
        random_init,
        tmp_path / "one.keras",
        ckpt,
        tmp_path / "live",
        seed=1,
    )
    assert one["resumed_from_step"] == 2


@pytest.mark.slow
def test_self_training_relabels_the_val_boxes_that_teach(tmp_path, tiny_shards, random_init):
    """With ``train.holdout: auto`` a val shard without masks is learnt from, so round 2 relabels it too."""
    from tests.test_inputs import boxes_only_val
    from wss.net import inputs

    out, boxes_only = boxes_only_val(tiny_shards, tmp_path)
    cfg = train_cfg(steps=2, rounds=2, **TINY_TRAIN)
    summary = training.train_rounds(
        cfg, out, random_init, tmp_path / "m.keras", tmp_path / "ckpt", tmp_path / "live", 1
    )
    relabelled = tmp_path / "ckpt/round-2-shards"
    assert [p.name for p in shards.files(relabelled, "val")] == [boxes_only.name]
    files, val = inputs.training_files(out, "auto")
    assert summary["per_round"][1]["self_labels"]["instances"] == sum(
        len(shards.read(f, ("key",))["key"]) for f in files
    )
    assert summary["instances"]["val"]["used"] == len(shards.read(boxes_only, ("key",))["key"])
