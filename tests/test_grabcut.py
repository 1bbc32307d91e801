import cv2
import numpy as np
import pytest

from tests.conftest import labels_cfg
from wss.core import metrics
from wss.core.boxes import Box, fill
from wss.errors import ConfigError
from wss.labels import grabcut

CFG = labels_cfg().grabcut
SEED_2017_SAMPLE_1 = 1659609697


def disc_image(h=80, w=100):
    """A red disc on a noisy green background, and its mask."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal([40, 160, 40], 12, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (50, 40), 22, 1, -1)
    img[mask > 0] = (30, 30, 200)
    return img, mask


def test_grabcut_finds_the_disc():
    img, mask = disc_image()
    out, reason = grabcut.segment(img, Box(26, 16, 75, 65), CFG, seed=1)
    assert reason == "" and metrics.iou(out, mask) > 0.9
    assert metrics.iou(fill(Box(26, 16, 75, 65), 80, 100), mask) < 0.85


def test_roi_and_whole_image_agree_on_easy_case():
    img, mask = disc_image()
    roi, _ = grabcut.segment(img, Box(26, 16, 75, 65), CFG, seed=1)
    whole, _ = grabcut.segment(img, Box(26, 16, 75, 65), labels_cfg(roi_margin=-1).grabcut, seed=1)
    assert metrics.iou(roi, whole) > 0.95


def test_tiny_box_falls_back_to_box():
    img, _ = disc_image()
    out, reason = grabcut.segment(img, Box(10, 10, 11, 30), CFG, seed=1)
    assert reason == "tiny_box" and out.sum() == 20


def test_whole_image_box_uses_band_seeding():
    img, mask = disc_image()
    crop = np.ascontiguousarray(img[12:70, 22:80])
    out, reason = grabcut.segment(crop, Box(0, 0, 58, 58), CFG, seed=1)
    assert reason == "whole_image"
    assert metrics.iou(out, mask[12:70, 22:80]) > 0.8


def test_empty_result_falls_back_to_ellipse(monkeypatch):
    img, _ = disc_image()

    def everything_background(image, mask, rect, bgd, fgd, iters, mode):
        mask[:] = cv2.GC_BGD

    monkeypatch.setattr(cv2, "grabCut", everything_background)
    box = Box(26, 16, 75, 65)
    out, reason = grabcut.segment(img, box, CFG, seed=1)
    assert reason == "empty_grabcut"
    np.testing.assert_array_equal(out, grabcut.ellipse(box, 80, 100))


def test_opencv_error_falls_back(monkeypatch):
    img, _ = disc_image()

    def broken(*args):
        raise cv2.error("simulated failure")

    monkeypatch.setattr(cv2, "grabCut", broken)
    box = Box(26, 16, 75, 65)
    out, reason = grabcut.segment(img, box, labels_cfg(fallback_shape="box").grabcut, seed=1)
    assert reason == "opencv_error"
    np.testing.assert_array_equal(out, fill(box, 80, 100))


def test_ellipse_inside_box():
    e = grabcut.ellipse(Box(10, 10, 30, 20), 40, 40)
    assert e[10:20, 10:30].sum() == e.sum() > 0.7 * 200


def test_unknown_fallback_shape():
    with pytest.raises(ConfigError, match="fallback_shape"):
        grabcut.fallback(Box(0, 0, 4, 4), 8, 8, "star")


def test_instance_seed_is_stable_across_processes_and_distinct():
    # A pinned value: Python's per-process hash() randomisation would break this, crc32 does not.
    assert grabcut.instance_seed(2017, "sample_000001", 1) == SEED_2017_SAMPLE_1
    seeds = {grabcut.instance_seed(2017, f"img{i}", k) for i in range(500) for k in range(1, 5)}
    assert len(seeds) == 2000


def test_segment_does_not_depend_on_what_ran_before():
    """OpenCV's GrabCut draws its k-means start from a global RNG: each call reseeds it, so an
    instance's label is the same whichever instances a worker segmented before it."""
    img, _ = disc_image()
    a, b = Box(26, 16, 75, 65), Box(20, 10, 80, 70)
    sa, sb = grabcut.instance_seed(1, "x", 1), grabcut.instance_seed(1, "x", 2)
    first_a = grabcut.segment(img, a, CFG, sa)[0]
    b_then_a = [grabcut.segment(img, b, CFG, sb)[0], grabcut.segment(img, a, CFG, sa)[0]]
    np.testing.assert_array_equal(first_a, b_then_a[1])
    cv2.setRNGSeed(12345)  # someone else used the global RNG in between
    cv2.randu(np.zeros((100, 100), np.float32), 0, 1)
    np.testing.assert_array_equal(grabcut.segment(img, b, CFG, sb)[0], b_then_a[0])


def test_votes_agree_on_the_object_and_stay_in_the_box():
    img, mask = disc_image()
    box = Box(26, 16, 75, 65)
    v = grabcut.votes(img, box, CFG, seed=1, runs=6, box_jitter=0.1)
    assert v.dtype == np.float32 and v.shape == mask.shape
    assert v[fill(box, 80, 100) == 0].max() == 0  # outside the box: no votes
    assert np.mean(v[mask > 0] >= 0.7) > 0.9 and np.mean(v[(mask == 0) & (fill(box, 80, 100) > 0)] < 0.2) > 0.8
    np.testing.assert_array_equal(v, grabcut.votes(img, box, CFG, seed=1, runs=6, box_jitter=0.1))


def test_votes_leave_out_failed_runs(monkeypatch):
    img, _ = disc_image()
    calls = []

    def flaky(image, box, cfg, seed, edges=None):
        calls.append(box)
        m = fill(box, *image.shape[:2])
        return (m, "") if len(calls) % 2 else (m, "empty_grabcut")

    monkeypatch.setattr(grabcut, "segment", flaky)
    v = grabcut.votes(img, Box(26, 16, 75, 65), CFG, seed=1, runs=4, box_jitter=0.1)
    assert len(calls) == 4 and len(set(calls)) > 1  # each run sees its own jittered box
    assert set(np.unique(v)) <= {0.0, 0.5, 1.0}  # two counted runs
    monkeypatch.setattr(
        grabcut, "segment", lambda image, box, cfg, seed, edges=None: (fill(box, 80, 100), "opencv_error")
    )
    assert grabcut.votes(img, Box(26, 16, 75, 65), CFG, seed=1, runs=3, box_jitter=0.1) is None
