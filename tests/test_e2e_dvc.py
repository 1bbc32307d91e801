"""End to end through the real `dvc` CLI, in a temporary git repo, on a tiny params override."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.test_review import CHROMIUM

pytestmark = pytest.mark.slow

TINY = {
    "data": {"sample": {"n_train": 8, "n_val": 4, "min_side": 96, "max_side": 128, "max_instances": 2}},
    "labels": {"crop_size": 32, "n_jobs": 1, "shard_size": 4},
    "surgery": {"init": "random"},
    # Two updates: plumbing, not quality; without the box terms, whose pull toward the box would
    # leave the box-label and teacher-label models of the metrics diff the same masks.
    "train": {
        "steps": 2,
        "batch_size": 2,
        "log_every": 1,
        "checkpoint_every": 2,
        "shuffle_buffer": 8,
        "projection_weight": 0.0,
        "pairwise_weight": 0.0,
    },
    "evaluate": {"n_overlays": 2},
}


def env(cwd: Path) -> dict:
    return {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(cwd),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GIT_AUTHOR_NAME": "wss test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "wss test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def sh(cwd: Path, *cmd: str) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env(cwd), capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def make_repo(repo: Path) -> Path:
    """The project's pipeline in a new git repo at ``repo``, with the tiny params, committed."""
    repo.mkdir(parents=True)
    for name in ("stages", "wss", "datasets", "reviews", ".dvc", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp", "config.local")
            )
        else:
            shutil.copy(src, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in TINY.items():
        target = params[section]
        for key, value in values.items():
            if isinstance(value, dict):
                target[key].update(value)
            else:
                target[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny pipeline")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A new repo with the tiny pipeline, never run."""
    return make_repo(tmp_path / "repo")


@dataclass
class Baseline:
    path: Path
    out: str  # what `dvc repro` printed


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    """The tiny pipeline run once by ``dvc repro`` and committed, for every test that starts from a
    finished run (each gets its own copy, :func:`built`)."""
    repo = make_repo(tmp_path_factory.mktemp("baseline") / "repo")
    out = sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    return Baseline(repo, out)


@pytest.fixture
def built(baseline: Baseline, tmp_path: Path) -> Path:
    """A copy of the :func:`baseline` repo: its git history, DVC cache, outputs and checkpoints."""
    return Path(shutil.copytree(baseline.path, tmp_path / "repo", symlinks=True))


def named(node, name: str) -> dict:
    """The entry of ``dvc exp show --json`` output whose ``name`` is ``name``."""
    if isinstance(node, dict):
        if node.get("name") == name and "data" in node:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = named(child, name)
            if found:
                return found
    return {}


def train_params(entry: dict) -> dict:
    return entry["data"]["params"]["params.yaml"]["data"]["train"]


def test_repro_then_experiments_then_metrics_diff(built: Path, baseline: Baseline):
    repo = built
    for name in ("download", "convert", "boundaries", "labels", "surgery", "train", "evaluate", "export"):
        assert f"Running stage '{name}'" in baseline.out
    for f in (
        "metrics/labels.json",
        "metrics/train.json",
        "metrics/eval.json",
        "metrics/eval_per_class.json",
        "metrics/eval/recall.tsv",
        "metrics/eval/per_class.tsv",
        "models/model.keras",
        "metrics/train/plots/metrics/loss.tsv",
    ):
        assert (repo / f).is_file(), f
    assert len(list((repo / "metrics/eval/overlays").glob("*.png"))) == 2
    exported = {p.name for p in (repo / "data/export").iterdir()}
    assert exported == {
        "teacher_train.json",
        "teacher_val.json",
        "model_train.json",
        "model_val.json",
        "fused_train.json",
        "fused_val.json",
        "review",
    }  # export.masks: fused
    labels = json.loads((repo / "metrics/labels.json").read_text())
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert ev["instances"] == labels["val"]["instances"] > 0 and ev["AP"] is not None
    # The full-resolution teacher is exactly what the labels stage measured on its own masks.
    assert abs(ev["teacher"]["miou"] - labels["val"]["miou_teacher"]) <= 1e-4
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status")
    assert "nothing to commit" in sh(repo, "git", "status")  # the baseline's outputs are all committed

    # The acceptance command: the lr reaches training as the float 1e-6.
    out = sh(repo, "dvc", "exp", "run", "-n", "lr-1e-6", "-S", "train.lr=1e-6")
    assert "Stage 'labels' didn't change" in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"] in (1e-6, "1e-06")
    lr = json.loads((repo / "metrics/train.json").read_text())["lr"]
    assert lr == 1e-6 and isinstance(lr, float)

    # Changing the label source reruns train and evaluate only.
    out = sh(repo, "dvc", "exp", "run", "-n", "box-labels", "-S", "train.labels=box", "-S", "train.lr=1e-4")
    assert "Stage 'labels' didn't change" in out and "Running stage 'train'" in out
    assert json.loads((repo / "metrics/train.json").read_text())["labels"] == "box"
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "HEAD", "box-labels", "--json"))
    assert diff["metrics/train.json"]["labels"] == {"old": "teacher", "new": "box"}
    assert "miou" in diff["metrics/eval.json"]  # diff lists what changed

    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json"))
    box, slow = named(shown, "box-labels"), named(shown, "lr-1e-6")
    assert train_params(box)["labels"] == "box" and train_params(slow)["lr"] in (1e-6, "1e-06")
    assert train_params(slow)["labels"] == "teacher"

    plots = json.loads(sh(repo, "dvc", "plots", "show", "--json"))
    names = json.dumps(plots)
    assert "recall.tsv" in names and "loss.tsv" in names and "overlays" in names


