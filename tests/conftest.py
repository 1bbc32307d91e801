"""Shared fixtures: a tiny dataset in SBD layout, made by the project's own sample generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stages import sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = sample.SampleConfig(n_train=6, n_val=3, min_side=96, max_side=128, max_instances=3)


@pytest.fixture
def tiny_sbd(tmp_path: Path) -> Path:
    """A 9-image dataset in SBD layout (6 train, 3 val)."""
    out = tmp_path / "sbd"
    sample.generate(out, seed=7, cfg=TINY)
    return out


@pytest.fixture
def tiny_instances(tiny_sbd: Path) -> Path:
    """The tiny dataset converted: instance table and masks."""
    from stages import convert

    out = tiny_sbd.parent / "instances"
    convert.convert(tiny_sbd, out, 0.0)
    return out
