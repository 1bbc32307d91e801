"""The masks to check first: a quality score for every exported mask, a review list, a gallery to
review them in, and the score refitted on the reviewer's decisions.

Nothing here needs ground truth, so it works on a boxes-only dataset.  The quality of an
instance's mask is the product of two signs that a mask is right:

* ``agreement``: IoU of the model's mask with the teacher's (GrabCut or GrabCut+).  Two methods that
  fail differently rarely agree on a wrong mask.
* ``certainty``: how far the model's probabilities inside the box are from 0.5, on average
  (``mean |2p - 1|``): 1 where the model is sure of every pixel, 0 where it is guessing.

Once a reviewer has accepted and rejected enough masks (``review.min_decisions`` of each), the
score is refitted on their decisions (:func:`refit`): a logistic regression over the signs the
review has (:data:`SIGNS`, and the class), whose ``p_accept`` then orders the masks not yet
reviewed.  That brings in the one thing the product cannot know: what goes wrong in the user's
own photos.

``review.csv`` lists every exported mask in review order, with the instance's ids in the user's own
files; ``index.html`` is a static gallery of all of them (:file:`gallery.html`), paged, worst
first, that opens from disk with no server.  It draws each mask over its image, filters by class,
quality and decision, and records accept / reject from the keyboard; its decisions file is what
:mod:`wss.data.decisions` reads.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from wss.core import atomic, provenance
from wss.core.boxes import Box, clip
from wss.core.metrics import iou

# The signs the refitted score weighs (columns of the review rows, see export.review_row), besides the class.
SIGNS = ("quality", "agreement", "certainty", "score", "fill", "cut_change", "box_share", "aspect")


def certainty(prob: np.ndarray, box: Box) -> float:
    """``mean |2p - 1|`` of the model's full-resolution probabilities ``prob`` inside ``box``."""
    h, w = prob.shape
    b = clip(box, h, w)
    inside = prob[b.y1 : b.y2, b.x1 : b.x2]
    return float(np.abs(2 * inside - 1).mean()) if inside.size else 0.0


def quality(model_mask: np.ndarray, teacher_mask: np.ndarray, sure: float) -> dict[str, float]:
    """``{"quality", "agreement", "certainty"}`` of one instance (module docstring)."""
    agreement = iou(model_mask, teacher_mask)
    return {"quality": round(agreement * sure, 4), "agreement": round(agreement, 4), "certainty": round(sure, 4)}


def shape_signs(mask: np.ndarray, box: Box, exported: np.ndarray | None = None) -> dict[str, float]:
    """The signs of one mask that describe its shape rather than the model's belief: ``fill``, the
    share of its box the mask covers; ``box_share``, ``log10`` of the box's share of the image;
    ``aspect``, ``log2`` of the box's width over height; ``cut_change``, ``1 -`` IoU of the
    ``mask`` with the ``exported`` one (the refinement cut's change; 0 when there is none)."""
    h, w = mask.shape
    b = clip(box, h, w)
    area = max(b.area, 1)
    return {
        "fill": round(float(mask[b.y1 : b.y2, b.x1 : b.x2].sum()) / area, 4),
        "box_share": round(float(np.log10(area / (h * w))), 4),
        "aspect": round(float(np.log2(max(b.width, 1) / max(b.height, 1))), 4),
        "cut_change": round(1 - iou(mask, exported), 4) if exported is not None else 0.0,
    }


def refit(rows: pd.DataFrame, decided: pd.DataFrame, min_decisions: int, seed: int = 0) -> tuple[pd.Series, dict]:
    """The probability that the reviewer accepts each mask of ``rows`` (review rows with
    :data:`SIGNS` and ``category_name``), fitted on the ``decided`` ones (``key``, ``decision``).

    A logistic regression on the standardised signs (the quality among them) and the class
    (one-hot), with classes weighted to balance accepts and rejects.  Its L2 penalty is strong
    (``C = 0.1``): a reviewer decides on tens of masks, and mostly on the lowest-ranked ones, so a
    loose fit learns that narrow slice and ranks the rest worse than the quality did
    (``bench/review.py``, docs/results.md).  With fewer than ``min_decisions`` of either
    kind there is nothing to fit: the quality score is returned as it is.  The report says which:
    ``{"refitted", "accepted", "rejected", "weights"}``, ``weights`` the ``[sign, weight]`` pairs,
    largest first, a weight the change in log-odds per standard deviation of the sign (per class:
    against the other classes)."""
    import sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    labels = dict(zip(decided.key, decided.decision == "accept"))
    seen = rows[rows.key.isin(labels)]
    y = seen.key.map(labels).astype(int).to_numpy()
    report = {"refitted": False, "accepted": int(y.sum()), "rejected": int(len(y) - y.sum())}
    if min(report["accepted"], report["rejected"]) < min_decisions:
        return rows.quality.astype(float), report
    features = ColumnTransformer(
        [("signs", StandardScaler(), list(SIGNS)), ("class", OneHotEncoder(handle_unknown="ignore"), ["category_name"])]
    )
    fit = make_pipeline(features, LogisticRegression(C=0.1, class_weight="balanced", random_state=seed))
    x = lambda df: df[[*SIGNS, "category_name"]].astype({"category_name": str})  # noqa: E731
    fit.fit(x(seen), y)
    names = [n.split("__", 1)[1] for n in fit[0].get_feature_names_out()]
    coef = fit[-1].coef_[0]
    order = np.argsort(-np.abs(coef))
    report.update(
        refitted=True,
        weights=[[names[i], round(float(coef[i]), 3)] for i in order],
        sklearn=sklearn.__version__,
    )
    return pd.Series(fit.predict_proba(x(rows))[:, 1], index=rows.index), report