def test_a_comment_reuses_every_shard_and_checkpoint_and_a_number_rebuilds_them(built: Path):
    """The layout issue's acceptance: a comment in the graph cut's module reuses every shard (and the
    trained weights); changing a number in it rebuilds the shards and retrains from step 0."""
    repo = built
    first = json.loads((repo / "metrics/train.json").read_text())
    assert first["resumed_from_step"] is None
    graphcut = repo / "wss/labels/graphcut.py"
    text = graphcut.read_text()
    assert "GAMMA = 50.0" in text
    graphcut.write_text(
        text.replace("GAMMA = 50.0", "# Rother et al.'s value, as OpenCV's.\nGAMMA = 50.0  # see above")
    )
    out = sh(repo, "dvc", "repro")
    n = len(list((repo / "data/shards").glob("shard-*.h5")))
    assert f"labels: {n} shards, {n} reused from an earlier run, 0 built" in out
    assert (
        "resuming from" in out and "at step 2" in out
    )  # train's code changed as text only: the finished run is reused
    assert json.loads((repo / "metrics/train.json").read_text())["final_loss"] == first["final_loss"]
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status")

    graphcut.write_text(graphcut.read_text().replace("GAMMA = 50.0", "GAMMA = 49.0"))
    out = sh(repo, "dvc", "repro")
    assert f"labels: {n} shards, 0 reused from an earlier run, {n} built" in out
    assert "Running stage 'train'" in out and "resuming from" not in out
    summary = json.loads((repo / "metrics/train.json").read_text())
    assert summary["resumed_from_step"] is None and summary["steps"] == 2
    out = sh(repo, "dvc", "repro")
    assert "Running stage" not in out


def test_a_coco_dataset_is_one_switch(repo: Path, tmp_path: Path):
    """``data.source=coco`` + ``data.archive``: the same pipeline on a COCO dataset (the tiny
    sample, re-encoded as COCO with category ids of its own), through to the exported files."""
    from tests.conftest import TINY
    from tests.test_sources import tiny_coco
    from wss.data import sample

    sample.generate(tmp_path / "sbd", seed=7, cfg=TINY)
    src = tiny_coco(tmp_path / "sbd", tmp_path / "mycoco")
    out = sh(
        repo,
        "dvc",
        "exp",
        "run",
        "-n",
        "coco",
        "-S",
        "data.source=coco",
        "-S",
        f"data.archive={src}",
        "-S",
        "convert.max_reject_fraction=0.5",
    )  # the tiny COCO carries one bad image per reason
    assert "convert: coco:" in out and "1 crowd annotations left out" in out
    assert json.loads((repo / "metrics/train.json").read_text())["rounds"] == 2  # train.rounds: auto, real data
    per_class = json.loads((repo / "metrics/eval_per_class.json").read_text())
    assert "class boat" in per_class  # the dataset's own names
    model_val = json.loads((repo / "data/export/model_val.json").read_text())
    assert {c["id"] for c in model_val["categories"]} == set(range(1001, 1021))
    ids = {a["image_id"] for a in model_val["annotations"]}
    assert ids and ids <= set(range(101, 110)) | {1}  # the file's own image ids (1: the grayscale one)


