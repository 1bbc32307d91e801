"""BoxInst's box-supervised terms, by hand on tiny arrays: values, gradients, and a training run on them alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_TRAIN, train_cfg
from wss.net import model, training


def box4() -> np.ndarray:
    box = np.zeros((1, 4, 4), np.float32)
    box[0, 1:3, 1:3] = 1
    return box


def test_projection_is_zero_for_a_mask_that_spans_its_box_and_two_thirds_at_p_half():
    box = box4()
    inside = np.where(box[..., None] > 0, 20.0, -20.0).astype(np.float32)
    assert float(model.per_image_projection(box, inside)[0]) == pytest.approx(0.0, abs=1e-6)
    # A diagonal inside the box spans it on both axes: its shape inside does not matter.
    diag = np.full((1, 4, 4, 1), -20.0, np.float32)
    diag[0, 1, 1] = diag[0, 2, 2] = 20.0
    assert float(model.per_image_projection(box, diag)[0]) == pytest.approx(0.0, abs=1e-6)
    # p = 0.5 everywhere: per axis 1 - 2 (0.5 + 0.5) / (4 x 0.25 + 2) = 1/3.
    half = np.zeros((1, 4, 4, 1), np.float32)
    assert float(model.per_image_projection(box, half)[0]) == pytest.approx(2 / 3, abs=1e-6)
    nothing = np.full((1, 4, 4, 1), -30.0, np.float32)
    assert float(model.per_image_projection(box, nothing)[0]) == pytest.approx(2.0, abs=1e-4)


def test_projection_gradient_reaches_only_each_rows_and_columns_maximum():
    box = box4()
    logits = tf.Variable(np.random.default_rng(0).normal(0, 1, (1, 4, 4, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = model.per_image_projection(box, logits)
    g = tape.gradient(loss, logits).numpy()[0, ..., 0]
    x = logits.numpy()[0, ..., 0]
    argmax = np.zeros((4, 4), bool)
    argmax[np.argmax(x, 0), np.arange(4)] = True
    argmax[np.arange(4), np.argmax(x, 1)] = True
    assert np.all(g[~argmax] == 0) and np.any(g[argmax] != 0)


def test_lab_is_opencvs():
    """To OpenCV's float conversion, which interpolates: within 0.3 of 100."""
    rgb = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3)).astype(np.float32)
    want = np.stack([cv2.cvtColor(im / 255.0, cv2.COLOR_RGB2Lab) for im in rgb.astype(np.float32)])
    np.testing.assert_allclose(model.rgb_to_lab(rgb).numpy(), want, atol=0.3)


def two_colours(side: int = 8) -> np.ndarray:
    """Left half red, right half blue."""
    rgb = np.zeros((1, side, side, 3), np.float32)
    rgb[0, :, : side // 2] = (200, 20, 20)
    rgb[0, :, side // 2 :] = (20, 20, 200)
    return rgb


def test_colour_affinity_is_one_within_a_colour_small_across_and_zero_off_the_image():
    aff = model.colour_affinity(two_colours()).numpy()[0]
    right = model.PAIR_OFFSETS.index((0, 1))  # the neighbour 2 pixels to the right
    assert aff[3, 0, right] == pytest.approx(1.0)  # red to red
    assert aff[3, 2, right] < 0.01  # red (x=2) to blue (x=4)
    assert aff[3, 7, right] == 0.0  # off the image
    assert aff.shape == (8, 8, 8)


def test_pairwise_by_hand_and_its_gradient_stays_within_colour_and_box():
    rgb = two_colours()
    aff = model.colour_affinity(rgb)
    full = np.ones((1, 8, 8), np.float32)
    half = np.zeros((1, 8, 8, 1), np.float32)  # p = 0.5: P(same) = 0.5 on every pair
    assert float(model.per_image_pairwise(full, half, aff, 0.3)[0]) == pytest.approx(np.log(2), abs=1e-5)
    sure = np.where(np.arange(8)[None, None, :, None] < 4, 20.0, -20.0) * np.ones((1, 8, 8, 1), np.float32)
    assert float(model.per_image_pairwise(full, sure.astype(np.float32), aff, 0.3)[0]) < 1e-6  # one label per colour
    assert float(model.per_image_pairwise(np.zeros_like(full), half, aff, 0.3)[0]) == 0.0  # no box: no pairs
    # The gradient: nothing across the colour edge alone, nothing far from the box.
    box = np.zeros((1, 8, 8), np.float32)
    box[0, :, 2:4] = 1  # the box covers the two red columns next to the blue half
    logits = tf.Variable(np.random.default_rng(2).normal(0, 1, (1, 8, 8, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = model.per_image_pairwise(box, logits, aff, 0.3)
    g = tape.gradient(loss, logits).numpy()[0, ..., 0]
    assert np.all(g[:, 4:] == 0)  # the blue half, 2 pixels from the box: no pair passes the threshold
    assert np.any(g[:, :2] != 0) and np.any(g[:, 2:4] != 0)  # the box and its red neighbours 2 pixels away
    with tf.GradientTape() as tape:
        loss = model.per_image_pairwise(box, logits, aff, 0.0)  # every pair counts
    assert np.any(tape.gradient(loss, logits).numpy()[0, :, 4:6] != 0)


@pytest.mark.slow
def test_training_on_the_box_terms_alone_learns_and_stays_finite(tmp_path, tiny_shards, random_init):
    """``train.label_weight: 0``: no teacher at all, only the projection and pairwise terms."""
    terms = {"label_weight": 0.0, "projection_weight": 1.0, "pairwise_weight": 1.0, "skip_fallbacks": False}
    cfg = train_cfg(steps=3, **terms, **TINY_TRAIN)
    summary = training.train(cfg, tiny_shards, random_init, tmp_path / "m.keras", tmp_path / "ck", tmp_path / "lv", 1)
    assert np.isfinite(summary["final_loss"]) and summary["final_loss"] > 0
    # The label term is out of the loss: the same instances with other labels (the true masks)
    # train the same weights.
    other = training.train(
        train_cfg(steps=3, labels="gt", **terms, **TINY_TRAIN),
        tiny_shards, random_init, tmp_path / "b.keras", tmp_path / "ckb", tmp_path / "lvb", 1,
    )  # fmt: skip
    assert other["final_loss"] == summary["final_loss"]
    with_labels = training.train(
        train_cfg(steps=3, **{**terms, "label_weight": 1.0}, **TINY_TRAIN),
        tiny_shards, random_init, tmp_path / "c.keras", tmp_path / "ckc", tmp_path / "lvc", 1,
    )  # fmt: skip
    assert with_labels["final_loss"] > summary["final_loss"]
