"""Shared fixtures: a tiny dataset in SBD layout, made by the project's own sample generator.

Every config is built from the repository's ``params.yaml`` (the one source of defaults) with
only the sizes that make a test fast overridden, so the tests train the setup that ships.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from wss import config
from wss.data import sample

ROOT = Path(__file__).resolve().parents[1]
PARAMS = config.load(ROOT / "params.yaml")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Schedule for two xdist workers (``--dist loadgroup``, which hands out one test at a time):
    the tests that start from the end-to-end ``baseline`` run go to one worker together, so that
    run is made once, not once per worker; and the longest tests go first (that group, then the
    ``slow`` ones), so the workers end together on the quick ones instead of one finishing a
    minute-long test alone.  The sort is stable: file order within each rank."""
    for item in items:
        if "baseline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("dvc-baseline"))

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def write_params(path: Path, **sections: dict) -> Path:
    """The repository's params.yaml written to ``path`` with each named section's keys replaced:
    ``write_params(p, evaluate={"flip": False})``.  Tests that run a stage's ``main`` build its
    params this way, so a new parameter needs no edit here."""
    import copy

    import yaml

    params = copy.deepcopy(PARAMS)
    for name, over in sections.items():
        unknown = set(over) - set(params[name])
        assert not unknown, f"params.yaml has no {name}.{sorted(unknown)}"
        params[name].update(over)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def data_cfg(**over) -> config.DataConfig:
    return config.read(config.DataConfig, PARAMS, **over)


def sample_cfg(**over) -> config.SampleConfig:
    return config.read(config.SampleConfig, PARAMS, **over)


def labels_cfg(**over) -> config.LabelsConfig:
    return config.read(config.LabelsConfig, PARAMS, **over)


def train_cfg(**over) -> config.TrainConfig:
    return config.read(config.TrainConfig, PARAMS, **over)


def evaluate_cfg(**over) -> config.EvaluateConfig:
    return config.read(config.EvaluateConfig, PARAMS, **over)


def refine_cfg(**over) -> config.RefineConfig:
    return config.read(config.RefineConfig, PARAMS, **over)


DATA = data_cfg()  # the sample source, as params.yaml ships
TINY = sample_cfg(n_train=6, n_val=3, min_side=96, max_side=128, max_instances=3)
TINY_LABELS = {"crop_size": 32, "shard_size": 4, "n_jobs": 1}
TINY_TRAIN = {"batch_size": 2, "log_every": 1, "checkpoint_every": 10, "shuffle_buffer": 8}


@pytest.fixture
def tiny_sbd(tmp_path: Path) -> Path:
    """A 9-image dataset in SBD layout (6 train, 3 val)."""
    out = tmp_path / "sbd"
    sample.generate(out, seed=7, cfg=TINY)
    return out


@pytest.fixture
def tiny_instances(tiny_sbd: Path) -> Path:
    """The tiny dataset converted: instance table and masks."""
    from wss.data import convert

    out = tiny_sbd.parent / "instances"
    convert.convert(tiny_sbd, out, DATA, 0.0)
    return out


@pytest.fixture
def tiny_shards(tiny_sbd: Path, tiny_instances: Path) -> Path:
    """Shards of the tiny dataset, 32-pixel crops."""
    from wss.labels import build as labels

    out = tiny_sbd.parent / "shards"
    labels.run(tiny_sbd, tiny_instances, out, labels_cfg(**TINY_LABELS), seed=1)
    return out


@pytest.fixture(scope="session")
def random_init(tmp_path_factory) -> Path:
    """A 4-channel trunk weights file from the surgery stage (random init, so it is quick)."""
    from stages import surgery

    d = tmp_path_factory.mktemp("init")
    write_params(d / "params.yaml", base={"seed": 3}, surgery={"init": "random"})
    surgery.main(["--params", str(d / "params.yaml"), "--out", str(d / "vgg16_4ch.weights.h5")])
    return d / "vgg16_4ch.weights.h5"


@dataclass
class Built:
    data: Path
    instances: Path
    shards: Path
    model: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory, random_init: Path) -> Built:
    """The tiny dataset taken through every stage up to a model trained for two steps (read-only)."""
    from wss.data import convert
    from wss.labels import build as labels
    from wss.net import training

    d = tmp_path_factory.mktemp("built")
    sample.generate(d / "sbd", seed=7, cfg=TINY)
    convert.convert(d / "sbd", d / "instances", DATA, 0.0)
    labels.run(d / "sbd", d / "instances", d / "shards", labels_cfg(**TINY_LABELS), 1)
    cfg = train_cfg(steps=2, **TINY_TRAIN)
    training.train(cfg, d / "shards", random_init, d / "model" / "model.keras", d / "ckpt", d / "live", seed=1)
    return Built(d / "sbd", d / "instances", d / "shards", d / "model" / "model.keras")


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A copy of the project's code that :mod:`wss.core.provenance` fingerprints instead of the
    checkout, so a test can edit the source a fingerprint sees without touching the real files."""
    import shutil

    from wss.core import provenance

    copy = tmp_path / "project"
    package = provenance.PACKAGE
    shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "ROOT", copy)
    provenance.closure.cache_clear()
    yield copy
    provenance.closure.cache_clear()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
