"""The review: quality, the review list, the score refitted on decisions, and the gallery driven
from the keyboard in a real browser (Debian's chromium, through Playwright)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from wss.core.boxes import Box
from wss.core.masks import from_rle, to_rle
from wss.data import decisions
from wss.evaluation import review

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def gallery_data(page: Path) -> dict:
    """The data the gallery page ``page`` carries."""
    text = page.read_text()
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


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


def test_shape_signs_by_hand():
    mask = np.zeros((20, 40), np.uint8)
    mask[0:10, 0:5] = 1  # half of a 10 x 10 box
    exported = np.zeros_like(mask)
    exported[0:10, 0:10] = 1
    s = review.shape_signs(mask, Box(0, 0, 10, 10), exported)
    assert s == {"fill": 0.5, "box_share": round(np.log10(100 / 800), 4), "aspect": 0.0, "cut_change": 0.5}
    assert review.shape_signs(mask, Box(0, 0, 20, 5))["aspect"] == 2.0  # 4 times wider than high
    assert review.shape_signs(mask, Box(0, 0, 10, 10))["cut_change"] == 0.0  # no cut


def rows_with_signs(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Review rows whose masks are good (a reviewer accepts them) exactly when ``fill`` > 0.5, a sign
    the quality score does not weigh; quality itself is noise."""
    fill = rng.uniform(0, 1, n)
    return pd.DataFrame(
        {
            "key": [f"im{i}/1" for i in range(n)],
            "category_name": rng.choice(["cat", "dog"], n),
            "quality": rng.uniform(0, 1, n),
            "agreement": rng.uniform(0, 1, n),
            "certainty": rng.uniform(0, 1, n),
            "score": rng.uniform(0, 1, n),
            "fill": fill,
            "cut_change": rng.uniform(0, 0.2, n),
            "box_share": rng.uniform(-3, 0, n),
            "aspect": rng.uniform(-1, 1, n),
            "good": fill > 0.5,
        }
    )


def test_the_refitted_score_learns_the_sign_that_tells_the_reviewers_decisions():
    rows = rows_with_signs(400, np.random.default_rng(0))
    seen = rows.iloc[:60]
    decided = pd.DataFrame({"key": seen.key, "decision": np.where(seen.good, "accept", "reject")})
    p, report = review.refit(rows, decided, min_decisions=5)
    assert report["refitted"] and report["accepted"] + report["rejected"] == 60
    assert report["weights"][0][0] == "fill" and report["weights"][0][1] > 0  # the largest weight
    rest = rows.iloc[60:]
    bad, good = p[rest.index][~rest.good], p[rest.index][rest.good]
    auroc = (good.to_numpy()[:, None] > bad.to_numpy()[None, :]).mean()
    assert auroc > 0.95  # quality alone (noise here) ranks at chance
    # Too few decisions of one kind: the quality score as it is, and said so.
    few = decided[decided.decision == "accept"].head(10)
    same, report = review.refit(rows, pd.concat([few, decided[decided.decision == "reject"].head(2)]), 5)
    assert not report["refitted"] and same.tolist() == rows.quality.tolist()


def test_review_order_puts_the_decided_last_and_is_one_whatever_the_input_order():
    rows = pd.DataFrame({"key": list("abcde"), "quality": [0.5, 0.1, 0.1, 0.9, 0.0], "decision": ["", "", "", "", ""]})
    rows.loc[rows.key == "e", "decision"] = "accept"
    rows.loc[rows.key == "d", "decision"] = "reject"
    assert review.rank(rows).key.tolist() == ["b", "c", "a", "d", "e"]
    assert review.rank(rows.sample(frac=1, random_state=3)).key.tolist() == ["b", "c", "a", "d", "e"]
    refitted = rows.assign(p_accept=[0.2, 0.9, 0.1, 0.5, 0.5])
    assert review.rank(refitted).key.tolist() == ["c", "a", "b", "d", "e"]


@pytest.fixture
def gallery(tmp_path):
    """A gallery of 7 masks of one 60 x 80 photo (under ``tmp_path/raw``), qualities as listed, two of
    them decided in a decisions file already."""
    rng = np.random.default_rng(0)
    (tmp_path / "raw").mkdir()
    cv2.imwrite(str(tmp_path / "raw/a.jpg"), rng.integers(0, 255, (60, 80, 3), np.uint8))
    rows, masks = [], {}
    for k in range(7):
        box = Box(5 + k, 5, 40 + k, 45)
        m = np.zeros((60, 80), np.uint8)
        m[box.y1 + 3 : box.y2 - 3, box.x1 + 3 : box.x2 - 3] = 1
        key = f"a/{k + 1}"
        masks[key] = to_rle(m)
        rows.append(
            {
                "key": key,
                "file": "a.jpg",
                "category_name": "dog" if k % 2 else "cat",
                "source_file": "x.json",
                "source_id": str(100 + k),
                "split": "train",
                "x1": box.x1,
                "y1": box.y1,
                "x2": box.x2,
                "y2": box.y2,
                "height": 60,
                "width": 80,
                **dict.fromkeys(review.SIGNS, 0.5),
                "quality": [0.9, 0.2, 0.5, 0.05, 0.7, 0.3, 0.6][k],
            }
        )
    frame = pd.DataFrame(rows)
    saved = tmp_path / "before.csv"
    decisions.write(saved, frame, {"a/1": "reject"}, {}, "2026-01-01T00:00:00Z")
    out = tmp_path / "export/review"
    images = review.images_dir(tmp_path / "raw", out)
    ranked = review.write(frame, masks, images, out, page_size=4, decided=decisions.read(saved))
    return out, ranked, frame


