import numpy as np
import pytest
import tensorflow as tf

from wss.core.masks import VOID
from wss.net import model


def test_osvos_outputs_are_input_sized_logits():
    net = model.osvos(model.vgg16_trunk(4), 16)
    out = net(np.zeros((2, 32, 32, 4), np.float32))
    assert set(out) == {"fused", *model.SIDES}
    for v in out.values():
        assert tuple(v.shape) == (2, 32, 32, 1) and v.dtype == tf.float32
    assert not any(v.trainable for layer in net.layers if layer.name.endswith("_up") for v in layer.weights)


@pytest.mark.parametrize("stride", [2, 4, 8, 16])
def test_bilinear_upsampling_keeps_a_constant(stride):
    up = tf.keras.layers.Conv2DTranspose(3, 2 * stride, strides=stride, padding="same", use_bias=False)
    up.build((None, 4, 4, 3))
    up.set_weights([model.bilinear_kernel(2 * stride, 3)])
    y = up(np.full((1, 4, 4, 3), 2.0, np.float32)).numpy()
    assert y.shape == (1, 4 * stride, 4 * stride, 3)
    inner = y[0, stride:-stride, stride:-stride]  # the borders see zero padding
    np.testing.assert_allclose(inner, 2.0, rtol=1e-5)


def batch_bce(labels, logits, reduction="mean", balance=True):
    """The per-image loss averaged over the batch, as the training step averages it."""
    return tf.reduce_mean(model.per_image_bce(labels, logits, reduction, balance))


def test_balanced_bce_matches_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    labels = (rng.random((2, 4, 4)) > 0.7).astype(np.float32)
    got_sum = float(batch_bce(labels, logits, "sum"))
    expect = []
    for x, y in zip(logits[..., 0], labels):
        p = 1 / (1 + np.exp(-x))
        pos, n = y.sum(), y.size
        expect.append((n - pos) / n * -np.log(p[y == 1]).sum() + pos / n * -np.log(1 - p[y == 0]).sum())
    np.testing.assert_allclose(got_sum, np.mean(expect), rtol=1e-5)
    np.testing.assert_allclose(float(batch_bce(labels, logits, "mean")), np.mean(expect) / 16, rtol=1e-5)
    with pytest.raises(ValueError):
        batch_bce(labels, logits, "median")


def test_preprocess_is_caffe_bgr_plus_box():
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    box = np.array([[[1, 0], [0, 0]]], np.uint8)
    x = model.preprocess(rgb, box).numpy()
    assert x.shape == (1, 2, 2, 4)
    np.testing.assert_allclose(x[0, 0, 0, :3], [-103.939, -116.779, 200 - 123.68], rtol=1e-5)
    assert x[0, 0, 0, 3] == model.BOX_SCALE and x[0, 1, 1, 3] == 0


def test_unbalanced_is_half_the_plain_cross_entropy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    labels = (rng.random((2, 4, 4)) > 0.8).astype(np.float32)
    plain = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels[..., None], logits=logits).numpy().mean()
    np.testing.assert_allclose(float(batch_bce(labels, logits, "mean", balance=False)), plain / 2, rtol=1e-5)


def test_void_pixels_take_no_part_in_the_loss():
    rng = np.random.default_rng(2)
    logits = tf.constant(rng.normal(size=(2, 4, 4, 1)).astype(np.float32))
    labels = (rng.random((2, 4, 4)) > 0.6).astype(np.float32)
    void = labels.copy()
    void[:, :2] = VOID  # the top half of each image is ignored
    for balance in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = batch_bce(void, logits, "mean", balance)
        grad = tape.gradient(loss, logits).numpy()
        assert np.all(grad[:, :2] == 0) and np.any(grad[:, 2:] != 0)
        # Equal to the loss on the labelled half alone.
        np.testing.assert_allclose(
            float(loss), float(batch_bce(labels[:, 2:], logits[:, 2:], "mean", balance)), rtol=1e-5
        )
    # An image with no labelled pixel contributes zero, not NaN.
    assert float(batch_bce(np.full((1, 4, 4), VOID, np.float32), logits[:1])) == 0.0


def test_flip_averaging_is_mirror_equivariant():
    net = model.osvos(model.vgg16_trunk(4), 16)
    rng = np.random.default_rng(3)
    for layer in net.layers:  # non-zero heads, so the output depends on the input
        if layer.name in model.SIDES + ("fused",):
            layer.set_weights([rng.normal(0, 0.01, w.shape).astype(np.float32) for w in layer.get_weights()])
    rgb = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    box = np.zeros((3, 32, 32), np.uint8)
    box[:, 4:20, 6:28] = 1
    plain = model.predict_proba(net, rgb, box, batch_size=2)
    mirrored = model.predict_proba(net, rgb[:, :, ::-1], box[:, :, ::-1], batch_size=2)[:, :, ::-1]
    both = model.predict_proba(net, rgb, box, batch_size=2, flip=True)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, mirrored)
    again = model.predict_proba(net, rgb[:, :, ::-1], box[:, :, ::-1], batch_size=2, flip=True)[:, :, ::-1]
    np.testing.assert_allclose(again, both, atol=1e-6)


def test_soft_iou_loss_matches_formula_and_ignores_void():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    labels = (rng.random((2, 4, 4)) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits[..., 0]))
    expect = [1 - ((q * y).sum() + 1) / ((q + y - q * y).sum() + 1) for q, y in zip(p, labels)]
    np.testing.assert_allclose(model.per_image_soft_iou(labels, logits).numpy(), expect, rtol=1e-5)
    # A confident, right prediction costs almost nothing; the inverted one almost everything.
    sure = np.where(labels[..., None] > 0, 20.0, -20.0).astype(np.float32)
    assert model.per_image_soft_iou(labels, sure).numpy().max() < 1e-3
    assert model.per_image_soft_iou(labels, -sure).numpy().min() > 0.85
    void = labels.copy()
    void[:, :2] = VOID
    t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(t)
        loss = tf.reduce_sum(model.per_image_soft_iou(void, t))
    grad = tape.gradient(loss, t).numpy()
    assert np.all(grad[:, :2] == 0) and np.any(grad[:, 2:] != 0)
    np.testing.assert_allclose(
        model.per_image_soft_iou(void, logits).numpy(),
        model.per_image_soft_iou(labels[:, 2:], logits[:, 2:]).numpy(),
        rtol=1e-5,
    )