def test_the_datasets_content_is_a_dependency(repo: Path, tmp_path: Path):
    """A dataset replaced in place (a file edited, added or removed, at the same ``data.archive``)
    reruns ``download`` and what follows; an unchanged one reruns nothing."""
    from tests.conftest import TINY
    from tests.test_sources import tiny_coco
    from wss.data import sample

    sample.generate(tmp_path / "sbd", seed=7, cfg=TINY)
    src = tiny_coco(tmp_path / "sbd", tmp_path / "mycoco")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="coco", archive=str(src))
    params["convert"]["max_reject_fraction"] = 0.5  # the tiny COCO carries one bad image per reason
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def images() -> set[str]:
        return set(pd.read_parquet(repo / "data/instances/instances.parquet")["image_id"])

    sh(repo, "dvc", "repro", "convert")
    before = images()
    out = sh(repo, "dvc", "repro", "convert")
    assert "Stage 'download' didn't change, skipping" in out and "Stage 'convert' didn't change" in out
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status", "--with-deps", "convert")

    path = src / "annotations/instances_default.json"
    data = json.loads(path.read_text())
    gone = data["images"][0]
    data["images"] = data["images"][1:]  # edited in place: one image fewer
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != gone["id"]]
    path.write_text(json.dumps(data))
    status = sh(repo, "dvc", "status", "--with-deps", "convert")
    assert "download" in status and str(src) in status
    out = sh(repo, "dvc", "repro", "convert")
    assert "Running stage 'download'" in out and "Running stage 'convert'" in out
    assert images() < before and str(gone["id"]) not in {str(i) for i in images()}

    (src / "images" / "extra.txt").write_text("a file added")  # not an image: the table stays, download reruns
    out = sh(repo, "dvc", "repro", "convert")
    assert "Running stage 'download'" in out
    (src / "images" / "extra.txt").unlink()
    out = sh(repo, "dvc", "repro", "convert")
    assert "Running stage 'download'" in out
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status", "--with-deps", "convert")


