"""The OSVOS parent network on a 4-channel input (RGB + box), its input transform and its loss.

Input: ``(S, S, 4)`` float32, made by :func:`preprocess` from an RGB crop and a box channel
(``S`` divisible by 16).  The trunk is VGG16 conv1-conv5 without pool5, expecting VGG's Caffe
preprocessing (BGR, ImageNet mean subtracted) on channels 0-2; channel 3 is the box (0/1),
scaled by :data:`BOX_SCALE` to the range of the colour channels.

Outputs (logits, float32): ``fused`` and the deep-supervision heads ``side2`` ... ``side5``,
each ``(S, S, 1)``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from wss.core.masks import VOID

# VGG16 layer names (as in keras.applications.VGG16) per block; their weights move between models by name.
BLOCKS = (
    ("block1_conv1", "block1_conv2"),
    ("block2_conv1", "block2_conv2"),
    ("block3_conv1", "block3_conv2", "block3_conv3"),
    ("block4_conv1", "block4_conv2", "block4_conv3"),
    ("block5_conv1", "block5_conv2", "block5_conv3"),
)
CONV_LAYERS = tuple(name for block in BLOCKS for name in block)
SIDES = ("side2", "side3", "side4", "side5")  # from conv2_2, conv3_3, conv4_3, conv5_3
VGG_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
BOX_SCALE = 127.5  # box channel 0/1 -> 0/127.5, the spread of the mean-subtracted colour channels


def preprocess(rgb: tf.Tensor | np.ndarray, box: tf.Tensor | np.ndarray) -> tf.Tensor:
    """``(..., S, S, 3)`` uint8/float RGB and ``(..., S, S)`` 0/1 box -> the network input ``(..., S, S, 4)``."""
    rgb = tf.cast(rgb, tf.float32)
    bgr = rgb[..., ::-1] - VGG_MEAN_BGR
    return tf.concat([bgr, BOX_SCALE * tf.cast(box, tf.float32)[..., None]], axis=-1)


def vgg16_trunk(channels: int = 4, name: str = "vgg16_trunk") -> keras.Model:
    """VGG16 conv1-conv5 (no pool5) returning conv2_2, conv3_3, conv4_3 and conv5_3."""
    x = inp = keras.Input((None, None, channels), name="input")
    taps = []
    for b, block in enumerate(BLOCKS):
        if b:
            x = layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
        for layer in block:
            x = layers.Conv2D(int(64 * 2 ** min(b, 3)), 3, padding="same", activation="relu", name=layer)(x)
        if b:
            taps.append(x)
    return keras.Model(inp, taps, name=name)


def bilinear_kernel(size: int, channels: int) -> np.ndarray:
    """Transposed-convolution kernel ``(size, size, channels, channels)`` that upsamples each channel
    bilinearly on its own (FCN/OSVOS initialisation; stride ``size // 2``)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    filt = (1 - abs(og[0] - centre) / factor) * (1 - abs(og[1] - centre) / factor)
    kernel = np.zeros((size, size, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = filt
    return kernel


def osvos(trunk: keras.Model, side_channels: int) -> keras.Model:
    """The OSVOS parent network around ``trunk`` (a 4-channel :func:`vgg16_trunk`); OSVOS uses 16
    ``side_channels`` (``train.side_channels``).

    Each tap gets a 3x3 conv to ``side_channels``, a fixed bilinear upsampling to the input size
    (kernel/stride 4/2, 8/4, 16/8, 32/16; ``same`` padding does the centre crop), and a 1x1
    deep-supervision head; the concatenated taps go through a 1x1 conv to the fused logits.
    """
    inp = keras.Input((None, None, trunk.input_shape[-1]), name="image_box")
    taps = trunk(inp)
    ups, outputs = [], {}
    for side, tap, stride in zip(SIDES, taps, (2, 4, 8, 16)):
        f = layers.Conv2D(side_channels, 3, padding="same", name=f"{side}_prep")(tap)
        up = layers.Conv2DTranspose(
            side_channels,
            2 * stride,
            strides=stride,
            padding="same",
            use_bias=False,
            trainable=False,
            name=f"{side}_up",
        )
        f = up(f)
        up.set_weights([bilinear_kernel(2 * stride, side_channels)])
        ups.append(f)
        # Heads start at zero, as in HED: the trunk's activations are large (hundreds), so random heads
        # would start with huge logits and spend the first hundreds of steps undoing them.
        outputs[side] = layers.Conv2D(1, 1, kernel_initializer="zeros", name=side, dtype="float32")(f)
    fused = layers.Concatenate(name="concat")(ups)
    outputs["fused"] = layers.Conv2D(1, 1, kernel_initializer="zeros", name="fused", dtype="float32")(fused)
    return keras.Model(inp, outputs, name="osvos")


def _labelled(labels: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[int], tf.Tensor]:
    """The losses' one reading of a label map: ``(labels, logits, axes, valid)`` in float32, the
    labels shaped like the logits with ``VOID`` pixels zeroed, ``valid`` 1 on every labelled pixel,
    ``axes`` the per-image reduction axes."""
    labels = tf.cast(tf.reshape(labels, tf.shape(logits)), tf.float32)
    logits = tf.cast(logits, tf.float32)
    axes = list(range(1, len(logits.shape)))
    valid = tf.cast(labels != VOID, tf.float32)
    return labels * valid, logits, axes, valid


def per_image_bce(labels: tf.Tensor, logits: tf.Tensor, reduction: str = "mean", balance: bool = True) -> tf.Tensor:
    """OSVOS class-balanced sigmoid cross-entropy, one value per image of the batch.

    Per image ``L = |Y-|/|Y| * sum_{Y+} -log s(x) + |Y+|/|Y| * sum_{Y-} -log(1 - s(x))``, where
    ``Y`` holds the image's labelled pixels: ``VOID`` pixels (see ``wss/__init__``) take no part.
    With ``reduction="sum"`` this is the published loss (it grows with the image, hence OSVOS's
    lr of 1e-8); ``"mean"`` divides by ``|Y|`` so that the learning rate does not depend on crop
    size.  ``balance=False`` weighs both classes 1/2: plain cross-entropy, whose probabilities are
    calibrated (the balanced loss pushes them up wherever the object is the smaller class).
    """
    labels, logits, axes, valid = _labelled(labels, logits)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits) * valid
    n = tf.maximum(tf.reduce_sum(valid, axis=axes), 1.0)
    pos = tf.reduce_sum(labels, axis=axes) if balance else n / 2
    per_image = (n - pos) / n * tf.reduce_sum(labels * bce, axis=axes) + pos / n * tf.reduce_sum(
        (1 - labels) * bce, axis=axes
    )
    if reduction == "mean":
        per_image = per_image / n
    elif reduction != "sum":
        raise ValueError(f"loss reduction must be 'mean' or 'sum', not {reduction!r}")
    return per_image


def per_image_soft_iou(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``1 - soft IoU`` of the sigmoid probabilities ``p`` with the labels ``y``, one value per image.

    ``soft IoU = sum(p y) / sum(p + y - p y)`` over the image's labelled pixels (``VOID`` pixels take
    no part), the Jaccard index with probabilities in place of the thresholded mask (Rahman & Wang,
    2016).  Unlike the per-pixel cross-entropy it scores each instance as ``evaluate`` does: a
    missed thin part of an object costs the same whatever the sure pixels around it.  An image with
    no foreground and no predicted foreground scores 0 (the +1 in both terms).
    """
    y, logits, axes, valid = _labelled(labels, logits)
    p = tf.sigmoid(logits) * valid
    inter = tf.reduce_sum(p * y, axis=axes)
    union = tf.reduce_sum(p + y - p * y, axis=axes)
    return 1.0 - (inter + 1.0) / (union + 1.0)


def per_image_projection(box: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """BoxInst's projection loss (Tian et al., CVPR 2021), one value per image: the dice loss
    ``1 - 2 sum(a b) / (sum(a^2) + sum(b^2))`` between the maximum of the mask's probabilities along
    each axis and the box's, summed over the two axes.  A mask that fills its box's width and
    height and leaves the outside empty scores 0, whatever its shape inside.

    ``box``: ``(B, S, S)`` 0/1; ``logits``: ``(B, S, S, 1)``."""
    p = tf.sigmoid(tf.cast(logits[..., 0], tf.float32))
    box = tf.cast(box, tf.float32)

    def dice(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return 1.0 - 2.0 * tf.reduce_sum(a * b, -1) / tf.maximum(tf.reduce_sum(a * a + b * b, -1), 1e-5)

    return dice(tf.reduce_max(p, 1), tf.reduce_max(box, 1)) + dice(tf.reduce_max(p, 2), tf.reduce_max(box, 2))


def rgb_to_lab(rgb: tf.Tensor) -> tf.Tensor:
    """CIE L*a*b* (D65) of sRGB values in [0, 255], as OpenCV's ``COLOR_RGB2Lab`` on float images.
    No TensorFlow op does it, and the loss needs it inside the graph."""
    c = tf.cast(rgb, tf.float32) / 255.0
    c = tf.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = tf.constant([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = tf.einsum("...c,dc->...d", c, m) / tf.constant([0.950456, 1.0, 1.088754])
    f = tf.where(xyz > 0.008856, tf.math.pow(tf.maximum(xyz, 1e-12), 1 / 3), 7.787 * xyz + 16 / 116)
    y = xyz[..., 1]
    big_l = tf.where(y > 0.008856, 116 * f[..., 1] - 16, 903.3 * y)
    return tf.stack([big_l, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


# BoxInst's pairs: each pixel with its 8 neighbours at this distance (a dilated 3x3 neighbourhood).
PAIR_DILATION = 2
PAIR_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shifted(t: tf.Tensor, dy: int, dx: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``t`` (``B, S, S, ...``) at ``(y + dy, x + dx)`` for every pixel ``(y, x)``, and where that
    neighbour lies inside the image (``B, S, S`` 0/1); outside, zeros."""
    pad = max(abs(dy), abs(dx))
    ones = tf.ones_like(t[..., :1] if t.shape.rank == 4 else t[..., None])[..., 0]
    paddings = [[0, 0], [pad, pad], [pad, pad]] + [[0, 0]] * (t.shape.rank - 3)
    size = tf.shape(t)[1:3]

    def cut(a):
        return a[:, pad + dy : pad + dy + size[0], pad + dx : pad + dx + size[1]]

    return cut(tf.pad(t, paddings)), cut(tf.pad(ones, paddings[:3]))


def colour_affinity(rgb: tf.Tensor, theta: float = 2.0) -> tf.Tensor:
    """BoxInst's colour similarity of each pixel with its :data:`PAIR_OFFSETS` neighbours at
    :data:`PAIR_DILATION`: ``exp(-||lab_i - lab_j|| / theta)`` in CIE L*a*b*, ``(B, S, S, 8)``; a
    neighbour outside the image has 0."""
    lab = rgb_to_lab(rgb)
    out = []
    for dy, dx in PAIR_OFFSETS:
        other, inside = _shifted(lab, dy * PAIR_DILATION, dx * PAIR_DILATION)
        out.append(tf.exp(-tf.norm(lab - other, axis=-1) / theta) * inside)
    return tf.stop_gradient(tf.stack(out, -1))


def per_image_pairwise(box: tf.Tensor, logits: tf.Tensor, affinity: tf.Tensor, threshold: float) -> tf.Tensor:
    """BoxInst's pairwise loss, one value per image: ``-log P(y_i = y_j)`` with
    ``P = p_i p_j + (1 - p_i)(1 - p_j)``, averaged over the pairs whose colour ``affinity``
    (:func:`colour_affinity`) is at least ``threshold`` and whose first pixel lies in the ``box``:
    neighbours of one colour are pushed to one label, so the mask's edge follows the image's."""
    x = tf.cast(logits[..., 0], tf.float32)
    box = tf.cast(box, tf.float32)
    fg, bg = tf.math.log_sigmoid(x), tf.math.log_sigmoid(-x)
    terms, weights = [], []
    for k, (dy, dx) in enumerate(PAIR_OFFSETS):
        (fg_j, inside), (bg_j, _) = (_shifted(v, dy * PAIR_DILATION, dx * PAIR_DILATION) for v in (fg, bg))
        same = tf.reduce_logsumexp(tf.stack([fg + fg_j, bg + bg_j]), axis=0)
        w = tf.cast(affinity[..., k] >= threshold, tf.float32) * box * inside
        terms.append(-same * w)
        weights.append(w)
    total = tf.reduce_sum(tf.add_n(terms), axis=[1, 2])
    return total / tf.maximum(tf.reduce_sum(tf.add_n(weights), axis=[1, 2]), 1.0)


def sidecar(model_path: str | Path) -> Path:
    """``models/model.keras`` -> ``models/model.json``: the crop transform the model was trained with
    (``crop_size``, ``context_margin``) and its label source, written next to it by training."""
    return Path(model_path).with_suffix(".json")


def load(path: str) -> keras.Model:
    """Load a model written by the train stage (``.keras``)."""
    return keras.saving.load_model(path, compile=False)


def predict_proba(
    net: keras.Model, rgb: np.ndarray, box: np.ndarray, batch_size: int = 16, flip: bool = False
) -> np.ndarray:
    """Foreground probabilities ``(n, S, S)`` for RGB crops ``(n, S, S, 3)`` and box channels ``(n, S, S)``.

    ``flip`` averages with the prediction on the mirrored crop (test-time augmentation; the
    network is trained with flips, so both views are in distribution).
    """

    def run(r: np.ndarray, b: np.ndarray) -> np.ndarray:
        return tf.sigmoid(net(preprocess(r, b), training=False)["fused"])[..., 0].numpy()

    out = []
    for i in range(0, len(rgb), batch_size):
        r, b = rgb[i : i + batch_size], box[i : i + batch_size]
        p = run(r, b)
        if flip:
            p = (p + run(r[:, :, ::-1], b[:, :, ::-1])[:, :, ::-1]) / 2
        out.append(p)
    return np.concatenate(out) if out else np.zeros((0,) + rgb.shape[1:3], np.float32)
