"""The masks to check first: quality, the review list, and the gallery rendered in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import cv2
import numpy as np
import pandas as pd
import pytest

from wss.core.boxes import Box
from wss.evaluation import review

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_quality_is_agreement_times_certainty():
    model = np.zeros((10, 10), np.uint8)
    model[2:8, 2:8] = 1
    teacher = np.zeros_like(model)
    teacher[2:8, 2:5] = 1
    prob = np.where(model == 1, 0.9, 0.1).astype(np.float32)
    sure = review.certainty(prob, Box(2, 2, 8, 8))
    assert sure == pytest.approx(0.8)
    q = review.quality(model, teacher, sure)
    assert q == {"quality": pytest.approx(0.5 * 0.8), "agreement": 0.5, "certainty": 0.8}
    half = np.full((10, 10), 0.5, np.float32)
    assert review.certainty(half, Box(0, 0, 10, 10)) == 0  # a guessing model is not sure


@pytest.fixture
def gallery(tmp_path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.jpg"), rng.integers(0, 255, (60, 80, 3), np.uint8))
    rows, masks = [], {}
    for k in range(7):
        box = Box(5 + k, 5, 40 + k, 45)
        m = np.zeros((60, 80), np.uint8)
        m[box.y1 + 3 : box.y2 - 3, box.x1 + 3 : box.x2 - 3] = 1
        key = f"a/{k + 1}"
        masks[key] = m
        rows.append(
            {
                "key": key,
                "file": "a.jpg",
                "category_name": "dog" if k % 2 else "cat",
                "source_file": "x.json",
                "source_id": str(100 + k),
                "x1": box.x1,
                "y1": box.y1,
                "x2": box.x2,
                "y2": box.y2,
                "quality": [0.9, 0.2, 0.5, 0.05, 0.7, 0.3, 0.6][k],
                "agreement": 0.5,
                "certainty": 0.5,
                "score": 0.8,
            }
        )
    out = tmp_path / "review"
    ranked = review.write(pd.DataFrame(rows), masks, tmp_path, out, cards=5)
    return out, ranked


def test_review_list_is_worst_first_and_the_page_holds_the_worst_cards(gallery):
    out, ranked = gallery
    listed = pd.read_csv(out / "review.csv")
    assert listed.quality.tolist() == sorted(listed.quality) and len(listed) == 7
    page = (out / "index.html").read_text()
    qualities = [float(q) for q in re.findall(r'data-quality="([0-9.]+)"', page)]
    assert qualities == [0.05, 0.2, 0.3, 0.5, 0.6]
    assert len(list((out / "thumbs").glob("*.jpg"))) == 5
    assert 'src="thumbs/00000.jpg"' in page and "x.json #103" in page  # the worst, with its id in the user's file


def dom(url: str) -> str:
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_gallery_renders_in_chromium_worst_first_and_filters_by_class(gallery, tmp_path):
    out, _ = gallery
    shown = dom((out / "index.html").as_uri())
    cards = re.findall(r'<figure class="card"([^>]*)>', shown)
    assert len(cards) == 5 and not any("hidden" in c for c in cards)
    assert [float(q) for q in re.findall(r'data-quality="([0-9.]+)"', shown)] == [0.05, 0.2, 0.3, 0.5, 0.6]
    assert "5 shown" in shown  # the page's script ran
    dogs = dom((out / "index.html").as_uri() + "#class=dog")
    visible = [c for c in re.findall(r'<figure class="card"([^>]*)>', dogs) if "hidden" not in c]
    assert len(visible) == 3 and all('data-class="dog"' in c for c in visible) and "3 shown" in dogs
    shot = tmp_path / "gallery.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1100,700",
            f"--screenshot={shot}",
            (out / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (700, 1100) and picture.std() > 10  # drawn, not blank


def test_the_worst_n_are_one_choice_even_when_every_quality_ties(tmp_path):
    """A network that learnt nothing gives every mask quality 0: the masks picked for the gallery
    (``review.worst``) must be exactly the cards it draws, whatever the row order.  Empty and full
    masks draw."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((40, 50, 3), 120, np.uint8))
    rows = [
        {
            "key": f"a/{k}",
            "file": "a.jpg",
            "category_name": "cat",
            "source_file": "x.txt",
            "source_id": str(k),
            "x1": 2,
            "y1": 3,
            "x2": 30,
            "y2": 35,
            "quality": 0.0,
            "agreement": 0.0,
            "certainty": 0.0,
            "score": 0.0,
        }
        for k in (7, 3, 12, 1, 9)
    ]
    frame = pd.DataFrame(rows)
    picked = review.worst(frame.sample(frac=1, random_state=4), 3)
    assert picked.key.tolist() == review.worst(frame, 3).key.tolist() == ["a/1", "a/12", "a/3"]
    empty, full = np.zeros((40, 50), np.uint8), np.ones((40, 50), np.uint8)
    masks = dict(zip(picked.key, (empty, full, empty)))  # only the picked ones, as export passes them
    ranked = review.write(frame, masks, tmp_path, tmp_path / "review", cards=3)
    page = (tmp_path / "review/index.html").read_text()
    assert re.findall(r'data-key="([^"]+)"', page) == ["a/1", "a/12", "a/3"] and len(ranked) == 5
    assert review.worst(frame, 0).empty and len(review.worst(frame, 99)) == 5
    assert review.summary(ranked) == {"masks": 5, "quality_median": 0.0, "below_0.5": 5}
