"""The round trip on a dataset whose masks were held back: exported masks against the truth.

    python bench/roundtrip.py --export data/export --truth coco128-coco/annotations/instances_train2017.json
    python bench/roundtrip.py --export data/export --truth coco128-seg/coco128-seg.yaml
    python bench/roundtrip.py --export data/export --instances data/instances   # a dataset with its masks

The pipeline ran on the dataset with its masks stripped (boxes only); ``--truth`` is the original
with masks, in the same format.  The masks the export wrote into the user's own files are joined
to the truth by the dataset's own ids (COCO's annotation id; YOLO's label file and line), never by
the pipeline's, and scored: mIoU per COCO size bucket, how well the review's quality finds the bad
masks (AUROC for IoU < 0.5 against the rest), and what fixing the lowest-quality 10% by hand would
gain against fixing a random 10% (a fixed mask scores 1).  Prints a table; with ``--truth``, a
second one scores the teacher's, the model's and the fused masks (the export's own COCO files)
against the same truth, so that what went into the user's files stands beside the teacher alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from wss.core.masks import from_segmentation
from wss.core.metrics import iou, size_buckets
from wss.data.readers import coco, yolo


def auroc(scores: np.ndarray, bad: np.ndarray) -> float | None:
    """Probability that a bad mask scores lower than a good one (ties count half)."""
    lo, hi = scores[bad], scores[~bad]
    if not len(lo) or not len(hi):
        return None
    return float(((lo[:, None] < hi[None, :]).sum() + 0.5 * (lo[:, None] == hi[None, :]).sum()) / (len(lo) * len(hi)))


def coco_pairs(export: Path, truth: Path) -> pd.DataFrame:
    written = next((export / "coco").rglob(truth.name))
    ours = {a["id"]: a for a in json.loads(written.read_text())["annotations"] if "wss_quality" in a}
    gt = coco.read(truth)
    rows = []
    for a in gt.annotations:
        if a.iscrowd or a.annotation_id not in ours:
            continue
        im = gt.images[a.image_id]
        h, w = im["height"], im["width"]
        mine = ours[a.annotation_id]
        true = from_segmentation(a.segmentation, h, w)
        rows.append(
            {
                "iou": iou(from_segmentation(mine["segmentation"], h, w), true),
                "area": int(true.sum()),
                "quality": mine["wss_quality"],
            }
        )
    return pd.DataFrame(rows)


def yolo_pairs(export: Path, truth: Path) -> pd.DataFrame:
    spec = next((export / "yolo").rglob(truth.name))
    back = yolo.read(spec)
    gt = yolo.read(truth)
    review = pd.read_csv(export / "review" / "review.csv", dtype={"source_id": str})
    quality = {(Path(f).name, str(i)): q for f, i, q in zip(review.source_file, review.source_id, review.quality)}
    # The export keeps the order of the lines it used and drops the others: map back by position.
    ours: dict[str, list] = {}
    for a in back.annotations:
        ours.setdefault(Path(a.source_file).name, []).append(a)
    used: dict[str, list[str]] = {}
    for name, line in sorted(quality, key=lambda t: (t[0], int(t[1]))):
        used.setdefault(name, []).append(line)
    rows = []
    by_line = {(Path(a.source_file).name, a.source_id): a for a in gt.annotations}
    for name, lines in used.items():
        for mine, line in zip(ours.get(name, []), lines):
            true_a = by_line.get((name, line))
            if true_a is None:
                continue
            im = gt.images[true_a.image_id]
            h, w = im["height"], im["width"]
            true = from_segmentation(true_a.segmentation, h, w)
            rows.append(
                {
                    "iou": iou(from_segmentation(mine.segmentation, h, w), true),
                    "area": int(true.sum()),
                    "quality": quality[(name, line)],
                }
            )
    return pd.DataFrame(rows)


def truth_masks(truth: Path) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    """The true mask of every annotation of the original dataset and its area, keyed as the export
    keys its masks: (the annotation file's name, the dataset's own id: COCO's annotation id, YOLO's
    line number)."""
    gt = yolo.read(truth) if truth.suffix in (".yaml", ".yml") else coco.read(truth)
    out = {}
    for a in gt.annotations:
        if a.iscrowd or a.segmentation is None:
            continue
        im = gt.images[a.image_id]
        mask = from_segmentation(a.segmentation, im["height"], im["width"])
        out[(Path(a.source_file).name, str(a.source_id))] = (mask, int(mask.sum()))
    return out


def kinds(export: Path, truth: Path) -> pd.DataFrame:
    """mIoU per COCO size of each kind of mask the export wrote as the pipeline's own COCO files
    (``teacher``, ``model``, ``fused``; train and val), joined to the truth by the dataset's own ids."""
    true = truth_masks(truth)
    rows = []
    for what in ("teacher", "model", "fused"):
        pairs = []
        for f in sorted(export.glob(f"{what}_*.json")):
            for a in json.loads(f.read_text())["annotations"]:
                hit = true.get((Path(a["source_file"]).name, str(a["source_id"])))
                if hit is not None:
                    h, w = hit[0].shape
                    pairs.append((iou(from_segmentation(a["segmentation"], h, w), hit[0]), hit[1]))
        if pairs:
            ious, areas = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            sizes = {s: round(float(ious[sel].mean()), 4) for s, sel in size_buckets(areas).items() if sel.any()}
            rows.append({"masks": what, "n": len(pairs), "mIoU": round(float(ious.mean()), 4), **sizes})
    return pd.DataFrame(rows)


