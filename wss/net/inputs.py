"""The ``tf.data`` input pipeline over HDF5 shards, with the training augmentations.

Each element is ``(x, y)``: ``x`` the network input of :func:`wss.net.model.preprocess`
(``S x S x 4``) and ``y`` the training label (``S x S``, float 0/1, or ``VOID`` where the loss
ignores the pixel).  Everything is set by the ``train`` params section (:class:`wss.config.TrainConfig`,
passed as ``cfg``).  Augmentations: horizontal flip, scale jitter (zoom about the crop centre,
resampled to ``train.input_side`` pixels when set), and box jitter (each side of the box channel
moved by up to ``box_jitter`` times the box size, as a person's loose box).

The labels (``train.labels``), after "Simple Does It":

============  ===============================================================================
teacher       the labels stage's mask, made by ``labels.method`` (GrabCut or GrabCut+)
teacher_i     GrabCut^i (GrabCut+^i): votes of jittered GrabCuts (``labels.vote_runs``); a pixel is
              foreground when at least ``votes_fg`` of the runs say so, background under
              ``votes_bg``, ``VOID`` in between
box           the filled box
box_i         Box^i: foreground on the central ``train.box_i_core`` of the box's area (the paper:
              20%), ``VOID`` on the rest of the box, background outside
gt            the ground truth (full supervision)
self          self-training (``train.rounds`` > 1, :mod:`wss.net.selftrain`): the previous round's
              predictions clamped to the box, where they agree with that round's label; ``VOID``
              where they disagree
============  ===============================================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from wss.config import TrainConfig
from wss.core.masks import VOID
from wss.labels import grabcut, shards
from wss.net.model import preprocess

REVIEWED = ("reviewed", "reviewed_label")  # the fields a copy made from a review adds (wss.net.reviewed)


def votes_label(votes: np.ndarray, fg: float, bg: float) -> np.ndarray:
    """GrabCut^i label from ``votes`` (uint8, 255 = every run said foreground): 1 where the share of
    runs is ``>= fg``, 0 where it is ``< bg``, ``VOID`` in between."""
    share = votes.astype(np.float32) / 255
    return np.where(share >= fg, 1, np.where(share < bg, 0, VOID)).astype(np.uint8)


def box_core_label(box_mask: np.ndarray, box: np.ndarray, core: float) -> np.ndarray:
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


def training_label(labels: str, stored: np.ndarray, box: np.ndarray, fg: float, bg: float, core: float) -> np.ndarray:
    """The label (0, 1 or ``VOID`` per pixel) of the ``train.labels`` kind ``labels`` from its ``stored`` shard field
    (:data:`wss.labels.shards.LABEL_FIELDS`), for an instance whose box in crop pixels is ``box``."""
    if labels == "teacher_i":
        return votes_label(stored, fg, bg)
    if labels == "box_i":
        return box_core_label(stored, box, core)
    return stored


def box_in_crop(window: np.ndarray, box_xyxy: np.ndarray, side: int) -> np.ndarray:
    """Boxes ``(n, 4)`` in the pixels of their ``side``-pixel crops cut from the ``window``s."""
    windows = window.astype(np.float32)
    scale = side / (windows[:, 2] - windows[:, 0])
    return ((box_xyxy - np.tile(windows[:, :2], 2)) * scale[:, None]).astype(np.float32)


def _instances(path: bytes, val: bool, labels: bytes, skip_fallbacks: bool, fg: float, bg: float, core: float):
    """Yield ``(rgb, box_in_crop_xyxy, label)`` for each instance of one shard file (of the val
    split when ``val``) that :func:`trained_on` takes.

    With ``skip_fallbacks``, instances whose GrabCut label is a fallback shape
    (:data:`wss.labels.grabcut.FALLBACKS`: GrabCut failed) are left out; a ``whole_image`` GrabCut is
    GrabCut's own output and stays.  The decision uses GrabCut's output only, never the ground
    truth, so training stays weakly supervised.  The ``gt`` labels leave out instances without a
    ground-truth mask (a boxes-only dataset has none).
    """
    labels = labels.decode()
    field = shards.LABEL_FIELDS[labels]
    data = shards.read(Path(path.decode()), ("image", "window", "box_xyxy", "fallback", "has_gt", field), REVIEWED)
    box = box_in_crop(data["window"], data["box_xyxy"], data["image"].shape[1])
    reviewed = data.get("reviewed", np.zeros(len(box), bool))
    for i in range(len(box)):
        if trained_on(
            labels, skip_fallbacks, str(data["fallback"][i]), bool(data["has_gt"][i]), bool(val), reviewed[i]
        ):
            yield data["image"][i], box[i], instance_label(data, i, labels, field, box[i], fg, bg, core)


def instance_label(
    data: dict[str, np.ndarray], i: int, labels: str, field: str, box: np.ndarray, fg: float, bg: float, core: float
) -> np.ndarray:
    """The label of instance ``i`` of a shard's ``data``: the mask a reviewer accepted
    (:mod:`wss.net.reviewed`), else :func:`training_label` of its ``field``."""
    if "reviewed" in data and data["reviewed"][i]:
        return data["reviewed_label"][i]
    return training_label(labels, data[field][i], box, fg, bg, core)


def trained_on(
    labels: str, skip_fallbacks: bool, fallback: str, has_gt: bool, val: bool = False, reviewed: bool = False
) -> bool:
    """Whether an instance takes part in training on ``labels`` (see :func:`_instances`).  A val
    instance with a ground-truth mask never does: the scores against that mask must stay honest
    (which val shards are read at all is :func:`training_files`' choice).  Any other instance whose
    mask a reviewer accepted (``reviewed``) does."""
    if val and has_gt:
        return False
    if reviewed:
        return True
    if skip_fallbacks and fallback in grabcut.FALLBACKS:
        return False
    return has_gt or labels != "gt"


def training_files(shard_dir: Path, holdout: str) -> tuple[list[Path], list[Path]]:
    """The shard files training reads under the ``train.holdout`` policy, and which of them are val
    shards: ``split`` reads the train split alone; ``auto`` adds every val shard that holds an
    instance without a ground-truth mask, since nothing is scored against such an instance and its
    box can teach (:func:`trained_on` still holds back the val instances that have a mask)."""
    files = shards.files(shard_dir, "train")
    val = []
    if holdout == "auto":
        val = [f for f in shards.files(shard_dir, "val") if not shards.read(f, ("has_gt",))["has_gt"].all()]
    return files + val, val


def skips_fallbacks(cfg: TrainConfig, labels: str) -> bool:
    """``train.skip_fallbacks`` applies to the teacher's labels only."""
    return cfg.skip_fallbacks and labels.startswith("teacher")


def count(files: list[Path], cfg: TrainConfig, labels: str | None = None, val: list[Path] = ()) -> dict[str, int]:
    """How many instances of ``files`` (``val`` among them the val split's) training on ``labels``
    uses, per split, and why the others are left out: ``{"instances", "used", "train", "train_used",
    "val", "val_used", "fallbacks", "without_masks", "held_out"}`` (``held_out``: val instances kept
    for scoring because they have a ground-truth mask)."""
    labels = labels or cfg.labels
    skip_fb = skips_fallbacks(cfg, labels)
    val = {str(f) for f in val}
    out = dict.fromkeys(
        ("instances", "used", "train", "train_used", "val", "val_used", "fallbacks", "without_masks", "held_out"), 0
    )
    for path in files:
        in_val = str(path) in val
        split = "val" if in_val else "train"
        data = shards.read(Path(path), ("fallback", "has_gt"), REVIEWED[:1])
        reviewed = data.get("reviewed", np.zeros(len(data["has_gt"]), bool))
        for fallback, has_gt, accepted in zip(data["fallback"], data["has_gt"], reviewed):
            out["instances"] += 1
            out[split] += 1
            if trained_on(labels, skip_fb, str(fallback), bool(has_gt), in_val, bool(accepted)):
                out["used"] += 1
                out[f"{split}_used"] += 1
            elif in_val and has_gt:
                out["held_out"] += 1
            elif skip_fb and str(fallback) in grabcut.FALLBACKS:
                out["fallbacks"] += 1
            else:
                out["without_masks"] += 1
    return out


def _box_mask(box: tf.Tensor, side: int) -> tf.Tensor:
    """Filled box ``(x1, y1, x2, y2)`` (crop pixels, x2/y2 exclusive) as a ``side x side`` float mask."""
    r = tf.range(side, dtype=tf.float32) + 0.5
    inx = tf.cast((r >= box[0]) & (r < box[2]), tf.float32)
    iny = tf.cast((r >= box[1]) & (r < box[3]), tf.float32)
    return iny[:, None] * inx[None, :]


def _augment(rgb, box, label, side: int, cfg: TrainConfig | None, seed=None):
    """The network input and label of one instance, augmented as ``cfg`` says (``None``: as is).

    ``seed``: a stateless-RNG seed ``(2,)`` for this instance, so that the augmentation does not
    depend on which tf.data worker runs it (and training is reproducible)."""
    training = cfg is not None
    rgb = tf.cast(rgb, tf.float32)
    void = tf.cast(label == VOID, tf.float32)
    label = tf.cast(label == 1, tf.float32)
    if training:
        seeds = tf.random.experimental.stateless_split(seed, 3)
    if training and cfg.box_jitter > 0:
        wh = tf.stack([box[2] - box[0], box[3] - box[1]])
        box = box + tf.random.stateless_uniform([4], seeds[0], -cfg.box_jitter, cfg.box_jitter) * tf.tile(wh, [2])
        box = tf.stack([tf.minimum(box[0], box[2] - 1), tf.minimum(box[1], box[3] - 1), box[2], box[3]])
    stack = tf.concat([rgb, _box_mask(box, side)[..., None], label[..., None], void[..., None]], axis=-1)
    if training and cfg.flip:
        stack = tf.cond(tf.random.stateless_uniform([], seeds[1]) < 0.5, lambda: stack[:, ::-1], lambda: stack)
    out = cfg.input_side or side if training else side
    if training and (cfg.scale_jitter > 0 or out != side):
        z = 1.0
        if cfg.scale_jitter > 0:
            z = tf.random.stateless_uniform([], seeds[2], 1 - cfg.scale_jitter, 1 + cfg.scale_jitter)
        half = 0.5 / z  # a zoom by z shows the central 1/z of the crop
        crop_box = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half])[None]
        stack = tf.image.crop_and_resize(stack[None], crop_box, [0], [out, out], extrapolation_value=0.0)[0]
    box_ch = tf.cast(stack[..., 3] >= 0.5, tf.float32)
    y = tf.where(stack[..., 5] >= 0.5, float(VOID), tf.cast(stack[..., 4] >= 0.5, tf.float32))
    return preprocess(stack[..., :3], box_ch), y