def test_a_boxes_only_coco_dataset_split_one_train_image_to_many_val_teaches_with_every_box(repo: Path, tmp_path: Path):
    """The method's main use case, with COCO's own two-file layout and a lopsided split: boxes, no
    masks, one train image against all the others in val.  ``dvc exp run`` exits 0; with nothing
    to score against, every val box teaches (``train.holdout: auto``), and the log and
    ``train.json`` say so; evaluate reports what needs no ground truth, and the masks are exported
    for every instance."""
    from tests.conftest import TINY
    from tests.test_sources import tiny_coco
    from wss.data import sample

    sample.generate(tmp_path / "sbd", seed=7, cfg=TINY)
    src = tiny_coco(tmp_path / "sbd", tmp_path / "boxes")
    path = src / "annotations/instances_default.json"
    data = json.loads(path.read_text())
    path.unlink()
    for a in data["annotations"]:
        a.pop("segmentation", None)
    first = data["images"][0]["id"]
    for name, keep in (("train", lambda i: i == first), ("val", lambda i: i != first)):
        part = {
            **data,
            "images": [im for im in data["images"] if keep(im["id"])],
            "annotations": [a for a in data["annotations"] if keep(a["image_id"])],
        }
        (src / f"annotations/instances_{name}.json").write_text(json.dumps(part))
    out = sh(
        repo,
        "dvc",
        "exp",
        "run",
        "-n",
        "boxes",
        "-S",
        "data.source=coco",
        "-S",
        f"data.archive={src}",
        "-S",
        "convert.max_reject_fraction=0.5",
        "-S",
        "train.skip_fallbacks=false",
        "-S",
        "train.rounds=1",  # what is held out is this test's point; self-training is test_a_coco_dataset_is_one_switch's
    )
    table = pd.read_parquet(repo / "data/instances/instances.parquet")
    n_train, n_val = int((table.split == "train").sum()), int((table.split == "val").sum())
    assert n_train <= 4 and n_val >= 3 * n_train  # the lopsided split of the user's files
    assert "0 with a mask" in out and "no val instance has a ground-truth mask" in out
    assert f"learning from {n_train + n_val} instances: {n_train} of {n_train} train and {n_val} of {n_val} val" in out
    summary = json.loads((repo / "metrics/train.json").read_text())
    assert summary["instances_used"] == n_train + n_val
    assert summary["instances"] == {
        "holdout": "auto",
        "train": {"used": n_train, "of": n_train},
        "val": {"used": n_val, "of": n_val},
        "left_out": {"grabcut_fallbacks": 0, "without_masks": 0, "val_held_out": 0},
    }
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert ev["instances_with_masks"] == 0 and ev["instances_without_masks"] == n_val
    every = (repo / "metrics/eval/instances_all.tsv").read_text().splitlines()
    assert len(every) - 1 == ev["instances_without_masks"]  # a 2-step model may agree with nothing: count, not size
    agreement = [float(line.split("\t")[-1]) for line in every[1:]]
    assert abs(ev["agreement_with_teacher"]["miou"] - sum(agreement) / len(agreement)) < 1e-3
    labels = json.loads((repo / "metrics/labels.json").read_text())
    assert labels["val"]["with_masks"] == 0 and labels["val"]["miou_teacher"] is None
    exported = json.loads((repo / "data/export/model_val.json").read_text())
    assert len(exported["annotations"]) == ev["instances_without_masks"]
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status")

    out = sh(repo, "dvc", "exp", "run", "-n", "split", "-S", "train.holdout=split")  # the user's split, as given
    assert f"learning from {n_train} instances: {n_train} of {n_train} train and 0 of {n_val} val" in out
    assert json.loads((repo / "metrics/train.json").read_text())["instances"]["val"] == {"used": 0, "of": n_val}


