"""The trained network as a segmenter: one object that turns an image and its boxes into masks.

Modelled on segment-anything's ``SamPredictor``.  :meth:`Predictor.load` reads the network and
the crop transform it was trained with (its sidecar, :func:`wss.net.model.sidecar`), and the
``evaluate`` settings say the rest: the threshold, flip averaging, the batch size and the
refinement cut (:mod:`wss.evaluation.refine`).  Then

* ``predictor(image, boxes)`` segments a new image (``predict``): each box is cropped with the
  training transform, predicted, pasted back at full resolution with nothing kept outside the box
  (:func:`~wss.evaluation.refine.inside_box`) and thresholded or cut;
* :meth:`Predictor.instances` does the same for a dataset's instances from the crops the labels
  stage stored in the shards (``evaluate``, ``export``), where the teacher's label stands beside
  each prediction and :meth:`Predictor.fused` averages the two.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wss import config
from wss.config import EvaluateConfig, RefineConfig
from wss.core.boxes import Box
from wss.core.image import read as read_image
from wss.core.masks import crop_instance, paste
from wss.data.readers.boxes import InputError, Job, inside_image
from wss.errors import DataError
from wss.evaluation.refine import Refiner, inside_box, refine, score
from wss.evaluation.review import certainty
from wss.labels import boundaries, shards


@dataclass
class Prediction:
    """The masks of one image's boxes, in the order of the boxes."""

    probs: list[np.ndarray]  # H x W float foreground probability, 0 outside the box
    masks: list[np.ndarray]  # H x W uint8 0/1: ``probs`` thresholded, or cut (``refine.apply``)


@dataclass
class Instance:
    """One instance of the dataset at full resolution: the model's mask and the teacher's two versions."""

    key: str
    file: str | None  # the image, relative to the dataset root (None when no instance table was given)
    category: int
    box: Box
    prob: np.ndarray  # the model's foreground probability, pasted back through the crop window
    unrefined: np.ndarray  # ``prob`` thresholded at ``evaluate.threshold``
    mask: np.ndarray  # the model's mask as ``refine.apply`` makes it: ``unrefined`` or the cut of ``prob``
    score: float  # the model's mean foreground probability inside ``mask`` (0 for an empty mask)
    teacher: np.ndarray  # the teacher's label exactly as the labels stage made it
    teacher_via_crops: np.ndarray  # the teacher's crop label, pasted back like ``prob``
    certainty: float  # mean |2p - 1| of the model's probabilities inside the box (wss.evaluation.review)


