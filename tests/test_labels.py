import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from stages import labels as stage
from tests.conftest import PARAMS, ROOT, edit, labels_cfg, write_params
from wss import config
from wss.core import masks, metrics, provenance
from wss.data.instances import gt_mask, read_table
from wss.data.readers import sbd
from wss.errors import ConfigError
from wss.labels import build as labels
from wss.labels import shards

CFG = labels_cfg(crop_size=48, shard_size=4, n_jobs=1)


def shard_contents(directory: Path) -> dict:
    out = {}
    for entry in shards.read_manifest(directory)["shards"]:
        out[entry["file"]] = shards.read(directory / entry["file"])
    return out


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for field in a[name]:
            x, y = a[name][field], b[name][field]
            if x.dtype == object:  # ragged (teacher_full): compare instance by instance
                assert len(x) == len(y), f"{name}:{field}"
                for u, v in zip(x, y):
                    np.testing.assert_array_equal(u, v, err_msg=f"{name}:{field}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{name}:{field}")


def test_shards_hold_all_instances(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    result = labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    table = read_table(tiny_instances)
    manifest = shards.read_manifest(out)
    keys = [k for s in manifest["shards"] for k in s["keys"]]
    assert sorted(keys) == sorted(f"{r.image_id}/{r.instance_id}" for r in table.itertuples())
    assert manifest["counts"] == {"train": (table.split == "train").sum(), "val": (table.split == "val").sum()}
    assert result["instances"] == len(table)
    assert 0 < result["train"]["miou_box"] < result["train"]["miou_teacher"] <= 1
    data = shards.read(out / manifest["shards"][0]["file"])
    n = manifest["shards"][0]["count"]
    assert data["image"].shape == (n, 48, 48, 3) and data["image"].dtype == np.uint8
    for f in ("box", "teacher", "box_label", "gt"):
        assert data[f].shape == (n, 48, 48) and set(np.unique(data[f])) <= {0, 1}
    np.testing.assert_array_equal(data["box"], data["box_label"])
    # Without vote runs the votes are the GrabCut label (its crop coverage, unthresholded).
    np.testing.assert_array_equal(data["teacher_votes"] >= 128, data["teacher"] == 1)
    with h5py.File(out / manifest["shards"][0]["file"]) as f:
        assert f["image"].chunks == (1, 48, 48, 3) and f["image"].compression == "gzip"


def test_round_trip_paste_back_reproduces_full_mask(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, labels_cfg(crop_size=128, shard_size=4, n_jobs=1), seed=3)
    rows = {f"{r.image_id}/{r.instance_id}": r for r in read_table(tiny_instances).itertuples()}
    for entry in shards.read_manifest(out)["shards"]:
        data = shards.read(out / entry["file"])
        for i, key in enumerate(data["key"]):
            full = gt_mask(rows[key])
            h, w = data["image_size"][i]
            window = labels.Box(*data["window"][i])
            back = masks.paste(data["gt"][i].astype(np.float32), window, h, w) >= 0.5
            assert metrics.iou(back, full) > 0.85, key
            # The box channel pastes back onto the given box.
            box_back = masks.paste(data["box"][i].astype(np.float32), window, h, w) >= 0.5
            assert metrics.iou(box_back, labels.fill(labels.Box(*data["box_xyxy"][i]), h, w)) > 0.9


def test_same_output_for_any_n_jobs(tiny_sbd, tiny_instances, tmp_path):
    labels.run(tiny_sbd, tiny_instances, tmp_path / "one", CFG, seed=3)
    labels.run(tiny_sbd, tiny_instances, tmp_path / "two", labels_cfg(crop_size=48, shard_size=4, n_jobs=2), seed=3)
    assert_same(shard_contents(tmp_path / "one"), shard_contents(tmp_path / "two"))


def test_unchanged_shards_are_reused_and_stale_ones_rebuilt(tiny_sbd, tiny_instances, tmp_path, capsys):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")}
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert "0 built" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")} == first

    # Other params: every shard is stale.
    labels.run(tiny_sbd, tiny_instances, out, labels_cfg(crop_size=48, shard_size=4, n_jobs=1, iterations=2), seed=3)
    assert f"0 reused from an earlier run, {len(first)} built" in capsys.readouterr().out

    # Other input bytes: only the shard holding that image is rebuilt.
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    capsys.readouterr()
    table = read_table(tiny_instances)
    victim = table.image_id.iloc[0]
    path = sbd.image_path(tiny_sbd, victim)
    path.write_bytes(path.read_bytes() + b"\0")  # still a valid JPEG, other bytes
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert f"{len(first) - 1} reused from an earlier run, 1 built" in capsys.readouterr().out


def test_comments_reuse_every_shard_code_and_library_versions_rebuild_them(
    tiny_sbd, tiny_instances, tmp_path, capsys, project_copy, monkeypatch
):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    n = len(list(out.glob("shard-*.h5")))
    graphcut = project_copy / "wss/labels/graphcut.py"
    # A comment, a docstring and a blank line: the parsed code is the same, every shard is reused.
    edit(graphcut, "GAMMA = 50.0", "\n# Rother et al. use 50 too.\nGAMMA = 50.0  # see above")
    edit(graphcut, '    """GrabCut\'s two documented failures', '    """Two failures GrabCut documents')
    capsys.readouterr()
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert f"{n} reused from an earlier run, 0 built" in capsys.readouterr().out
    # A constant: every shard is stale.
    edit(graphcut, "GAMMA = 50.0", "GAMMA = 50.5")
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert f"0 reused from an earlier run, {n} built" in capsys.readouterr().out
    # Another OpenCV: stale again.
    real = provenance.metadata.version
    monkeypatch.setattr(provenance.metadata, "version", lambda d: "0.0.1" if d.startswith("opencv") else real(d))
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert f"0 reused from an earlier run, {n} built" in capsys.readouterr().out


def test_full_resolution_grabcut_label_is_stored_exactly(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    rows = {f"{r.image_id}/{r.instance_id}": r for r in read_table(tiny_instances).itertuples()}
    for f in shards.files(out, "val"):
        data = shards.read(f)
        for i, key in enumerate(data["key"]):
            full = shards.full_label(data["teacher_full"][i], data["box_xyxy"][i], data["image_size"][i])
            assert full.shape == tuple(data["image_size"][i])
            # The IoU the labels stage measured on the mask it made is the IoU of the stored mask.
            assert metrics.iou(full, gt_mask(rows[key])) == pytest.approx(data["iou_teacher"][i], abs=1e-6)
            # And the crop label is that mask, cropped.
            window = labels.Box(*data["window"][i])
            np.testing.assert_array_equal(masks.crop_mask(full, window, 48), data["teacher"][i])


def test_fewer_instances_remove_extra_shards(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    n = len(list(out.glob("shard-*.h5")))
    labels.run(tiny_sbd, tiny_instances, out, labels_cfg(crop_size=48, shard_size=64, n_jobs=1), seed=3)
    assert len(list(out.glob("shard-*.h5"))) == 2 < n  # one per split


def _cli(tmp_path, sbd_dir, inst_dir, out, shard_size):
    params = write_params(
        tmp_path / f"params-{out.name}.yaml", labels={"crop_size": 48, "shard_size": shard_size, "n_jobs": 1}
    )
    return [
        sys.executable,
        "-m",
        "stages.labels",
        "--params",
        str(params),
        "--data",
        str(sbd_dir),
        "--instances",
        str(inst_dir),
        "--out",
        str(out),
        "--metrics",
        str(tmp_path / f"{out.name}.json"),
    ]


def test_kill_and_resume_matches_uninterrupted_run(tiny_sbd, tiny_instances, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ref = tmp_path / "ref"
    subprocess.run(_cli(tmp_path, tiny_sbd, tiny_instances, ref, 1), check=True, env=env, capture_output=True)
    total = len(list(ref.glob("shard-*.h5")))

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(tmp_path, tiny_sbd, tiny_instances, out, 1),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("shard-*.h5"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")}
    assert 3 <= len(done) < total, "the run should have been killed halfway"
    assert not (out / shards.MANIFEST).exists()

    res = subprocess.run(
        _cli(tmp_path, tiny_sbd, tiny_instances, out, 1), env=env, capture_output=True, text=True, check=True
    )
    assert f"{len(done)} reused from an earlier run" in res.stdout
    for name, mtime in done.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    assert_same(shard_contents(out), shard_contents(ref))
    assert not list(out.glob(".tmp-*"))


def test_truncated_shard_is_rebuilt(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    ref = shard_contents(out)
    victim = out / "shard-00000.h5"
    victim.write_bytes(victim.read_bytes()[:500])
    labels.run(tiny_sbd, tiny_instances, out, CFG, seed=3)
    assert_same(shard_contents(out), ref)


def test_unknown_and_missing_params_are_named():
    with pytest.raises(ConfigError, match=r"unknown keys under labels: \['iteratons'\]"):
        labels_cfg(iteratons=3)
    section = dict(config.section(PARAMS, "labels"))
    del section["roi_margin"]
    with pytest.raises(ConfigError, match=r"missing keys under labels: \['labels.roi_margin'\]"):
        config.read(config.LabelsConfig, {"labels": section})


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("crop_size", 50, "labels.crop_size must be a positive multiple of 16"),
        ("crop_size", 0, "labels.crop_size"),
        ("shard_size", 0, "labels.shard_size must be >= 1"),
        ("iterations", 0, "labels.iterations must be >= 1"),
        ("fallback_shape", "star", "labels.fallback_shape must be one of ellipse, box"),
        ("min_fg_fraction", 1.5, "labels.min_fg_fraction"),
        ("vote_runs", -1, "labels.vote_runs"),
        ("n_jobs", 0, "labels.n_jobs"),
        ("iterations", 2.5, "labels.iterations must be int"),
    ],
)
def test_out_of_range_params_stop_before_any_work(key, value, match):
    with pytest.raises(ConfigError, match=match):
        labels_cfg(**{key: value})


def test_bad_crop_size_stops_the_stage_before_it_labels_anything(tiny_sbd, tiny_instances, tmp_path):
    write_params(tmp_path / "params.yaml", labels={"crop_size": 50})
    out = tmp_path / "shards"
    with pytest.raises(ConfigError, match="multiple of 16"):
        stage.main(
            [
                "--params",
                str(tmp_path / "params.yaml"),
                "--data",
                str(tiny_sbd),
                "--instances",
                str(tiny_instances),
                "--out",
                str(out),
                "--metrics",
                str(tmp_path / "m.json"),
            ]
        )
    assert not out.exists()


def test_params_types_from_yaml():
    cfg = labels_cfg(crop_size=64.0, roi_margin=1, iterations=3.0)
    assert cfg.crop_size == 64 and cfg.grabcut.roi_margin == 1.0 and cfg.grabcut.iterations == 3
    assert isinstance(cfg.grabcut.iterations, int) and isinstance(cfg.grabcut.roi_margin, float)


def test_votes_for_train_instances_only(tiny_sbd, tiny_instances, tmp_path):
    out = tmp_path / "shards"
    labels.run(tiny_sbd, tiny_instances, out, labels_cfg(crop_size=48, shard_size=4, n_jobs=1, vote_runs=5), seed=3)
    assert shards.read_manifest(out)["vote_runs"] == 5
    for split in sbd.SPLITS:
        data = [shards.read(f, ("teacher", "teacher_votes", "box")) for f in shards.files(out, split)]
        votes = np.concatenate([d["teacher_votes"] for d in data])
        grabcut = np.concatenate([d["teacher"] for d in data])
        box = np.concatenate([d["box"] for d in data])
        if split == "val":
            np.testing.assert_array_equal(votes >= 128, grabcut == 1)
        else:
            assert len(np.unique(votes)) > 2  # partial agreement somewhere
            assert votes[box == 0].max() < 128  # no majority outside the box (crop pixels cut its edge)
            # The majority vote mostly agrees with the single GrabCut.
            assert np.mean((votes >= 128) == (grabcut == 1)) > 0.9
