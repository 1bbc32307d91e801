import numpy as np

from wss.core import masks, metrics
from wss.core.boxes import Box, square_window


def test_crop_then_paste_recovers_mask():
    m = np.zeros((120, 160), np.uint8)
    m[30:70, 40:100] = 1
    m[45:55, 60:80] = 0  # a hole
    window = square_window(Box(40, 30, 100, 70), 0.3)  # leaves the image on no side here
    c = masks.crop(m.astype(np.float32), window, 64)
    back = masks.paste(c, window, 120, 160) >= 0.5
    assert metrics.iou(back, m) > 0.95


def test_crop_pads_outside_image():
    img = np.full((10, 10, 3), 200, np.uint8)
    c = masks.crop(img, Box(-10, -10, 10, 10), 20)
    assert c.shape == (20, 20, 3) and c.dtype == np.uint8
    assert c[0, 0, 0] == 0 and c[-1, -1, 0] == 200


def test_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert metrics.iou(a, b) == 1.0
    a[:2] = True
    b[1:3] = True
    assert metrics.iou(a, b) == 4 / 12


def test_boundary_is_inner_ring():
    m = np.zeros((7, 7), np.uint8)
    m[1:6, 1:6] = 1
    for edge in (True, False):  # away from the image border both conventions agree
        assert masks.boundary(m, image_edge=edge).sum() == 16


def test_image_border_is_contour_only_when_asked():
    m = np.zeros((6, 6), np.uint8)
    m[:, :3] = 1  # the left half, touching the top, left and bottom borders
    expected_davis = np.zeros((6, 6), bool)
    expected_davis[:, 2] = True  # only the column next to the background
    np.testing.assert_array_equal(masks.boundary(m, image_edge=False), expected_davis)
    sbd_style = masks.boundary(m, image_edge=True)
    assert sbd_style[:, 0].all() and sbd_style[0, :3].all() and sbd_style[-1, :3].all() and sbd_style.sum() == 6 + 4 + 4
