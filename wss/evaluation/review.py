"""The masks to check first: a quality score for every exported mask, a review list and a gallery.

Nothing here needs ground truth, so it works on a boxes-only dataset.  The quality of an
instance's mask is the product of two signs that a mask is right:

* ``agreement``: IoU of the model's mask with the teacher's (GrabCut or GrabCut+).  Two methods that
  fail differently rarely agree on a wrong mask.
* ``certainty``: how far the model's probabilities inside the box are from 0.5, on average
  (``mean |2p - 1|``): 1 where the model is sure of every pixel, 0 where it is guessing.

``review.csv`` lists every exported mask, lowest quality first, with the instance's ids in the
user's own files; ``index.html`` is a static gallery of the lowest ``export.review`` of them
(thumbnail with the box and the mask drawn, quality, class), filterable by class, that opens from
disk with no server (``index.html#class=dog`` opens filtered).
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from wss.core import atomic
from wss.core.boxes import Box, clip, square_window
from wss.core.image import read as read_image
from wss.core.metrics import iou

THUMB = 160  # pixels, the side of a gallery thumbnail


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


def thumbnail(image_bgr: np.ndarray, box: Box, mask: np.ndarray) -> np.ndarray:
    """A ``THUMB``-pixel view around ``box``: the mask tinted, its outline and the box drawn one
    thumbnail pixel wide after scaling, so a small object's box does not hide it."""
    h, w = mask.shape
    win = clip(square_window(box, 0.25), h, w)
    scale = THUMB / max(win.width, win.height)
    size = (max(1, round(win.width * scale)), max(1, round(win.height * scale)))
    grow = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(image_bgr[win.y1 : win.y2, win.x1 : win.x2], size, interpolation=grow)
    m = cv2.resize(mask[win.y1 : win.y2, win.x1 : win.x2].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    crop[m == 1] = (0.5 * crop[m == 1] + 0.5 * np.array([40, 200, 255])).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(crop, contours, -1, (0, 140, 255), 1)
    corner = lambda x, y: (round((x - win.x1) * scale), round((y - win.y1) * scale))  # noqa: E731
    cv2.rectangle(crop, corner(box.x1, box.y1), corner(box.x2, box.y2), (60, 230, 60), 1)
    return crop


def rank(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` lowest quality first, ties broken by ``key``: the one order of the review list, so
    that the masks picked for the gallery (:func:`worst`) are always the ones it shows."""
    return rows.sort_values(["quality", "key"], kind="stable").reset_index(drop=True)


def worst(rows: pd.DataFrame, cards: int) -> pd.DataFrame:
    """The ``cards`` rows of lowest quality, in :func:`rank`'s order."""
    return rank(rows).head(max(cards, 0))


def write(
    rows: pd.DataFrame, masks: dict[str, np.ndarray], data_root: Path, out: Path, cards: int, banner: str = ""
) -> pd.DataFrame:
    """Write ``review.csv`` (every row, lowest quality first), thumbnails and ``index.html`` for the
    lowest ``cards`` under ``out``.  ``rows`` has ``key, file, category_name, quality, agreement,
    certainty, score, x1, y1, x2, y2`` and the source ids; ``masks`` holds the masks of at least the
    keys of :func:`worst` ``(rows, cards)``.  ``banner``, when given, stands at the top of the page
    (the verdict on a weak network).  Returns the sorted table."""
    ranked = rank(rows)
    out.mkdir(parents=True, exist_ok=True)
    ranked.round(4).to_csv(out / "review.csv", index=False)
    (out / "thumbs").mkdir(exist_ok=True)
    items = []
    for file, group in worst(ranked, cards).groupby("file", sort=False):
        picture = read_image(data_root / file)
        for r in group.itertuples():
            name = f"thumbs/{r.Index:05d}.jpg"
            ok, jpg = cv2.imencode(".jpg", thumbnail(picture, Box(r.x1, r.y1, r.x2, r.y2), masks[r.key]))
            atomic.write_bytes(out / name, jpg.tobytes())
            items.append((r.Index, name, r))
    items.sort(key=lambda t: t[0])
    atomic.write_text(out / "index.html", _page([(name, r) for _, name, r in items], len(ranked), banner))
    return ranked


def _page(items: list[tuple[str, object]], total: int, banner: str = "") -> str:
    classes = sorted({str(r.category_name) for _, r in items})
    options = "".join(f'<option value="{html.escape(c, quote=True)}">{html.escape(c)}</option>' for c in classes)
    cards = "\n".join(
        f'<figure class="card" data-class="{html.escape(str(r.category_name), quote=True)}" '
        f'data-quality="{r.quality:.4f}" data-key="{html.escape(str(r.key), quote=True)}">'
        f'<img src="{name}" alt="{html.escape(str(r.key))}" loading="lazy">'
        f"<figcaption><b>{r.quality:.3f}</b> {html.escape(str(r.category_name))}<br>"
        f"<small>agreement {r.agreement:.2f} · certainty {r.certainty:.2f}<br>{html.escape(str(r.file))}"
        f"<br>{html.escape(str(r.source_file))} #{html.escape(str(r.source_id))}</small></figcaption></figure>"
        for name, r in items
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wss: masks to check first</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; background: #fafafa; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.card {{ margin: 0; width: {THUMB + 12}px; background: #fff; border: 1px solid #ddd; border-radius: 6px;
  padding: 6px; }}
.card img {{ display: block; margin: auto; max-width: {THUMB}px; max-height: {THUMB}px; }}
.card[hidden] {{ display: none; }}
figcaption {{ margin-top: 4px; overflow-wrap: anywhere; }}
.warning {{ background: #fff3cd; border: 1px solid #e0b84c; border-radius: 6px; padding: 8px 12px; }}
</style></head><body>
<h1>Masks to check first</h1>
{f'<p class="warning" role="alert">{html.escape(banner)}</p>' if banner else ""}
<p>The {len(items)} exported masks of lowest quality of {total}, lowest first (quality = agreement of the model
with its teacher × the model's certainty; every mask is in <a href="review.csv">review.csv</a>).
Class: <select id="class"><option value="">all</option>{options}</select> <span id="shown"></span></p>
<div class="grid">
{cards}
</div>
<script>
const pick = document.getElementById("class");
function show() {{
  let n = 0;
  for (const c of document.querySelectorAll(".card")) {{
    c.hidden = pick.value !== "" && c.dataset.class !== pick.value;
    n += !c.hidden;
  }}
  document.getElementById("shown").textContent = n + " shown";
  history.replaceState(null, "", pick.value ? "#class=" + encodeURIComponent(pick.value) : "#");
}}
const wanted = decodeURIComponent((location.hash.match(/class=([^&]*)/) || [])[1] || "");
if ([...pick.options].some(o => o.value === wanted)) pick.value = wanted;
pick.addEventListener("change", show);
show();
</script>
</body></html>
"""


def summary(ranked: pd.DataFrame) -> dict:
    """What the review found, for the export log."""
    q = ranked.quality
    return {
        "masks": len(ranked),
        "quality_median": round(float(q.median()), 4) if len(q) else None,
        "below_0.5": int((q < 0.5).sum()),
    }
