"""Test-time refinement and the masks to hand back: one graph cut on a probability map.

"Simple Does It" (Khoreva et al. 2017) and DeepLab sharpen the network's output with a dense CRF
at test time.  Here that CRF is the project's own graph cut (:mod:`wss.labels.graphcut`): the
unaries are the negative log probabilities of a foreground map, the pairwise term is GrabCut's
contrast-sensitive colour weights or GrabCut+'s HED boundary weights, and every pixel outside the
box is background (the box is tight by definition, as for the labels).  The cut runs on the box at
full resolution, or shrunk to ``max_side`` pixels on its longer side when that is set.

Every model mask starts from :func:`inside_box`: the network's probability, pasted back from its
crop, with nothing kept outside the box.

The foreground map is the model's probability (``model``), or on images where the labels exist
too, the average of the model's probability and the teacher's label (``fused``): the two disagree
where one of them is wrong, and the cut decides those pixels by the image's edges.  The model
counts as much in that average as it has earned (:mod:`wss.evaluation.trust`): half for a trusted
network, nothing for a weak one, whose fused masks are the teacher's labels.

:class:`Refiner` cuts a dataset's instances, reading each image and its boundary map once; the
:class:`~wss.evaluation.predictor.Predictor` holds it and makes with it the model's masks
(``refine.apply``) and the ``fused`` ones (``export.masks: fused``) for ``evaluate`` and
``export``; on new images without labels (``predict``) it calls :func:`refine` with the same settings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from wss.config import RefineConfig
from wss.core.boxes import Box, clip
from wss.core.image import read as read_image
from wss.errors import StageInputError
from wss.labels import boundaries, graphcut

EPS = 1e-3  # probabilities are clipped to [EPS, 1 - EPS]: no pixel's unary is infinite


def unaries(prob: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The graph cut's terminal costs for a foreground probability map: ``(source, sink)``, with
    ``source = -weight * log(1 - p)`` paid by a pixel that ends in the background and
    ``sink = -weight * log p`` by one that ends in the foreground (nats times ``weight``)."""
    p = np.clip(prob.astype(np.float64), EPS, 1 - EPS)
    return -weight * np.log1p(-p), -weight * np.log(p)