def table_pairs(export: Path, instances: Path) -> pd.DataFrame:
    """The model's exported masks against the instance table's own masks (a dataset that has them)."""
    from wss.data.instances import by_key, gt_mask, read_table

    rows = by_key(read_table(instances))
    pairs = []
    for f in sorted(export.glob("model_*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            r = rows[a["instance"]]
            true = gt_mask(r)
            if true is not None:
                mine = from_segmentation(a["segmentation"], int(r.height), int(r.width))
                pairs.append({"iou": iou(mine, true), "area": int(true.sum()), "quality": a["quality"]})
    return pd.DataFrame(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, default=Path("data/export"))
    ap.add_argument("--truth", type=Path, help="the original COCO JSON or YOLO-seg yaml, with masks")
    ap.add_argument("--instances", type=Path, help="or: the instance table of a dataset that has its masks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.instances:
        pairs, name = table_pairs(args.export, args.instances), str(args.instances)
    elif args.truth.suffix in (".yaml", ".yml"):
        pairs, name = yolo_pairs(args.export, args.truth), args.truth.name
    else:
        pairs, name = coco_pairs(args.export, args.truth), args.truth.name
    ious, q = pairs.iou.to_numpy(), pairs.quality.to_numpy()
    bad = ious < 0.5
    k = max(1, round(0.1 * len(pairs)))
    worst = np.argsort(q, kind="stable")[:k]
    fixed = ious.copy()
    fixed[worst] = 1.0
    rng = np.random.default_rng(args.seed)
    random_gain = np.mean(
        [
            np.where(np.isin(np.arange(len(ious)), rng.choice(len(ious), k, replace=False)), 1.0, ious).mean()
            - ious.mean()
            for _ in range(200)
        ]
    )
    print(f"{len(pairs)} masks in your own files joined to the truth ({name})\n")
    print(
        "| masks | mIoU | small | medium | large | IoU < 0.5 | AUROC of quality for IoU < 0.5 |"
        " fix lowest 10% | fix random 10% |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    sizes = {s: f"{ious[sel].mean():.4f} (n={sel.sum()})" for s, sel in size_buckets(pairs.area.to_numpy()).items()}
    a = auroc(q, bad)
    print(
        f"| {len(pairs)} | {ious.mean():.4f} | {sizes['small']} | {sizes['medium']} | {sizes['large']} | "
        f"{bad.sum()} | {a:.3f} | +{fixed.mean() - ious.mean():.4f} | +{random_gain:.4f} |"
        if a is not None
        else "no bad or no good masks: AUROC undefined"
    )
    if args.truth:
        print("\nEvery kind of mask the export wrote (teacher_*, model_*, fused_*.json), joined the same way:\n")
        table = kinds(args.export, args.truth)
        print("| " + " | ".join(table.columns) + " |")
        print("|---|" + "---:|" * (len(table.columns) - 1))
        for row in table.itertuples(index=False):
            print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
