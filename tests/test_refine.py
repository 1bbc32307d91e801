"""The refinement cut: a graph cut on a probability map, snapping it to the image's edges."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import refine_cfg
from wss.core.boxes import Box
from wss.core.metrics import iou
from wss.errors import StageInputError
from wss.evaluation import refine


def disc_scene(h: int = 80, w: int = 100):
    """A bright disc on a dark, noisy background, and a probability map that is sure inside the
    disc and unsure (0.6) on a 4-pixel ring past its edge, as a low-resolution network output is."""
    rng = np.random.default_rng(0)
    truth = np.zeros((h, w), np.uint8)
    cv2.circle(truth, (50, 40), 22, 1, -1)
    image = np.where(truth[..., None] == 1, 200, 40).astype(np.float64) + rng.normal(0, 8, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    spill = cv2.dilate(truth, np.ones((9, 9), np.uint8))
    prob = np.where(truth == 1, 0.9, np.where(spill == 1, 0.6, 0.1)).astype(np.float32)
    return image, prob, truth, Box(20, 10, 81, 71)


def test_unaries_are_the_negative_log_probabilities():
    source, sink = refine.unaries(np.array([[0.5, 0.9, 1.0]]), 2.0)
    assert source[0, 0] == pytest.approx(sink[0, 0])  # undecided: the pairwise term decides
    assert source[0, 1] == pytest.approx(-2 * np.log(0.1)) and sink[0, 1] == pytest.approx(-2 * np.log(0.9))
    assert np.isfinite(source[0, 2]) and sink[0, 2] < 0.01  # clipped: never infinite


def test_the_cut_snaps_a_blurry_map_to_the_colour_edge():
    image, prob, truth, box = disc_scene()
    plain = (prob >= 0.5).astype(np.uint8)
    cut = refine.refine(image, prob, box, None, gamma=2.0, sigma=0.3, max_side=0)
    assert iou(cut, truth) > iou(plain, truth) + 0.05
    assert iou(cut, truth) > 0.9


def test_the_cut_follows_a_boundary_map_too():
    image, prob, truth, box = disc_scene()
    edges = cv2.morphologyEx(truth, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
    flat = np.full_like(image, 100)  # no colour edge at all: only the boundary map can place the cut
    cut = refine.refine(flat, prob, box, edges, gamma=2.0, sigma=0.3, max_side=0)
    assert iou(cut, truth) > iou((prob >= 0.5).astype(np.uint8), truth) + 0.05


def test_nothing_outside_the_box_and_max_side_scales_back():
    image, prob, truth, _ = disc_scene()
    half = Box(20, 10, 50, 71)  # the box cuts the disc in two
    cut = refine.refine(image, prob, half, None, 2.0, 0.3, 0)
    assert cut.shape == truth.shape and not cut[:, 50:].any() and not cut[:, :20].any() and cut[:, 30:50].any()
    small = refine.refine(image, prob, Box(20, 10, 81, 71), None, 2.0, 0.3, 24)
    assert small.shape == truth.shape and iou(small, truth) > 0.85


def test_inside_box_keeps_the_box_and_zeroes_the_rest():
    prob = np.full((6, 8), 0.7, np.float32)
    out = refine.inside_box(prob, Box(2, 1, 5, 4))
    want = np.zeros((6, 8), np.float32)
    want[1:4, 2:5] = 0.7
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(refine.inside_box(prob, Box(-3, -2, 3, 20)), np.pad(prob[:, :3], ((0, 0), (0, 5))))
    assert not refine.inside_box(prob, Box(9, 0, 12, 3)).any()  # a box off the image keeps nothing
    assert prob.min() == 0.7  # the input is not modified


def test_fuse_averages_the_model_with_the_teacher():
    prob = np.array([[0.8, 0.2]], np.float32)
    assert np.allclose(refine.fuse(prob, np.array([[1, 1]], np.uint8)), [[0.9, 0.6]])
    assert refine.fuse(prob, None) is prob


def test_a_hed_cut_without_maps_says_what_to_do(tmp_path):
    with pytest.raises(StageInputError, match="refine.pairwise is hed.*grabcut_plus"):
        refine.Refiner(refine_cfg(pairwise="hed"), tmp_path, tmp_path / "boundaries")


def test_the_refiner_cuts_the_model_and_the_fused_masks(tmp_path):
    image, prob, truth, box = disc_scene()
    cv2.imwrite(str(tmp_path / "a.png"), image)
    plain = (prob >= 0.5).astype(np.uint8)
    on = refine.Refiner(refine_cfg(apply=True, gamma=2.0), tmp_path)
    assert on.ms_per_instance() is None
    assert iou(on.cut("a.png", prob, box), truth) > iou(plain, truth) + 0.05
    teacher = truth.copy()
    teacher[30:45, 40:55] = 0  # a hole in the teacher where the model is sure, and the model unsure where the
    # teacher is right (the ring): where the two disagree, the image's edges decide
    fused = on.fused("a.png", prob, teacher, box)
    assert iou(fused, truth) > max(iou(teacher, truth), iou(plain, truth)) + 0.1 and iou(fused, truth) > 0.9
    assert on.count == 2 and on.ms_per_instance() > 0