class Predictor:
    """A trained network and everything prediction needs: crop size, context margin, threshold,
    flip, batch size (``cfg``, the ``evaluate`` settings) and the refinement cut (``cut``, the ``refine`` ones).

    ``data_root`` and ``boundaries_dir`` (the dataset and its HED maps) are needed only to cut the
    masks of a dataset's instances (:meth:`instances` with ``refine.apply``, :meth:`fused`)."""

    def __init__(
        self,
        network,
        crop_size: int,
        context_margin: float,
        cfg: EvaluateConfig,
        cut: RefineConfig,
        meta: dict | None = None,
        data_root: Path | None = None,
        boundaries_dir: Path | None = None,
    ) -> None:
        self.network = network
        self.crop_size, self.context_margin = crop_size, context_margin
        self.cfg, self.cut = cfg, cut
        self.meta = meta or {}
        self.refiner = Refiner(cut, data_root, boundaries_dir) if data_root is not None else None
        self._hed = None

    @classmethod
    def load(
        cls,
        path: Path,
        cfg: EvaluateConfig,
        cut: RefineConfig,
        data_root: Path | None = None,
        boundaries_dir: Path | None = None,
    ) -> Predictor:
        """The network at ``path`` (written by the train stage) with its sidecar; a
        :class:`~wss.errors.DataError` naming the file when either is missing or not a wss model."""
        from wss.net.model import load, sidecar

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such model file (train one with `dvc repro train`)")
        side = sidecar(path)
        if not side.is_file():
            raise DataError(
                f"{side}: missing; it records the crop transform and is written next to the model by the train stage"
            )
        try:
            network = load(str(path))
            meta = json.loads(side.read_text())
            size, margin = int(meta["crop_size"]), float(meta["context_margin"])
        except Exception as exc:  # keras raises many types for a file that is not a model
            raise DataError(f"{path}: not a wss model ({type(exc).__name__}: {str(exc)[:200]})") from exc
        if not isinstance(network.output, dict) or "fused" not in network.output:
            raise DataError(f"{path}: not a wss model (no 'fused' output)")
        return cls(network, size, margin, cfg, cut, meta, data_root, boundaries_dir)

    def crop_probabilities(self, images: np.ndarray, boxes: np.ndarray, flip: bool | None = None) -> np.ndarray:
        """``(n, S, S)`` foreground probabilities of RGB crops ``(n, S, S, 3)`` and their box channels
        ``(n, S, S)``, averaged with the mirrored crops' when ``flip`` (default ``evaluate.flip``)."""
        from wss.net.model import predict_proba

        flip = self.cfg.flip if flip is None else flip
        return predict_proba(self.network, images, boxes, self.cfg.batch_size, flip)

    def __call__(self, image: np.ndarray, boxes: list[Box]) -> Prediction:
        """The masks of ``boxes`` (inside the image, :func:`wss.data.readers.boxes.inside_image`) on the
        8-bit BGR ``image`` (:func:`wss.core.image.read`).  A ``hed`` cut runs HED on the image."""
        if not boxes:
            return Prediction([], [])
        h, w = image.shape[:2]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        crops = [crop_instance(rgb, b, self.crop_size, self.context_margin) for b in boxes]
        probs = self.crop_probabilities(np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]))
        full = [inside_box(paste(p, c[2], h, w), b) for p, c, b in zip(probs, crops, boxes)]
        if not self.cut.apply:
            return Prediction(full, [(p >= self.cfg.threshold).astype(np.uint8) for p in full])
        edges = boundaries.detect(self._hed_model(), [image])[0] if self.cut.pairwise == "hed" else None
        c = self.cut
        return Prediction(full, [refine(image, p, b, edges, c.gamma, c.sigma, c.max_side) for p, b in zip(full, boxes)])

    def instances(self, shard_dir: Path, split: str, files: Mapping[str, str] | None = None) -> Iterator[Instance]:
        """Every instance of ``split`` in the shards, in shard order, predicted from its stored crop.

        ``files`` maps an instance key to its image (relative to ``data_root``); with
        ``refine.apply`` the masks are cut on those images, and need it."""
        if self.cut.apply and (files is None or self.refiner is None):
            raise ValueError("refine.apply cuts the masks on the dataset's images: give data_root and files")
        for path in shards.files(shard_dir, split):
            data = shards.read(
                path, ("image", "box", "teacher", "teacher_full", "window", "box_xyxy", "image_size", "key", "category")
            )
            probs = self.crop_probabilities(data["image"], data["box"])
            for i, key in enumerate(data["key"]):
                key = str(key)
                file = files[key] if files is not None else None
                h, w = (int(v) for v in data["image_size"][i])
                window = Box(*(int(v) for v in data["window"][i]))
                box = Box(*(int(v) for v in data["box_xyxy"][i]))
                prob = inside_box(paste(probs[i], window, h, w), box)
                unrefined = (prob >= self.cfg.threshold).astype(np.uint8)
                mask = self.refiner.cut(file, prob, box) if self.cut.apply else unrefined
                yield Instance(
                    key=key,
                    file=file,
                    category=int(data["category"][i]),
                    box=box,
                    prob=prob,
                    unrefined=unrefined,
                    mask=mask,
                    score=score(prob, mask),
                    certainty=certainty(prob, box),
                    teacher=shards.full_label(data["teacher_full"][i], data["box_xyxy"][i], data["image_size"][i]),
                    teacher_via_crops=(paste(data["teacher"][i].astype(np.float32), window, h, w) >= 0.5).astype(
                        np.uint8
                    ),
                )

    def fused(self, inst: Instance, weight: float) -> np.ndarray:
        """The fused mask of a dataset instance: the cut of the model's probability averaged with the
        teacher's label, the model counting ``weight`` (:mod:`wss.core.trust`); at 0, the teacher's label."""
        if self.refiner is None:
            raise ValueError("fused masks are cut on the dataset's images: give data_root")
        return self.refiner.fused(inst.file, inst.prob, inst.teacher, inst.box, weight)

    def jobs(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[np.ndarray]]]:
        """``(job, masks)`` for every job of a batch (:func:`wss.data.readers.boxes.jobs_of`), one image in
        memory at a time; a box outside its image is an :class:`~wss.data.readers.boxes.InputError`."""
        for job in jobs:
            image = read_image(job.image)
            h, w = image.shape[:2]
            yield job, self(image, [inside_image(b, k, h, w) for k, b in enumerate(job.boxes)]).masks

    def _hed_model(self):
        if self._hed is None:
            self._hed = boundaries.load_model()
        return self._hed


def settings(
    params: str | Path, threshold: float | None = None, flip: bool | None = None, apply: bool | None = None
) -> tuple[EvaluateConfig, RefineConfig]:
    """The ``evaluate`` and ``refine`` sections of ``params``, with ``threshold``, ``flip`` and the cut's
    ``apply`` in place of their own where they are not None (``predict``'s command line)."""
    if not Path(params).is_file():
        raise InputError(
            f"{params}: no such params file; give --params (its evaluate and refine sections hold the threshold, "
            "flip and refinement cut)"
        )
    p = config.load(params)
    cfg, cut = config.read(EvaluateConfig, p), config.read(RefineConfig, p)
    if threshold is not None:
        if not 0 < threshold < 1:
            raise InputError(f"--threshold {threshold}: must lie in (0, 1)")
        cfg = dataclasses.replace(cfg, threshold=threshold)
    if flip is not None:
        cfg = dataclasses.replace(cfg, flip=flip)
    if apply is not None:
        cut = dataclasses.replace(cut, apply=apply)
    return cfg, cut
