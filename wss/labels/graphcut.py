"""GrabCut's iterated colour models and graph cut, with the pairwise term as an argument.

This is the core of GrabCut+ ("Simple Does It", Khoreva et al. 2017): GrabCut (Rother et al.
2004) whose pairwise term comes from HED boundaries instead of colour differences.  Everything
else follows OpenCV's ``cv2.grabCut`` (``modules/imgproc/src/grabcut.cpp``) step for step, so that
with :func:`colour_weights` it reproduces OpenCV's masks (tested):

* two 5-component full-covariance colour GMMs, one for the background, one for the foreground,
  started by k-means++ (10 rounds) on the pixels of each side;
* each iteration assigns every pixel to the most likely component of its side's GMM, refits the
  GMMs, and cuts the graph whose unaries are the GMMs' negative log-likelihoods, whose hard
  pixels (``GC_BGD``/``GC_FGD``) are tied to their side with ``9 * gamma``, and whose pairwise
  weights couple the 8 neighbours of every pixel;
* only the *probable* pixels change label.

The max-flow is :func:`scipy.sparse.csgraph.maximum_flow` (Dinic's algorithm, BSD licence), which
takes integer capacities: every weight is scaled by :data:`SCALE` and rounded.

The pairwise weights are two arrays: ``right[y, x]`` couples ``(y, x)`` with ``(y, x + 1)`` and
``down[y, x]`` couples it with ``(y + 1, x)`` (the last column of ``right`` and the last row of
``down`` are unused), and the two diagonals ``down_right`` and ``down_left`` likewise.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

GAMMA = 50.0  # OpenCV's (and Rother et al.'s) pairwise weight
COMPONENTS = 5
SCALE = 1000  # weights are integers in units of 1/SCALE
_VARIANCE = 0.01  # white noise added to every covariance, as OpenCV does, so none is singular


class CutFailed(Exception):
    """GrabCut's two documented failures: a trimap without foreground or background pixels, and
    edge weights too large for int32 capacities.  The labels stage turns exactly these into a
    fallback label; any other exception is a bug and propagates."""


class Weights(NamedTuple):
    """Pairwise weights of the 8-neighbour grid (see the module docstring for the layout)."""

    right: np.ndarray
    down: np.ndarray
    down_right: np.ndarray
    down_left: np.ndarray


class GMM(NamedTuple):
    weights: np.ndarray  # (K,) mixing weights; 0 for an empty component
    means: np.ndarray  # (K, 3)
    whiten: np.ndarray  # (K, 3, 3): (x - mean) @ whiten[k] has identity covariance
    log_dets: np.ndarray  # (K,) log-determinant of each covariance


def _neighbour_diffs(image: np.ndarray) -> tuple[np.ndarray, ...]:
    """Squared colour differences to the right, down, down-right and down-left neighbours, each
    (H, W) with zeros where the neighbour falls outside the image."""
    img = image.astype(np.float64)
    h, w = img.shape[:2]
    out = [np.zeros((h, w)) for _ in range(4)]
    out[0][:, :-1] = ((img[:, 1:] - img[:, :-1]) ** 2).sum(-1)
    out[1][:-1, :] = ((img[1:, :] - img[:-1, :]) ** 2).sum(-1)
    out[2][:-1, :-1] = ((img[1:, 1:] - img[:-1, :-1]) ** 2).sum(-1)
    out[3][:-1, 1:] = ((img[1:, :-1] - img[:-1, 1:]) ** 2).sum(-1)
    return tuple(out)


def _valid(h: int, w: int) -> tuple[np.ndarray, ...]:
    """Where each of the four neighbour directions exists."""
    v = [np.zeros((h, w), bool) for _ in range(4)]
    v[0][:, :-1] = True
    v[1][:-1, :] = True
    v[2][:-1, :-1] = True
    v[3][:-1, 1:] = True
    return tuple(v)


def colour_weights(image: np.ndarray, gamma: float = GAMMA) -> Weights:
    """GrabCut's contrast-sensitive weights: ``gamma * exp(-beta * |c_p - c_q|^2) / dist(p, q)``,
    with ``beta = 1 / (2 * mean |c_p - c_q|^2)`` over all neighbour pairs of the (H, W, 3) image."""
    diffs = _neighbour_diffs(image)
    valid = _valid(*image.shape[:2])
    total = sum(float(d[v].sum()) for d, v in zip(diffs, valid))
    count = sum(int(v.sum()) for v in valid)
    beta = 0.0 if total <= np.finfo(float).eps else count / (2 * total)
    dist = (1.0, 1.0, np.sqrt(2), np.sqrt(2))
    return Weights(*(gamma / k * np.exp(-beta * d) * v for d, v, k in zip(diffs, valid, dist)))


def boundary_weights(edges: np.ndarray, sigma: float, gamma: float = GAMMA) -> Weights:
    """GrabCut+'s weights from a boundary map ``edges`` (H, W) in [0, 1] (HED's output):
    ``gamma * exp(-max(e_p, e_q)^2 / (2 sigma^2)) / dist(p, q)``, so that a cut is cheap exactly where
    HED sees a boundary, whatever the colours on either side of it."""
    e = edges.astype(np.float64)
    h, w = e.shape
    pair = [np.zeros((h, w)) for _ in range(4)]
    pair[0][:, :-1] = np.maximum(e[:, 1:], e[:, :-1])
    pair[1][:-1, :] = np.maximum(e[1:, :], e[:-1, :])
    pair[2][:-1, :-1] = np.maximum(e[1:, 1:], e[:-1, :-1])
    pair[3][:-1, 1:] = np.maximum(e[1:, :-1], e[:-1, 1:])
    dist = (1.0, 1.0, np.sqrt(2), np.sqrt(2))
    valid = _valid(h, w)
    return Weights(*(gamma / k * np.exp(-(p**2) / (2 * sigma**2)) * v for p, v, k in zip(pair, valid, dist)))


def fit_gmm(pixels: np.ndarray, components: np.ndarray, k: int = COMPONENTS) -> GMM:
    """Maximum-likelihood GMM of (N, 3) ``pixels`` given each one's component in ``components``."""
    weights = np.zeros(k)
    means = np.zeros((k, 3))
    whiten = np.tile(np.eye(3), (k, 1, 1))
    log_dets = np.zeros(k)
    n = len(pixels)
    for c in range(k):
        x = pixels[components == c]
        if len(x) == 0:
            continue
        weights[c] = len(x) / n
        means[c] = x.mean(0)
        d = x - means[c]
        cov = d.T @ d / len(x) + _VARIANCE * np.eye(3)
        chol = np.linalg.cholesky(np.linalg.inv(cov))  # inv(cov) = chol @ chol.T
        whiten[c] = chol
        log_dets[c] = np.log(np.linalg.det(cov))
    return GMM(weights, means, whiten, log_dets)


