import itertools

import cv2
import numpy as np
import pytest

from tests.conftest import PARAMS, labels_cfg
from wss import config
from wss.core import metrics
from wss.core.boxes import Box, clip, expand, from_mask
from wss.data import sample
from wss.errors import StageInputError
from wss.labels import grabcut, graphcut


def energy(labels, source, sink, w: graphcut.Weights) -> float:
    """The cut's cost: terminal edges cut plus pairwise edges between differently labelled pixels."""
    cost = np.where(labels, sink, source).sum()
    cost += (w.right[:, :-1] * (labels[:, :-1] != labels[:, 1:])).sum()
    cost += (w.down[:-1, :] * (labels[:-1, :] != labels[1:, :])).sum()
    cost += (w.down_right[:-1, :-1] * (labels[:-1, :-1] != labels[1:, 1:])).sum()
    cost += (w.down_left[:-1, 1:] * (labels[:-1, 1:] != labels[1:, :-1])).sum()
    return float(cost)


@pytest.mark.parametrize("seed", range(5))
def test_min_cut_reaches_the_brute_force_minimum(seed):
    rng = np.random.default_rng(seed)
    h, w = 3, 4
    source, sink = rng.uniform(0, 5, (h, w)), rng.uniform(0, 5, (h, w))
    weights = graphcut.Weights(*rng.uniform(0, 3, (4, h, w)))
    best = min(
        energy(np.array(bits, bool).reshape(h, w), source, sink, weights)
        for bits in itertools.product((0, 1), repeat=h * w)
    )
    cut = graphcut.min_cut(source, sink, graphcut.grid(weights))
    assert energy(cut, source, sink, weights) == pytest.approx(best, abs=1e-2)  # weights are rounded to 1/1000


def test_pinned_pixels_keep_their_side_and_act_on_their_neighbours():
    rng = np.random.default_rng(0)
    h, w = 6, 7
    source, sink = rng.uniform(0, 5, (h, w)), rng.uniform(0, 5, (h, w))
    weights = graphcut.Weights(*rng.uniform(0, 20, (4, h, w)))
    fixed = np.full((h, w), -1, np.int8)
    fixed[0, :], fixed[-1, :] = 1, 0
    pinned = graphcut.min_cut(source, sink, graphcut.grid(weights, fixed))
    # The same pins as huge terminal costs, on the full graph.
    big = 1e5
    tied = graphcut.min_cut(source + big * (fixed == 1), sink + big * (fixed == 0), graphcut.grid(weights))
    assert pinned[0].all() and not pinned[-1].any()
    np.testing.assert_array_equal(pinned, tied)


def test_boundary_weights_are_cheap_exactly_across_a_boundary():
    edges = np.zeros((5, 6))
    edges[:, 3] = 1.0  # a vertical boundary in column 3
    wts = graphcut.boundary_weights(edges, sigma=0.2)
    assert wts.right[2, 0] == pytest.approx(graphcut.GAMMA)  # no boundary between columns 0 and 1
    assert wts.right[2, 2] == pytest.approx(graphcut.GAMMA * np.exp(-1 / (2 * 0.2**2)))  # into the boundary
    assert wts.down[1, 3] < 1e-3 * graphcut.GAMMA  # along the boundary line, both pixels are on it
    assert wts.right[:, -1].sum() == 0 and wts.down[-1, :].sum() == 0  # no neighbour outside


def sample_instances(n: int):
    """(image, box) of the first ``n`` instances of the default sample, as the pipeline renders it."""
    cfg = config.read(config.SampleConfig, PARAMS)
    out = []
    for i in itertools.count():
        img, inst, _, _ = sample.render(i, config.seed(PARAMS), cfg)
        for k in range(1, inst.max() + 1):
            out.append((img, from_mask(inst == k)))
            if len(out) == n:
                return out