def refine(
    image: np.ndarray, prob: np.ndarray, box: Box, edges: np.ndarray | None, gamma: float, sigma: float, max_side: int
) -> np.ndarray:
    """The minimum cut of ``prob`` (H x W foreground probability) inside ``box`` on the (H, W, 3)
    ``image``: a uint8 H x W mask, 0 outside the box.

    The pairwise term is :func:`~wss.labels.graphcut.boundary_weights` of ``edges`` (H x W in
    [0, 1]) with ``sigma`` when ``edges`` is given, else :func:`~wss.labels.graphcut.colour_weights`;
    both scaled to ``gamma``.  With ``max_side`` > 0 a box whose longer side exceeds it is cut at
    that size and the mask scaled back (linear, at 0.5).
    """
    h, w = prob.shape
    x1, y1, x2, y2 = max(box.x1, 0), max(box.y1, 0), min(box.x2, w), min(box.y2, h)
    out = np.zeros((h, w), np.uint8)
    if x2 - x1 < 2 or y2 - y1 < 2:
        out[y1:y2, x1:x2] = prob[y1:y2, x1:x2] >= 0.5
        return out
    p = prob[y1:y2, x1:x2]
    crop = image[y1:y2, x1:x2]
    edge = None if edges is None else edges[y1:y2, x1:x2]
    bh, bw = p.shape
    scale = min(1.0, max_side / max(bh, bw)) if max_side > 0 else 1.0
    if scale < 1.0:
        size = (max(2, round(bw * scale)), max(2, round(bh * scale)))
        p = cv2.resize(p.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        edge = None if edge is None else cv2.resize(edge.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    weights = (
        graphcut.colour_weights(crop.astype(np.float64), gamma)
        if edge is None
        else graphcut.boundary_weights(edge, sigma, gamma)
    )
    source, sink = unaries(p, 1.0)
    cut = graphcut.min_cut(source, sink, graphcut.grid(weights)).astype(np.float32)
    if scale < 1.0:
        cut = cv2.resize(cut, (bw, bh), interpolation=cv2.INTER_LINEAR)
    out[y1:y2, x1:x2] = cut >= 0.5
    return out


def inside_box(prob: np.ndarray, box: Box) -> np.ndarray:
    """The model's full-resolution probability ``prob`` with every pixel outside ``box`` set to 0.

    The crop window reaches past the box (``labels.context_margin``), and the network may call
    some of that context foreground; but the box encloses its object, as for every label of the
    pipeline (``wss/__init__``), so none of it is.  Every model mask (``evaluate``, ``export``,
    ``predict``) is made from the probability after this step.
    """
    b = clip(box, *prob.shape)
    out = np.zeros_like(prob)
    out[b.y1 : b.y2, b.x1 : b.x2] = prob[b.y1 : b.y2, b.x1 : b.x2]
    return out


def fuse(prob: np.ndarray, teacher: np.ndarray | None, weight: float = 0.5) -> np.ndarray:
    """``weight * prob + (1 - weight) * teacher``: the model's probability averaged with the teacher's
    0/1 label, the model counting ``weight`` (0.5: the plain average; the probability itself where
    there is no label)."""
    if teacher is None:
        return prob
    return weight * prob.astype(np.float32) + (1 - weight) * teacher.astype(np.float32)


def has_maps(boundaries_dir: Path | None) -> bool:
    """Whether the boundaries stage wrote maps into ``boundaries_dir`` (it does for GrabCut+ only)."""
    if boundaries_dir is None or not (Path(boundaries_dir) / boundaries.MANIFEST).is_file():
        return False
    return bool(json.loads((Path(boundaries_dir) / boundaries.MANIFEST).read_text()).get("images"))


class Refiner:
    """The refinement cut (the ``refine`` params) applied to many instances, the image and its
    boundary map read once per image (instances of one image are consecutive in the shards)."""

    def __init__(self, cfg: RefineConfig, data_root: Path, boundaries_dir: Path | None = None) -> None:
        if cfg.pairwise == "hed" and not has_maps(boundaries_dir):
            raise StageInputError(
                f"refine.pairwise is hed, but {boundaries_dir} holds no boundary maps: they "
                "are made for labels.method grabcut_plus; use refine.pairwise colour"
            )
        self.cfg = cfg
        self.data_root, self.boundaries_dir = Path(data_root), boundaries_dir
        self._file: str | None = None
        self._image: np.ndarray | None = None
        self._edges: np.ndarray | None = None
        self.seconds, self.count = 0.0, 0

    def _load(self, file: str) -> None:
        if file != self._file:
            self._image = read_image(self.data_root / file)
            self._edges = (
                boundaries.decode_map(boundaries.read_map(self.boundaries_dir, file))
                if self.cfg.pairwise == "hed"
                else None
            )
            self._file = file

    def cut(self, file: str, prob: np.ndarray, box: Box) -> np.ndarray:
        """:func:`refine` of ``prob`` on image ``file`` (relative to ``data_root``)."""
        self._load(file)
        start = time.perf_counter()
        mask = refine(self._image, prob, box, self._edges, self.cfg.gamma, self.cfg.sigma, self.cfg.max_side)
        self.seconds += time.perf_counter() - start
        self.count += 1
        return mask

    def ms_per_instance(self) -> float | None:
        return round(1000 * self.seconds / self.count, 1) if self.count else None

    def fused(self, file: str, prob: np.ndarray, teacher: np.ndarray, box: Box, weight: float = 0.5) -> np.ndarray:
        """The ``fused`` mask: the cut of the model's probability averaged with the teacher's label, the
        model counting ``weight`` (:mod:`wss.evaluation.trust`); at 0, the teacher's label itself."""
        if weight <= 0:
            return teacher.astype(np.uint8)
        return self.cut(file, fuse(prob, teacher, weight), box)


def score(prob: np.ndarray, mask: np.ndarray) -> float:
    """A mask's score: the model's mean foreground probability inside it (0 for an empty mask)."""
    return float(prob[mask > 0].mean()) if mask.any() else 0.0