def _component_log_densities(pixels: np.ndarray, gmm: GMM) -> np.ndarray:
    """(N, K): log N(x | component) up to the shared ``(2 pi)^-3/2``; -inf for empty components."""
    out = np.full((len(pixels), len(gmm.weights)), -np.inf)
    for c in np.flatnonzero(gmm.weights > 0):
        y = (pixels - gmm.means[c]) @ gmm.whiten[c]
        out[:, c] = -0.5 * (np.einsum("ni,ni->n", y, y) + gmm.log_dets[c])
    return out


def neg_log_likelihood(logp: np.ndarray, gmm: GMM) -> np.ndarray:
    """``-log sum_k w_k N(x | k)`` per pixel (the unary cost of giving it this GMM's side), from
    the pixels' :func:`_component_log_densities` ``logp``."""
    with np.errstate(divide="ignore"):
        logp = logp + np.log(gmm.weights)[None]
    top = logp.max(1, keepdims=True)
    return -(top[:, 0] + np.log(np.exp(logp - top).sum(1)))


def _kmeans_components(pixels: np.ndarray, k: int) -> np.ndarray:
    if len(pixels) < k:  # too few to cluster: one component per pixel
        return np.arange(len(pixels))
    criteria = (cv2.TERM_CRITERIA_MAX_ITER, 10, 0.0)
    _, labels, _ = cv2.kmeans(pixels.astype(np.float32), k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return labels.ravel()


class Grid(NamedTuple):
    """The part of a grid graph that stays the same across GrabCut's iterations: the pairwise
    edges between free pixels, and what the pinned pixels add to their free neighbours' terminal
    costs (see :func:`grid`)."""

    free: np.ndarray  # (H*W,) bool
    label: np.ndarray  # (H*W,) int8: -1 free, 0 sink side, 1 source side
    rows: np.ndarray  # pairwise edges between free pixels, as node indices (both directions)
    cols: np.ndarray
    caps: np.ndarray  # int64 capacities in 1/SCALE
    to_source: np.ndarray  # (n_free,) extra cost of cutting each free pixel from the source
    to_sink: np.ndarray


def grid(weights: Weights, fixed: np.ndarray | None = None) -> Grid:
    """The 8-neighbour graph of ``weights``.  ``fixed`` (int8 H x W: -1 free, 0 sink side, 1 source
    side) pins pixels: they get no node, and their pairwise edges become terminal costs of their
    free neighbours, which shrinks the graph to the pixels that can change."""
    h, w = weights.right.shape
    if fixed is None:
        fixed = np.full((h, w), -1, np.int8)
    label = fixed.ravel()
    free = label < 0
    n = int(free.sum())
    node = np.full(h * w, -1, np.int64)
    node[free] = np.arange(n)
    idx = np.arange(h * w).reshape(h, w)
    pairs = [
        (idx[:, :-1], idx[:, 1:], weights.right[:, :-1]),
        (idx[:-1, :], idx[1:, :], weights.down[:-1, :]),
        (idx[:-1, :-1], idx[1:, 1:], weights.down_right[:-1, :-1]),
        (idx[:-1, 1:], idx[1:, :-1], weights.down_left[:-1, 1:]),
    ]
    rows, cols, caps = [], [], []
    to_source, to_sink = np.zeros(n), np.zeros(n)
    for a, b, c in pairs:
        a, b, c = a.ravel(), b.ravel(), c.ravel()
        both = free[a] & free[b] & (c > 0)
        cw = np.round(c[both] * SCALE).astype(np.int64)
        rows += [node[a[both]], node[b[both]]]
        cols += [node[b[both]], node[a[both]]]
        caps += [cw, cw]
        for p, q in ((a, b), (b, a)):
            sel = free[p] & ~free[q]
            to_source += np.bincount(node[p[sel]], c[sel] * (label[q[sel]] == 1), minlength=n)
            to_sink += np.bincount(node[p[sel]], c[sel] * (label[q[sel]] == 0), minlength=n)
    return Grid(free, label, np.concatenate(rows), np.concatenate(cols), np.concatenate(caps), to_source, to_sink)


def min_cut(source: np.ndarray, sink: np.ndarray, g: Grid) -> np.ndarray:
    """The minimum s-t cut of the graph ``g``: True where a pixel ends on the source side.

    ``source[p]`` (H x W) is the cost of cutting ``p`` from the source (paid when ``p`` ends on the
    sink side), ``sink[p]`` the cost of cutting it from the sink.
    """
    n = int(g.free.sum())
    s, t = n, n + 1
    src = np.round((source.ravel()[g.free] + g.to_source) * SCALE).astype(np.int64)
    snk = np.round((sink.ravel()[g.free] + g.to_sink) * SCALE).astype(np.int64)
    # Only the difference of a pixel's two terminal costs matters; keeping one of them at 0 halves
    # the terminal edges and keeps the capacities small.
    both = np.minimum(src, snk)
    src, snk = src - both, snk - both
    on_s, on_t = np.flatnonzero(src > 0), np.flatnonzero(snk > 0)
    caps = np.concatenate([g.caps, src[on_s], snk[on_t]])
    if caps.size and caps.max() >= 2**31:
        raise CutFailed("graph cut capacities overflow int32: weights too large")
    rows = np.concatenate([g.rows, np.full(on_s.size, s), on_t])
    cols = np.concatenate([g.cols, on_s, np.full(on_t.size, t)])
    graph = coo_matrix((caps.astype(np.int32), (rows, cols)), shape=(n + 2, n + 2)).tocsr()
    flow = maximum_flow(graph, s, t, method="dinic").flow
    residual = graph - flow  # flow is antisymmetric: reverse edges gain what their forward edge carries
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, s, directed=True, return_predecessors=False)
    on_source = np.zeros(n + 2, bool)
    on_source[reached] = True
    out = g.label == 1
    out[g.free] = on_source[:n]
    return out.reshape(source.shape)