def test_review_list_is_worst_first_with_the_decided_last(gallery):
    out, ranked, _ = gallery
    listed = pd.read_csv(out / "review.csv", keep_default_na=False)
    assert listed.key.tolist() == ["a/4", "a/2", "a/6", "a/3", "a/7", "a/5", "a/1"] == ranked.key.tolist()
    assert listed.decision.tolist() == [""] * 6 + ["reject"]
    data = gallery_data(out / "index.html")
    assert [it["k"] for it in data["items"]] == listed.key.tolist() and data["pageSize"] == 4
    assert data["items"][0]["f"] == "../../raw/a.jpg" and data["items"][-1]["d"] == "reject"
    assert review.summary(ranked) == {"masks": 7, "quality_median": 0.5, "below_0.5": 3, "accepted": 0, "rejected": 1}


def test_a_decisions_file_round_trips_and_bad_ones_name_file_and_line(tmp_path):
    rows = pd.DataFrame({"key": ["a/1", "a/2", "b/1"], "source_file": "x.json", "source_id": ["1", "2", "3"]})
    m = np.zeros((6, 8), np.uint8)
    m[1:4, 2:6] = 1
    path = tmp_path / "d.csv"
    decisions.write(path, rows, {"a/1": "accept", "b/1": "reject"}, {"a/1": m}, "2026-02-03T04:05:06.000Z")
    got = decisions.read(path)
    assert got.key.tolist() == ["a/1", "b/1"] and got.decision.tolist() == ["accept", "reject"]
    np.testing.assert_array_equal(decisions.masks(got)["a/1"], m)
    # A later file changes a decision: the latest time wins, whatever the file order.
    (tmp_path / "dir").mkdir()
    shutil.copy(path, tmp_path / "dir/b.csv")
    decisions.write(tmp_path / "dir/a.csv", rows, {"a/1": "reject"}, {}, "2026-03-01T00:00:00Z")
    assert decisions.read(tmp_path / "dir").set_index("key").decision.to_dict() == {"a/1": "reject", "b/1": "reject"}
    (tmp_path / "none").mkdir()
    assert decisions.read(tmp_path / "none").empty  # a directory without decisions: none
    bad = path.read_text().replace("reject", "maybe")
    (tmp_path / "bad.csv").write_text(bad)
    with pytest.raises(Exception, match=r"bad\.csv, line 3: decision 'maybe'"):
        decisions.read(tmp_path / "bad.csv")
    (tmp_path / "rle.csv").write_text(path.read_text().replace(to_rle(m), "!!"))
    with pytest.raises(Exception, match=r"rle\.csv, line 2: the accepted mask is not a COCO RLE"):
        decisions.read(tmp_path / "rle.csv")
    (tmp_path / "cols.csv").write_text("key,decision\na/1,accept\n")
    with pytest.raises(Exception, match=r"cols\.csv: not a decisions file .* no column source_file"):
        decisions.read(tmp_path / "cols.csv")
    with pytest.raises(Exception, match="no such decisions file"):
        decisions.read(tmp_path / "missing.csv")


