"""The ``tf.data`` input pipeline over HDF5 shards, with the training augmentations.

Each element is ``(x, y)``: ``x`` the network input of :func:`stages.model.preprocess`
(``S x S x 4``) and ``y`` the training label (``S x S``, float 0/1, or ``VOID`` where the loss
ignores the pixel).  Augmentations, all set in params: horizontal flip, scale jitter (zoom about
the crop centre), and box jitter (each side of the box channel moved by up to ``box_jitter``
times the box size, as a person's loose box).

Label sources (``train.labels``), after "Simple Does It":

============  ===============================================================================
grabcut       the GrabCut label
grabcut_i     GrabCut^i: votes of jittered GrabCuts (``labels.consensus_runs``); a pixel is
              foreground when at least ``consensus_fg`` of the runs say so, background under
              ``consensus_bg``, ``VOID`` in between
box           the filled box
box_i         Box^i: foreground on the central ``BOX_I_CORE`` of the box's area, ``VOID`` on the
              rest of the box, background outside
gt            the ground truth (full supervision)
============  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from stages import VOID, shards
from stages.model import preprocess

BOX_I_CORE = 0.2  # share of the box's area that Box^i calls foreground (the paper's value)


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    scale_jitter: float = 0.15  # zoom factor in [1 - s, 1 + s]
    box_jitter: float = 0.1


def consensus_label(votes: np.ndarray, fg: float = 0.7, bg: float = 0.2) -> np.ndarray:
    """GrabCut^i label from ``votes`` (uint8, 255 = every run said foreground): 1 where the share of
    runs is ``>= fg``, 0 where it is ``< bg``, ``VOID`` in between."""
    share = votes.astype(np.float32) / 255
    return np.where(share >= fg, 1, np.where(share < bg, 0, VOID)).astype(np.uint8)


def box_core_label(box_mask: np.ndarray, box: np.ndarray, core: float = BOX_I_CORE) -> np.ndarray:
    """Box^i label: 1 on the centred box with ``core`` times the area of ``box`` (``x1, y1, x2, y2``,
    crop pixels), ``VOID`` on the rest of ``box_mask``, 0 outside it."""
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) * np.sqrt(core) / 2
    r = np.arange(box_mask.shape[0]) + 0.5
    inx = (r >= centre[0] - half[0]) & (r < centre[0] + half[0])
    iny = (r >= centre[1] - half[1]) & (r < centre[1] + half[1])
    label = np.where(box_mask > 0, VOID, 0).astype(np.uint8)
    label[iny[:, None] & inx[None, :]] = 1
    return label


def _instances(path: bytes, source: bytes, skip_fallbacks: bool, fg: float, bg: float):
    """Yield ``(rgb, box_in_crop_xyxy, label)`` for each instance of one shard file.

    With ``skip_fallbacks``, instances whose GrabCut label is a fallback shape (GrabCut failed,
    see :mod:`stages.grabcut`) are left out: the decision uses GrabCut's output only, never the
    ground truth, so training stays weakly supervised.
    """
    source = source.decode()
    field = shards.LABEL_SOURCES[source]
    data = shards.read(Path(path.decode()), ("image", "window", "box_xyxy", "fallback", field))
    side = data["image"].shape[1]
    windows = data["window"].astype(np.float32)
    scale = side / (windows[:, 2] - windows[:, 0])
    box = ((data["box_xyxy"] - np.tile(windows[:, :2], 2)) * scale[:, None]).astype(np.float32)
    for i in range(len(windows)):
        if skip_fallbacks and data["fallback"][i]:
            continue
        label = data[field][i]
        if source == "grabcut_i":
            label = consensus_label(label, fg, bg)
        elif source == "box_i":
            label = box_core_label(label, box[i])
        yield data["image"][i], box[i], label


def _box_mask(box: tf.Tensor, side: int) -> tf.Tensor:
    """Filled box ``(x1, y1, x2, y2)`` (crop pixels, x2/y2 exclusive) as a ``side x side`` float mask."""
    r = tf.range(side, dtype=tf.float32) + 0.5
    inx = tf.cast((r >= box[0]) & (r < box[2]), tf.float32)
    iny = tf.cast((r >= box[1]) & (r < box[3]), tf.float32)
    return iny[:, None] * inx[None, :]


def _augment(rgb, box, label, side: int, aug: Augment, training: bool, seed=None):
    """``seed``: a stateless-RNG seed ``(2,)`` for this instance, so that the augmentation does not
    depend on which tf.data worker runs it (and training is reproducible)."""
    rgb = tf.cast(rgb, tf.float32)
    void = tf.cast(label == VOID, tf.float32)
    label = tf.cast(label == 1, tf.float32)
    if training:
        seeds = tf.random.experimental.stateless_split(seed, 3)
    if training and aug.box_jitter > 0:
        wh = tf.stack([box[2] - box[0], box[3] - box[1]])
        box = box + tf.random.stateless_uniform([4], seeds[0], -aug.box_jitter, aug.box_jitter) * tf.tile(wh, [2])
        box = tf.stack([tf.minimum(box[0], box[2] - 1), tf.minimum(box[1], box[3] - 1), box[2], box[3]])
    stack = tf.concat([rgb, _box_mask(box, side)[..., None], label[..., None], void[..., None]], axis=-1)
    if training and aug.flip:
        stack = tf.cond(tf.random.stateless_uniform([], seeds[1]) < 0.5, lambda: stack[:, ::-1], lambda: stack)
    if training and aug.scale_jitter > 0:
        z = tf.random.stateless_uniform([], seeds[2], 1 - aug.scale_jitter, 1 + aug.scale_jitter)
        half = 0.5 / z  # a zoom by z shows the central 1/z of the crop
        crop_box = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half])[None]
        stack = tf.image.crop_and_resize(stack[None], crop_box, [0], [side, side], extrapolation_value=0.0)[0]
    box_ch = tf.cast(stack[..., 3] >= 0.5, tf.float32)
    y = tf.where(stack[..., 5] >= 0.5, float(VOID), tf.cast(stack[..., 4] >= 0.5, tf.float32))
    return preprocess(stack[..., :3], box_ch), y


def dataset(files: list[Path], labels: str, batch_size: int, side: int, aug: Augment, training: bool,
            seed: int = 0, shuffle_buffer: int = 512, skip_fallbacks: bool = False,
            consensus: tuple[float, float] = (0.7, 0.2)) -> tf.data.Dataset:
    """Batches of ``(x, y)`` from the shard ``files``; ``labels`` is a key of
    :data:`stages.shards.LABEL_SOURCES` (table above).  ``skip_fallbacks`` applies to the GrabCut
    sources only (see :func:`_instances`); ``consensus`` is GrabCut^i's ``(fg, bg)`` vote shares.

    Training reads shards in parallel interleave (in a seeded random order), shuffles instances,
    augments and repeats forever; evaluation reads in order, once, unaugmented.  Both are
    deterministic: the same ``seed`` gives the same batches.
    """
    if labels not in shards.LABEL_SOURCES:
        raise ValueError(f"unknown label source {labels!r}; one of {sorted(shards.LABEL_SOURCES)}")
    skip = skip_fallbacks and labels.startswith("grabcut")
    sig = (tf.TensorSpec((side, side, 3), tf.uint8), tf.TensorSpec((4,), tf.float32),
           tf.TensorSpec((side, side), tf.uint8))  # fmt: skip
    names = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if training:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = names.interleave(
        lambda f: tf.data.Dataset.from_generator(_instances, output_signature=sig, args=(f, labels, skip, *consensus)),
        cycle_length=min(4, len(files)) if training else 1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    if training:
        # Each instance's augmentation seed is (seed, its position in the stream).
        ds = ds.shuffle(shuffle_buffer, seed=seed).enumerate()
        ds = ds.map(lambda i, item: _augment(*item, side, aug, True, tf.stack([tf.cast(seed, tf.int64), i])),
                    num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip
    else:
        ds = ds.map(lambda r, b, y: _augment(r, b, y, side, aug, False), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