def dataset(
    files: list[Path],
    cfg: TrainConfig,
    side: int,
    training: bool,
    seed: int = 0,
    skip: int = 0,
    labels: str | None = None,
    val: list[Path] = (),
) -> tf.data.Dataset:
    """``(x, y)`` from the shard ``files``, with the labels ``labels`` (default ``cfg.labels``,
    a key of :data:`wss.labels.shards.LABEL_FIELDS`, table above); the ``val`` files among them are
    val shards, of which only the instances without a ground-truth mask are read (:func:`trained_on`).

    Training reads shards in a seeded random order with a parallel, deterministic interleave,
    shuffles instances, augments and repeats forever, and yields one optimizer update's worth of
    data per element: ``x`` is ``(accum_steps, batch_size, S, S, 4)``.  ``skip`` instances are
    dropped from the front of the stream *before* augmentation (whose seed is the instance's
    position in the stream), so a run resumed after ``n`` updates continues exactly where an
    uninterrupted run would be: pass ``skip = n * accum_steps * batch_size``.
    Evaluation (``training=False``) reads in order, once, unaugmented, in batches of ``batch_size``.
    ``skip_fallbacks`` applies to the teacher labels only (see :func:`_instances`).
    """
    labels = labels or cfg.labels
    if labels not in shards.LABEL_FIELDS:
        raise ValueError(f"unknown labels {labels!r}; one of {sorted(shards.LABEL_FIELDS)}")
    skip_fb = skips_fallbacks(cfg, labels)
    sig = (
        tf.TensorSpec((side, side, 3), tf.uint8),
        tf.TensorSpec((4,), tf.float32),
        tf.TensorSpec((side, side), tf.uint8),
    )
    in_val = {str(f) for f in val}
    names = tf.data.Dataset.from_tensor_slices(([str(f) for f in files], [str(f) in in_val for f in files]))
    if training:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    args = (labels, skip_fb, cfg.votes_fg, cfg.votes_bg, cfg.box_i_core)
    ds = names.interleave(
        lambda f, v: tf.data.Dataset.from_generator(_instances, output_signature=sig, args=(f, v, *args)),
        cycle_length=min(4, len(files)) if training else 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not training:
        ds = ds.map(lambda r, b, y: _augment(r, b, y, side, None), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
    # Each instance's augmentation seed is (seed, its position in the stream).
    ds = ds.shuffle(cfg.shuffle_buffer, seed=seed).enumerate().skip(skip)
    ds = ds.map(
        lambda i, item: _augment(*item, side, cfg, tf.stack([tf.cast(seed, tf.int64), i])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(cfg.batch_size, drop_remainder=True).batch(cfg.accum_steps, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
