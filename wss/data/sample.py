"""A deterministic, synthetic dataset in the exact SBD layout (see :mod:`wss.data.readers.sbd`).

It exists so that ``dvc repro`` runs end to end offline and so the pipeline has something
non-trivial to learn: textured, noisy, cluttered backgrounds; ten shape families with concave
outlines and thin parts, in two appearances each, one (family, appearance) per VOC class so the
class is learnable; colours that sometimes nearly match the background; 1-5 overlapping
instances with occlusion; JPEG compression.  Every image is drawn from its own RNG stream,
``default_rng([seed, index])``, so the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wss.config import SampleConfig
from wss.core import atomic
from wss.data.readers import sbd

FAMILIES = ("ellipse", "star", "crescent", "ell", "cross", "ring", "dumbbell", "triangle", "person", "mushroom")
# Hue (OpenCV's 0..179 scale) of each class: spread out, then interleaved so that classes of
# the same family differ in colour as well as texture.
CLASS_HUES = [(37 * c) % 180 for c in range(20)]


def family_of(category: int) -> str:
    """Shape family of VOC class ``category`` (1..20)."""
    return FAMILIES[(category - 1) % len(FAMILIES)]


def _circle(cx: float, cy: float, r: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], float)


def _outline(family: str, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """Polygons in unit coordinates (about [-1, 1]^2), each with +1 (add) or -1 (cut out)."""
    if family == "ellipse":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return [(np.stack([np.cos(t), rng.uniform(0.45, 0.8) * np.sin(t)], 1), 1)]
    if family == "star":
        n = int(rng.integers(5, 8))
        t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.5))
        return [(np.stack([r * np.cos(t), r * np.sin(t)], 1), 1)]
    if family == "crescent":
        return [(_circle(0, 0, 1), 1), (_circle(rng.uniform(0.4, 0.6), 0, 0.85), -1)]
    if family == "ell":
        a = rng.uniform(-0.45, -0.15)
        b = rng.uniform(0.1, 0.45)
        return [(np.array([(-1, -1), (a, -1), (a, b), (1, b), (1, 1), (-1, 1)], float), 1)]
    if family == "cross":
        w = rng.uniform(0.18, 0.32)
        return [(_rect(-1, -w, 1, w), 1), (_rect(-w, -1, w, 1), 1)]
    if family == "ring":
        return [(_circle(0, 0, 1), 1), (_circle(0, 0, rng.uniform(0.4, 0.55)), -1)]
    if family == "dumbbell":
        r = rng.uniform(0.35, 0.45)
        return [(_circle(-1 + r, 0, r), 1), (_circle(1 - r, 0, r), 1), (_rect(-0.7, -0.1, 0.7, 0.1), 1)]
    if family == "triangle":
        pts = np.array([(0, -1), (0.95, 0.8), (-0.95, 0.8)], float) + rng.uniform(-0.12, 0.12, (3, 2))
        return [(pts, 1)]
    if family == "person":
        return [
            (_circle(0, -0.78, 0.2), 1),
            (_rect(-0.28, -0.55, 0.28, 0.3), 1),
            (_rect(-0.7, -0.5, 0.7, -0.38), 1),
            (_rect(-0.26, 0.3, -0.08, 1), 1),
            (_rect(0.08, 0.3, 0.26, 1), 1),
        ]
    if family == "mushroom":
        t = np.linspace(np.pi, 2 * np.pi, 33)
        cap = np.stack([np.cos(t), 0.75 * np.sin(t) + 0.05], 1)
        return [(cap, 1), (_rect(-0.14, 0, 0.14, 1), 1)]
    raise ValueError(f"unknown shape family {family!r}")


def _draw_object(
    family: str, shape: tuple[int, int], centre: tuple[float, float], size: float, rng: np.random.Generator
) -> np.ndarray:
    """Binary mask of one object of ``family`` placed at ``centre`` with half-extent ``size``."""
    upright = family in ("person", "mushroom")
    angle = rng.uniform(-0.35, 0.35) if upright else rng.uniform(-np.pi, np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = size * np.array([rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)])
    mask = np.zeros(shape, np.uint8)
    for poly, sign in _outline(family, rng):
        pts = (poly * scale) @ rot.T + np.asarray(centre)
        # Sub-pixel vertices (shift=4) keep thin parts from snapping to the pixel grid.
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1 if sign > 0 else 0, cv2.LINE_8, shift=4)
    return mask


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int, channels: int = 3) -> np.ndarray:
    """Random field with about ``cells`` blobs per side, bicubically upsampled (float, ~N(0, 1))."""
    h, w = shape
    small = rng.normal(size=(cells, cells, channels)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)


def _background(rng: np.random.Generator, shape: tuple[int, int], cfg: SampleConfig) -> np.ndarray:
    h, w = shape
    base = rng.uniform(40, 215, 3)
    img = base + 45 * _smooth_field(rng, shape, 3) + 22 * _smooth_field(rng, shape, int(rng.integers(12, 40)))
    # Clutter: soft blobs and strokes that GrabCut may take for an object.
    for _ in range(int(rng.integers(cfg.clutter // 2, cfg.clutter + 1))):
        layer = np.zeros(shape, np.uint8)
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(3, max(4, w // 8))), int(rng.integers(3, max(4, h // 8))))
            cv2.ellipse(layer, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            end = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(layer, c, end, 1, int(rng.integers(1, 5)))
        alpha = cv2.GaussianBlur(layer.astype(np.float32), (0, 0), 1.5)[..., None]
        img = img * (1 - 0.8 * alpha) + 0.8 * alpha * rng.uniform(0, 255, 3)
    return img


def _appearance(
    rng: np.random.Generator,
    category: int,
    shape: tuple[int, int],
    box: tuple[int, int, int, int],
    backdrop: np.ndarray,
    close_prob: float,
) -> np.ndarray:
    """Colour field of an object of ``category`` (full image size; only its mask is used)."""
    h, w = shape
    if rng.random() < close_prob:
        x1, y1, x2, y2 = box
        offset = rng.normal(size=3)
        offset *= rng.uniform(30, 55) / (np.linalg.norm(offset) + 1e-9)
        color = backdrop[y1:y2, x1:x2].reshape(-1, 3).mean(0) + offset
    else:
        hsv = np.uint8([[[CLASS_HUES[category - 1], rng.integers(150, 256), rng.integers(110, 240)]]])
        color = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(float)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    ramp = (xx * direction[0] + yy * direction[1]) / max(h, w)
    field = color + 50 * (ramp - ramp.mean())[..., None] + 10 * _smooth_field(rng, shape, 8)
    if (category - 1) // len(FAMILIES) == 1:  # the second appearance of each family is striped
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(5, 10)
        stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        field = field + 35 * stripes[..., None]
    return field


def render(index: int, seed: int, cfg: SampleConfig) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """Draw image ``index``: (BGR uint8 image, instance map, categories, JPEG quality)."""
    rng = np.random.default_rng([seed, index])
    h = int(rng.integers(cfg.min_side, cfg.max_side + 1))
    w = int(rng.integers(cfg.min_side, cfg.max_side + 1))
    img = _background(rng, (h, w), cfg)
    n = int(rng.integers(1, cfg.max_instances + 1))
    masks: list[np.ndarray] = []
    cats: list[int] = []
    for _ in range(n):
        cat = int(rng.integers(1, 21))
        size = 0.5 * min(h, w) * rng.uniform(cfg.min_object, cfg.max_object)
        centre = (rng.uniform(size * 0.6, w - size * 0.6), rng.uniform(size * 0.6, h - size * 0.6))
        mask = _draw_object(family_of(cat), (h, w), centre, size, rng)
        ys, xs = np.nonzero(mask)
        if ys.size < 50:
            continue
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        color = _appearance(rng, cat, (h, w), box, img, cfg.close_color_prob)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)[..., None]
        img = img * (1 - alpha) + color * alpha
        masks = [m & (1 - mask) for m in masks]  # the new object occludes the earlier ones
        masks.append(mask)
        cats.append(cat)
    img = np.clip(img + rng.normal(0, cfg.noise_std, img.shape), 0, 255).astype(np.uint8)
    inst = np.zeros((h, w), np.uint8)
    kept: list[int] = []
    full_area = [m.sum() for m in masks]
    for mask, cat, area in zip(masks, cats, full_area):
        if mask.sum() >= max(cfg.min_visible * area, 50):
            kept.append(cat)
            inst[mask > 0] = len(kept)
    quality = int(rng.integers(cfg.jpeg_quality_min, cfg.jpeg_quality_max + 1))
    return img, inst, kept, quality


def image_id(index: int) -> str:
    return f"sample_{index:06d}"


def generate(out_dir: Path, seed: int, cfg: SampleConfig) -> None:
    """Write the whole sample to ``out_dir`` (replaced atomically) in SBD layout."""
    total = cfg.n_train + cfg.n_val
    with atomic.target(out_dir, directory=True) as tmp:
        for sub in ("img", "inst", "cls"):
            (tmp / sub).mkdir()
        for i in tqdm(range(total), desc="sample", unit="img"):
            img, inst, cats, quality = render(i, seed, cfg)
            iid = image_id(i)
            ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok, "OpenCV failed to encode a JPEG"
            sbd.image_path(tmp, iid).write_bytes(jpg.tobytes())
            sbd.write_inst(sbd.inst_path(tmp, iid), inst, cats)
            class_map = np.zeros_like(inst)
            for k, c in enumerate(cats, start=1):
                class_map[inst == k] = c
            sbd.write_cls(sbd.cls_path(tmp, iid), class_map)
        ids = [image_id(i) for i in range(total)]
        sbd.split_path(tmp, "train").write_text("".join(f"{i}\n" for i in ids[: cfg.n_train]))
        sbd.split_path(tmp, "val").write_text("".join(f"{i}\n" for i in ids[cfg.n_train :]))