def test_a_dask_cluster_gives_the_default_shards_and_queued_experiments_run_two_at_once(built: Path, tmp_path: Path):
    """The scale-out issue's acceptance: ``dvc exp run -S labels.scheduler=tcp://...`` with a
    scheduler and 2 workers gives the default run's shards; queued experiments run 2 at a time."""
    from tests.test_scheduler import Cluster

    repo = built
    manifest = (repo / "data/shards/manifest.json").read_bytes()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    shards_md5 = lock["stages"]["labels"]["outs"][0]["md5"]

    cluster = Cluster(tmp_path, 2)
    try:
        out = sh(repo, "dvc", "exp", "run", "-n", "on-dask", "-S", f"labels.scheduler={cluster.address}")
    finally:
        cluster.stop()
    assert "Running stage 'labels'" in out and f"on the Dask cluster at {cluster.address}, 2 workers" in out
    assert (repo / "data/shards/manifest.json").read_bytes() == manifest
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["labels"]["outs"][0]["md5"] == shards_md5
    assert "Stage 'train' didn't change" in out  # same shards: nothing downstream reruns

    # Two experiments queued, run at once, each in its own temporary workspace.
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "q-box", "-S", "train.labels=box")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "q-gt", "-S", "train.labels=gt")
    # The workers `dvc queue start` leaves running inherit its stdout: with a pipe (as sh() reads),
    # waiting for the command would wait for the workers to exit, which an idle one may not do.
    with open(tmp_path / "queue-start.log", "w") as log:
        subprocess.run(
            ["dvc", "queue", "start", "-j", "2"],
            cwd=repo,
            env=env(repo),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
    deadline = time.time() + 900
    while True:
        status = sh(repo, "dvc", "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        assert time.time() < deadline, status
        time.sleep(3)
    sh(repo, "dvc", "queue", "stop")  # no idle worker outlives the test
    assert status.count("Success") == 2, status
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json"))
    for name, source in (("q-box", "box"), ("q-gt", "gt")):
        entry = named(shown, name)
        assert train_params(entry)["labels"] == source
        assert entry["data"]["metrics"]["metrics/train.json"]["data"]["labels"] == source
    # The experiments wrote nothing into the main workspace.
    assert json.loads((repo / "metrics/train.json").read_text())["labels"] == "teacher"


def test_grabcut_plus_and_self_training_are_one_switch_each(built: Path, baseline: Baseline):
    """The labels issue's acceptance: ``dvc exp run -S labels.method=grabcut_plus`` end to end,
    then self-training on top with ``-S train.rounds=2``."""
    repo = built
    assert "0 maps" in baseline.out  # the default method needs no HED
    out = sh(repo, "dvc", "exp", "run", "-n", "plus", "-S", "labels.method=grabcut_plus")
    assert "Running stage 'boundaries'" in out and "Running stage 'labels'" in out
    n_images = len(list((repo / "data/raw/img").glob("*.jpg")))
    assert len(list((repo / "data/boundaries").glob("*.png"))) == n_images
    manifest = json.loads((repo / "data/shards/manifest.json").read_text())
    assert manifest["method"] == "grabcut_plus"
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "HEAD", "plus", "--json"))
    assert "train.miou_teacher" in diff["metrics/labels.json"]  # other labels, other scores

    out = sh(repo, "dvc", "exp", "run", "-n", "plus-self", "-S", "train.rounds=2")
    assert "Stage 'labels' didn't change" in out and "resuming from" in out  # round 1 is the run above
    summary = json.loads((repo / "metrics/train.json").read_text())
    assert summary["rounds"] == 2 and summary["per_round"][1]["self_labels"]["instances"] > 0
    assert (repo / "models/checkpoints/round-2-shards/manifest.json").is_file()
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_review_loop_through_the_real_page_and_dvc_repro(built: Path, tmp_path: Path):
    """The review issue's acceptance: the gallery a `dvc repro` wrote, opened in headless Chromium;
    two masks accepted and two rejected from the keyboard; the decisions saved into reviews/ and
    committed; `dvc repro` retrains on them and writes them into the export."""
    playwright = pytest.importorskip("playwright.sync_api")
    repo = built
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.goto((repo / "data/export/review/index.html").as_uri())
        page.wait_for_function("[...document.querySelectorAll('.card canvas')].every(c => c.dataset.drawn === '1')")
        first = page.eval_on_selector_all(".card", "cs => cs.slice(0, 4).map(c => c.dataset.key)")
        for key in "aarr":
            page.keyboard.press(key)
        page.screenshot(path=str(tmp_path / "reviewed.png"))
        with page.expect_download() as download:
            page.click("#save")
        download.value.save_as(repo / "reviews/decisions.csv")
        browser.close()
    saved = pd.read_csv(repo / "reviews/decisions.csv", keep_default_na=False)
    assert saved.key.tolist() == sorted(first) and len(saved) == 4
    assert dict(zip(saved.key, saved.decision)) == dict(zip(first, ["accept", "accept", "reject", "reject"]))
    sh(repo, "git", "add", "reviews")
    sh(repo, "git", "commit", "-qm", "review")
    status = sh(repo, "dvc", "status")
    assert "train:" in status and "export:" in status and "labels:" not in status
    out = sh(repo, "dvc", "repro")
    assert "Running stage 'train'" in out and "Running stage 'labels'" not in out
    assert "train: your decisions: 2 accepted masks are labels, 2 rejected instances left out" in out
    assert "export: your decisions (reviews): 2 masks accepted (written as accepted), 2 rejected (flagged)" in out
    assert json.loads((repo / "metrics/train.json").read_text())["review"] == {"accepted": 2, "rejected": 2}
    listed = pd.read_csv(repo / "data/export/review/review.csv", keep_default_na=False)
    assert sorted(listed[listed.decision != ""].key) == sorted(first)
    assert "up to date" in sh(repo, "dvc", "status")  # nothing left to run