def rank(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` in review order: the masks not yet decided first, lowest ``order`` first (the
    refitted ``p_accept``, else the quality), then the rejected, then the accepted; ties broken
    by ``key``, so that the order is one whatever the input's."""
    decision = rows["decision"] if "decision" in rows else pd.Series("", index=rows.index)
    done = decision.map({"": 0, "reject": 1, "accept": 2}).fillna(0)
    order = rows["p_accept"] if "p_accept" in rows else rows["quality"]
    return (
        rows.assign(_done=done, _order=order)
        .sort_values(["_done", "_order", "key"], kind="stable")
        .drop(columns=["_done", "_order"])
        .reset_index(drop=True)
    )


def write(
    rows: pd.DataFrame,
    masks: dict[str, str],
    images: str,
    out: Path,
    page_size: int,
    banner: str = "",
    decided: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write ``review.csv`` (every row, in :func:`rank`'s order) and ``index.html`` under ``out``.

    ``rows`` has ``key, file, category_name, source_file, source_id, split, x1, y1, x2, y2, height,
    width, quality`` and the :data:`SIGNS` (``p_accept`` when refitted); ``masks`` holds every key's
    exported mask as compressed RLE text; ``images`` is the dataset directory relative to ``out``
    (where the page finds the images).  ``decided`` (:func:`wss.data.decisions.read`) is shown
    as the decisions already made.  ``banner``, when given, stands at the top of the page (the
    verdict on a weak network).  Returns the ranked table."""
    rows = rows.copy()
    decided = decided if decided is not None else pd.DataFrame(columns=["key", "decision", "time"])
    made = decided.set_index("key")
    rows["decision"] = rows.key.map(made.decision).fillna("") if len(made) else ""
    ranked = rank(rows)
    out.mkdir(parents=True, exist_ok=True)
    ranked.round(4).to_csv(out / "review.csv", index=False)
    items = [
        {
            "k": str(r.key),
            "f": f"{images}/{r.file}" if images else str(r.file),
            "c": str(r.category_name),
            "q": round(float(r.quality), 4),
            "p": round(float(r.p_accept), 4) if "p_accept" in ranked else None,
            "a": round(float(r.agreement), 4),
            "e": round(float(r.certainty), 4),
            "b": [int(r.x1), int(r.y1), int(r.x2), int(r.y2)],
            "h": int(r.height),
            "w": int(r.width),
            "m": masks[r.key],
            "sf": str(r.source_file),
            "si": str(r.source_id),
            "d": str(r.decision),
            "t": str(made.time[r.key]) if r.decision else "",
        }
        for r in ranked.itertuples()
    ]
    page_id = provenance.digest([(i["k"], i["m"]) for i in items])[:16]
    data = {"id": page_id, "banner": banner, "pageSize": page_size, "items": items}
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # safe inside <script>
    template = resources.files("wss.evaluation").joinpath("gallery.html").read_text()
    atomic.write_text(out / "index.html", template.replace("/*WSS_DATA*/null", text))
    return ranked


def images_dir(data_root: Path, page_dir: Path) -> str:
    """The dataset directory as the gallery in ``page_dir`` reaches it (a relative URL path)."""
    return Path(os.path.relpath(Path(data_root).resolve(), Path(page_dir).resolve())).as_posix()


def summary(ranked: pd.DataFrame) -> dict:
    """What the review found, for the export log."""
    q = ranked.quality
    decision = ranked["decision"] if "decision" in ranked else pd.Series("", index=ranked.index)
    return {
        "masks": len(ranked),
        "quality_median": round(float(q.median()), 4) if len(q) else None,
        "below_0.5": int((q < 0.5).sum()),
        "accepted": int((decision == "accept").sum()),
        "rejected": int((decision == "reject").sum()),
    }