def test_decisions_are_checked_against_the_dataset(tmp_path):
    table = pd.DataFrame(
        {"image_id": ["a", "b"], "instance_id": [1, 1], "source_file": "x.json", "source_id": ["1", "3"],
         "height": [6, 6], "width": [8, 8]}
    )  # fmt: skip
    rows = pd.DataFrame({"key": ["a/1", "b/1", "c/1"], "source_file": "x.json", "source_id": ["1", "9", "4"]})
    m = np.ones((6, 8), np.uint8)
    path = tmp_path / "d.csv"
    decisions.write(path, rows.head(1), {"a/1": "accept"}, {"a/1": m}, "2026-02-03T04:05:06Z")
    assert len(decisions.join(decisions.read(path), table)) == 1
    decisions.write(path, rows, {"b/1": "reject"}, {}, "2026-02-03T04:05:06Z")
    with pytest.raises(
        Exception, match=r"d\.csv, line 2: instance 'b/1' is x\.json #3 in this dataset, not x\.json #9"
    ):
        decisions.join(decisions.read(path), table)
    decisions.write(path, rows, {"c/1": "reject"}, {}, "2026-02-03T04:05:06Z")
    with pytest.raises(Exception, match=r"no instance 'c/1' in this dataset"):
        decisions.join(decisions.read(path), table)
    decisions.write(path, rows, {"a/1": "accept"}, {"a/1": np.ones((5, 8), np.uint8)}, "2026-02-03T04:05:06Z")
    with pytest.raises(Exception, match=r"the accepted mask is 5x8, its image 6x8"):
        decisions.join(decisions.read(path), table)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_gallery_in_chromium_keyboard_decisions_kept_across_reloads_and_saved(gallery, tmp_path):
    """The real page in headless Chromium: cards drawn worst first and paged, the class filter, the
    RLE decoded exactly as pycocotools does, accept / reject / move from the keyboard, the full
    resolution view, decisions kept across a reload, and the saved file read back by the pipeline."""
    playwright = pytest.importorskip("playwright.sync_api")
    out, _, frame = gallery
    shots = tmp_path / "shots"
    shots.mkdir()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1000, "height": 700}, accept_downloads=True)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "index.html").as_uri())
        page.wait_for_function("[...document.querySelectorAll('.card canvas')].every(c => c.dataset.drawn === '1')")
        keys = lambda: page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.key)")  # noqa: E731
        assert keys() == ["a/4", "a/2", "a/6", "a/3"]  # page 1 of 2, worst first
        assert page.text_content("#pageinfo") == "page 1 of 2"
        assert "1 of 7 reviewed: 0 accepted, 1 rejected" in page.text_content("#progress")  # from the file
        # The page's RLE decoder against pycocotools, on a mask with runs longer than 32 and odd edges.
        m = np.zeros((37, 53), np.uint8)
        m[3:30, 5:50] = 1
        m[10:12, :] = 0
        m[0, 0] = m[-1, -1] = 1
        got = page.evaluate(f"wssDecode({json.dumps(to_rle(m))}, 37, 53)")
        np.testing.assert_array_equal(np.array(got, np.uint8).reshape(37, 53), m)
        # The drawn card: the photo's pixels, the tint and the box's green.
        page.screenshot(path=str(shots / "gallery.png"))
        picture = cv2.imread(str(shots / "gallery.png"))
        assert picture.shape[:2] == (700, 1000) and picture.std() > 10
        page.keyboard.press("a")  # accept a/4, move to a/2
        page.keyboard.press("r")  # reject a/2, move to a/6
        page.keyboard.press("ArrowRight")  # to a/3
        page.keyboard.press("Enter")  # full resolution
        assert page.is_visible("#full canvas")
        size = page.eval_on_selector("#fullcanvas", "c => [c.width, c.height]")
        assert size == [80, 60]  # the image's own pixels
        page.keyboard.press("a")  # accept a/3 from the full view
        page.screenshot(path=str(shots / "full.png"))
        page.keyboard.press("Escape")
        assert not page.is_visible("#full canvas")
        classes = page.eval_on_selector_all(".card", "cs => cs.map(c => c.className)")
        assert ["accept" in classes[0], "reject" in classes[1], "accept" in classes[3]] == [True, True, True]
        page.keyboard.press("PageDown")
        assert keys() == ["a/7", "a/5", "a/1"] and page.text_content("#pageinfo") == "page 2 of 2"
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")  # to a/1, rejected in the file
        page.keyboard.press("u")
        assert "3 of 7 reviewed: 2 accepted, 1 rejected" in page.text_content("#progress")
        page.keyboard.press("r")
        page.reload()
        page.wait_for_selector(".card")
        assert "4 of 7 reviewed: 2 accepted, 2 rejected" in page.text_content("#progress")  # kept across the reload
        page.select_option("#class", "dog")
        assert keys() == ["a/4", "a/2", "a/6"] and page.text_content("#shown") == "3 shown"
        page.select_option("#class", "")
        page.select_option("#decided", "none")
        assert page.text_content("#shown") == "3 shown"
        with page.expect_download() as download:
            page.click("#save")
        saved = tmp_path / "reviews/decisions.csv"
        download.value.save_as(saved)
        browser.close()
    assert errors == []
    got = decisions.read(saved)
    assert got.set_index("key").decision.to_dict() == {
        "a/1": "reject",
        "a/2": "reject",
        "a/3": "accept",
        "a/4": "accept",
    }
    accepted = decisions.masks(got)
    m3 = from_rle(gallery_data(out / "index.html")["items"][3]["m"], 60, 80)
    np.testing.assert_array_equal(accepted["a/3"], m3)  # the mask the reviewer saw
    assert set(got[got.key == "a/2"].source_id) == {"101"}  # the user's own ids