def test_with_colour_weights_it_reproduces_opencv_grabcut():
    """The issue's equivalence check: GrabCut+'s core with GrabCut's colour term instead of HED's
    is OpenCV's GrabCut, on the default sample's instances (ROI as the labels stage cuts it)."""
    ious = []
    for img, box in sample_instances(8):
        h, w = img.shape[:2]
        roi = clip(expand(box, 0.5), h, w)
        crop = np.ascontiguousarray(img[roi.y1 : roi.y2, roi.x1 : roi.x2])
        trimap = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
        trimap[box.y1 - roi.y1 : box.y2 - roi.y1, box.x1 - roi.x1 : box.x2 - roi.x1] = cv2.GC_PR_FGD
        theirs = trimap.copy()
        cv2.setRNGSeed(7)
        cv2.grabCut(crop, theirs, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
        cv2.setRNGSeed(7)
        ours = graphcut.grabcut(crop, trimap, graphcut.colour_weights(crop), 5)
        ious.append(metrics.iou(theirs % 2 == 1, ours % 2 == 1))  # GC_FGD = 1, GC_PR_FGD = 3
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.8, ious


def test_grabcut_plus_follows_the_boundary_map_where_colours_do_not_tell():
    """A disc barely brighter than its noisy surround: OpenCV's GrabCut loses it, the boundary map
    (a ridge on the disc's rim, as HED draws it) lets GrabCut+ find it."""
    h, w = 60, 60
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 30, xx - 30)
    disc = (r < 15).astype(np.uint8)
    noise = np.random.default_rng(0).normal(128, 40, (h, w, 3))
    img = np.clip(noise + 10 * disc[..., None], 0, 255).astype(np.uint8)
    edges = np.exp(-((r - 15) ** 2) / 2).astype(np.float32)
    box = Box(13, 13, 48, 48)
    plus, reason = grabcut.segment(img, box, labels_cfg(method="grabcut_plus").grabcut, seed=1, edges=edges)
    plain, _ = grabcut.segment(img, box, labels_cfg(method="grabcut").grabcut, seed=1)
    assert reason == "" and metrics.iou(plus, disc) > 0.85
    assert metrics.iou(plain, disc) < 0.75


def test_grabcut_plus_without_its_boundary_map_says_so():
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(StageInputError, match="boundary map"):
        grabcut.segment(img, Box(5, 5, 30, 30), labels_cfg(method="grabcut_plus").grabcut, seed=1)


def test_work_scale_enlarges_small_boxes_and_caps_large_regions():
    small, big = Box(10, 10, 26, 42), Box(0, 0, 400, 200)
    assert grabcut.work_scale(small, expand(small, 0.5), 0, 0) == 1.0
    assert grabcut.work_scale(small, expand(small, 0.5), 64, 0) == 4.0  # shorter side 16 -> 64
    assert grabcut.work_scale(small, expand(small, 0.5), 64, 96) == pytest.approx(96 / 64)  # ROI 64 tall at most 96
    assert grabcut.work_scale(big, big, 64, 160) == pytest.approx(160 / 400)


def test_grabcut_plus_i_votes_run_the_grabcut_plus_core(monkeypatch):
    """GrabCut+^i: the jittered consensus runs on GrabCut+ (each run gets the boundary map)."""
    h, w = 60, 60
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 30, xx - 30)
    disc = r < 15
    img = np.clip(np.random.default_rng(0).normal(128, 40, (h, w, 3)) + 10 * disc[..., None], 0, 255).astype(np.uint8)
    edges = np.exp(-((r - 15) ** 2) / 2).astype(np.float32)
    cfg = labels_cfg(method="grabcut_plus").grabcut
    seen = []
    core = graphcut.grabcut
    monkeypatch.setattr(graphcut, "grabcut", lambda *a, **k: seen.append(1) or core(*a, **k))
    v = grabcut.votes(img, Box(13, 13, 48, 48), cfg, seed=1, runs=4, box_jitter=0.1, edges=edges)
    assert len(seen) == 4
    assert metrics.iou(v >= 0.5, disc) > 0.85
