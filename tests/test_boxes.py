import numpy as np
import pytest

from wss.core import boxes
from wss.core.boxes import Box


def test_from_mask_is_exclusive():
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 1
    assert boxes.from_mask(m) == Box(3, 2, 9, 5)
    assert boxes.from_mask(np.zeros((4, 4))) is None


def test_fill_covers_exactly_the_box():
    m = boxes.fill(Box(3, 2, 9, 5), 10, 12)
    assert m.sum() == 6 * 3 and boxes.from_mask(m) == Box(3, 2, 9, 5)


def test_clip_and_expand():
    assert boxes.clip(Box(-3, -1, 20, 5), 8, 10) == Box(0, 0, 10, 5)
    assert boxes.expand(Box(10, 10, 20, 30), 0.5) == Box(5, 0, 25, 40)


def test_square_window_is_square_and_centred():
    w = boxes.square_window(Box(10, 20, 30, 60), 0.25)
    assert w.width == w.height == 60
    assert (w.x1 + w.x2) == (10 + 30) and (w.y1 + w.y2) == (20 + 60)


@pytest.mark.parametrize(
    "box,bad", [(Box(0, 0, 3, 3), False), (Box(0, 0, 2, 4), True), (Box(0, 0, 1, 50), True), (Box(5, 5, 5, 9), True)]
)
def test_is_degenerate(box, bad):
    assert boxes.is_degenerate(box) is bad


def test_cv_rect():
    assert boxes.to_cv_rect(Box(3, 2, 9, 5)) == (3, 2, 6, 3)


def test_jitter_stays_inside_and_nonempty():
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = boxes.jitter(Box(0, 0, 5, 5), rng, 0.9, 8, 8)
        assert 0 <= b.x1 < b.x2 <= 8 and 0 <= b.y1 < b.y2 <= 8