def grabcut(
    image: np.ndarray,
    mask: np.ndarray,
    weights: Weights,
    iterations: int,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """GrabCut on the (H, W, 3) ``image`` from the ``cv2.GC_*`` trimap ``mask`` with the pairwise
    ``weights``; returns the updated trimap (hard pixels kept, probable ones relabelled).

    Seed OpenCV's RNG (``cv2.setRNGSeed``) first: k-means++ draws from it, as in ``cv2.grabCut``.
    """
    mask = mask.copy()
    pixels = image.reshape(-1, 3).astype(np.float64)
    hard_fg = (mask == cv2.GC_FGD).ravel()
    hard_bg = (mask == cv2.GC_BGD).ravel()
    probable = ~(hard_fg | hard_bg)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).ravel()
    if not fg.any() or fg.all():
        raise CutFailed("GrabCut needs both foreground and background pixels in the trimap")
    comp = np.zeros(len(pixels), np.int64)
    comp[~fg] = _kmeans_components(pixels[~fg], COMPONENTS)
    comp[fg] = _kmeans_components(pixels[fg], COMPONENTS)
    bg_gmm, fg_gmm = fit_gmm(pixels[~fg], comp[~fg]), fit_gmm(pixels[fg], comp[fg])
    bg_logp, fg_logp = _component_log_densities(pixels, bg_gmm), _component_log_densities(pixels, fg_gmm)
    h, w = mask.shape
    graph = grid(weights, np.where(hard_fg, 1, np.where(hard_bg, 0, -1)).astype(np.int8).reshape(h, w))
    for _ in range(iterations):
        # Each pixel to the most likely component of its side's GMM (not weighted by the mixing
        # weights, as in OpenCV), then refit.
        comp = np.where(fg, fg_logp.argmax(1), bg_logp.argmax(1))
        bg_gmm, fg_gmm = fit_gmm(pixels[~fg], comp[~fg]), fit_gmm(pixels[fg], comp[fg])
        bg_logp, fg_logp = _component_log_densities(pixels, bg_gmm), _component_log_densities(pixels, fg_gmm)
        # The source is the foreground: leaving it costs -log P(bg model), as in OpenCV.  Hard
        # pixels are pinned rather than tied by LAMBDA: the same cut, as LAMBDA outweighs their
        # 8 pairwise edges, on a smaller graph.
        source = neg_log_likelihood(bg_logp, bg_gmm).reshape(h, w)
        sink = neg_log_likelihood(fg_logp, fg_gmm).reshape(h, w)
        if prior is not None:
            source, sink = source + prior[0], sink + prior[1]
        cut = min_cut(source, sink, graph).ravel()
        fg = np.where(probable, cut, hard_fg)
        if not fg.any() or fg.all():  # one GMM would have no pixels to fit: stop where we are
            break
    out = mask.ravel()
    out[probable] = np.where(fg[probable], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    return out.reshape(h, w)
