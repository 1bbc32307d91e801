"""A reviewer's decisions as training data: accepted masks are labels, rejected instances leave."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd

from tests.conftest import train_cfg
from tests.test_inputs import NO_AUG, _set_fallbacks
from wss.core.boxes import Box
from wss.core.masks import crop_mask
from wss.data import decisions
from wss.data.instances import read_table
from wss.labels import shards
from wss.net import inputs, reviewed, selftrain
from wss.net.model import osvos, vgg16_trunk


def decide(tmp_path, instances, accept: list[str], reject: list[str]) -> tuple[pd.DataFrame, dict]:
    """Decisions on the tiny dataset through a real decisions file: each accepted mask is the left
    half of its box (a mask no teacher made)."""
    table = read_table(instances)
    rows = table.assign(key=table.image_id + "/" + table.instance_id.astype(str))
    masks = {}
    for r in rows[rows.key.isin(accept)].itertuples():
        m = np.zeros((int(r.height), int(r.width)), np.uint8)
        m[r.y1 : r.y2, r.x1 : (r.x1 + r.x2) // 2] = 1
        masks[r.key] = m
    path = tmp_path / "decisions.csv"
    verdicts = {**dict.fromkeys(accept, "accept"), **dict.fromkeys(reject, "reject")}
    decisions.write(path, rows, verdicts, masks, "2026-12-01T10:00:00Z")
    return decisions.join(decisions.read(path), table), masks


def keys_of(shard_dir, split):
    return [k for f in shards.files(shard_dir, split) for k in shards.read(f, ("key",))["key"]]


def test_reviewed_shards_hold_the_accepted_masks_and_not_the_rejected(tmp_path, tiny_shards, tiny_instances):
    train, val = keys_of(tiny_shards, "train"), keys_of(tiny_shards, "val")
    accept, reject = [train[0], train[5], val[0]], [train[1]]
    decided, masks = decide(tmp_path, tiny_instances, accept, reject)
    out = tmp_path / "reviewed"
    assert reviewed.apply(tiny_shards, decided, out) == {"accepted": 3, "rejected": 1}
    assert keys_of(out, "train") == [k for k in train if k != train[1]] and keys_of(out, "val") == val
    assert shards.read_manifest(out)["counts"]["train"] == len(train) - 1
    touched = set()
    for f in shards.files(out, "train") + shards.files(out, "val"):
        data = shards.read(f)
        if "reviewed" not in data:  # a shard no decision touched: the original file, linked
            assert os.path.samefile(f, tiny_shards / f.name)
            continue
        touched.add(f.name)
        for i, k in enumerate(data["key"]):
            assert data["reviewed"][i] == (k in accept)
            if k in accept:
                want = crop_mask(masks[k], Box(*(int(v) for v in data["window"][i])), 32)
                np.testing.assert_array_equal(data["reviewed_label"][i], want)
                assert want.any() and not np.array_equal(want, data["teacher"][i])
    assert len(touched) >= 2
    # Again with the same decisions: reused, not rewritten; other decisions: another fingerprint.
    stamp = (out / shards.MANIFEST).stat().st_mtime_ns
    assert reviewed.apply(tiny_shards, decided, out) == {"accepted": 3, "rejected": 1}
    assert (out / shards.MANIFEST).stat().st_mtime_ns == stamp
    fp = shards.read_manifest(out)["params_fingerprint"]
    other, _ = decide(tmp_path, tiny_instances, accept[:1], reject)
    reviewed.apply(tiny_shards, other, out)
    assert shards.read_manifest(out)["params_fingerprint"] != fp


def test_training_reads_the_accepted_mask_whatever_the_labels_and_even_where_the_teacher_fell_back(
    tmp_path, tiny_shards, tiny_instances
):
    train, val = keys_of(tiny_shards, "train"), keys_of(tiny_shards, "val")
    files = shards.files(tiny_shards, "train")
    first = list(shards.read(files[0], ("key",))["key"])
    _set_fallbacks(files[0], {0: "empty_grabcut", 1: "empty_grabcut"})  # the teacher failed on both
    decided, _ = decide(tmp_path, tiny_instances, [first[0], val[0]], [train[-1]])
    out = tmp_path / "reviewed"
    reviewed.apply(tiny_shards, decided, out)
    stored = {}
    for f in shards.files(out, "train"):
        data = shards.read(f, ("key",), inputs.REVIEWED)
        for i, k in enumerate(data["key"]):
            stored[k] = data["reviewed_label"][i] if "reviewed" in data and data["reviewed"][i] else None
    fell_back = {
        k
        for f in shards.files(out, "train")
        for k, fb in zip(*shards.read(f, ("key", "fallback")).values())
        if fb in ("empty_grabcut", "tiny_box", "opencv_error")
    }
    assert {first[0], first[1]} <= fell_back
    cfg = train_cfg(batch_size=1, skip_fallbacks=True, **NO_AUG)
    for labels in ("teacher", "box", "box_i", "gt"):
        ds = inputs.dataset(shards.files(out, "train"), cfg, 32, training=False, labels=labels)
        ys = [y.numpy()[0] for _, y in ds]
        skipped = fell_back - {first[0]} if labels == "teacher" else set()  # the teacher's failures, unless accepted
        used = [k for k in keys_of(out, "train") if k not in skipped]
        assert len(ys) == len(used) and train[-1] not in used and first[0] in used
        np.testing.assert_array_equal(ys[used.index(first[0])], stored[first[0]])  # accepted: trained on, as accepted
    counted = inputs.count(shards.files(out, "train"), cfg, "teacher")
    assert counted["used"] == len(train) - 1 - len(fell_back - {first[0]})
    assert counted["fallbacks"] == len(fell_back) - 1
    # A val instance with a ground-truth mask stays held out, accepted or not.
    val_files = shards.files(out, "val")
    counted = inputs.count(val_files, cfg, "teacher", val=val_files)
    assert counted["used"] == 0 and counted["held_out"] == len(val)


def test_self_training_keeps_an_accepted_mask_as_it_is(tmp_path, tiny_shards, tiny_instances):
    train = keys_of(tiny_shards, "train")
    decided, _ = decide(tmp_path, tiny_instances, [train[0], train[2]], [])
    out = tmp_path / "reviewed"
    reviewed.apply(tiny_shards, decided, out)
    net = osvos(vgg16_trunk(4), 4)  # untrained: its predictions agree with no label
    selftrain.relabel(net, out, tmp_path / "round-2", "teacher", 0.7, 0.2, 0.2)
    seen = 0
    for f in shards.files(tmp_path / "round-2", "train"):
        with h5py.File(f) as h:
            has = "reviewed" in h
        data = shards.read(f)
        for i in range(len(data["key"])):
            if has and data["reviewed"][i]:
                np.testing.assert_array_equal(data["self_label"][i], data["reviewed_label"][i])
                seen += 1
    assert seen == 2
