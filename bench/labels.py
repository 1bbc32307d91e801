"""Benchmark of the labels stage.

Default: serial vs parallel, GrabCut on a ROI vs the whole image.  ``--methods``: the label
sources side by side (filled box, the fallback ellipse, GrabCut, GrabCut+ with and without its
small-object and shape settings) with their mIoU against the ground truth per COCO size bucket,
their fallbacks and their cost per instance.  Both run the real stage functions
(:func:`wss.labels.build.run`, HDF5 writing included; :func:`wss.labels.boundaries.run` for HED) on a
converted dataset, every variant in the same process run, and print a table::

    python bench/labels.py [--instances data/instances] [--data data/raw] [--limit 600]
    python bench/labels.py --methods --limit 0                                      # the sample
    python bench/labels.py --methods --limit 0 --data C/raw --instances C/instances # e.g. coco128

Parallel efficiency = (serial time / parallel time) / workers.  Quote ratios, not seconds:
the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

from wss import config
from wss.data.instances import TABLE, read_table
from wss.labels import boundaries
from wss.labels import build as labels


def limited_table(instances: Path, limit: int, work: Path) -> tuple:
    """The first ``limit`` rows (0 = all) of the instance table, written as a table directory under ``work``."""
    table = read_table(instances)
    if limit:
        table = table.head(limit)
    inst = work / "instances"
    inst.mkdir()
    table.to_parquet(inst / TABLE, index=False)
    return table, inst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/raw", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--limit", type=int, default=600, help="instances to label (0 = all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--methods", action="store_true", help="compare the label sources instead of the speed variants")
    args = ap.parse_args()
    if args.methods:
        return methods(args)
    p = config.load(args.params)
    base = config.read(config.LabelsConfig, p)
    seed = config.seed(p)
    work = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    try:
        table, inst = limited_table(args.instances, args.limit, work)
        roi, whole = base.grabcut, dataclasses.replace(base.grabcut, roi_margin=-1.0)
        variants = [
            ("ROI, serial", dataclasses.replace(base, n_jobs=1, grabcut=roi)),
            (f"ROI, {args.jobs} workers", dataclasses.replace(base, n_jobs=args.jobs, grabcut=roi)),
            ("whole image, serial", dataclasses.replace(base, n_jobs=1, grabcut=whole)),
            (f"whole image, {args.jobs} workers", dataclasses.replace(base, n_jobs=args.jobs, grabcut=whole)),
        ]
        rows = []
        for name, cfg in variants:
            out = work / name.replace(" ", "_").replace(",", "")
            t0 = time.perf_counter()
            m = labels.run(args.data, inst, out, cfg, seed)
            dt = time.perf_counter() - t0
            scored = m["train"]["with_masks"] + m["val"]["with_masks"]
            miou = (
                m["train"]["miou_teacher"] * m["train"]["with_masks"]
                + (m["val"]["miou_teacher"] or 0) * m["val"]["with_masks"]
            ) / scored
            rows.append((name, m["instances"] / dt, miou, m["fallbacks"]["empty_grabcut"]))
    finally:
        shutil.rmtree(work)
    print(
        f"\n{len(table)} instances, {os.cpu_count()} cores, crop {base.crop_size}, "
        f"{base.grabcut.iterations} iterations\n"
    )
    print("| variant | instances/s | speed-up vs ROI serial | GrabCut mIoU | empty_grabcut fallbacks |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, miou, empty in rows:
        print(f"| {name} | {rate:.1f} | {rate / rows[0][1]:.2f}x | {miou:.4f} | {empty} |")
    eff_roi = rows[1][1] / rows[0][1] / args.jobs
    eff_whole = rows[3][1] / rows[2][1] / args.jobs
    print(f"\nparallel efficiency (speed-up / {args.jobs} workers): ROI {eff_roi:.2f}, whole image {eff_whole:.2f}")
    print(
        f"ROI vs whole image: {rows[0][1] / rows[2][1]:.2f}x faster, "
        f"mIoU change {100 * (rows[0][2] - rows[2][2]):+.2f} points"
    )


def pooled(m: dict, key: str, bucket: str | None = None) -> float:
    """A label metric over both splits, weighted by their instances with masks."""
    parts = [m[s][bucket] if bucket else m[s] for s in ("train", "val")]
    n = sum(p["with_masks"] for p in parts)
    return sum((p[key] or 0) * p["with_masks"] for p in parts) / n if n else float("nan")


def methods(args) -> None:
    p = config.load(args.params)
    base = config.read(config.LabelsConfig, p)
    bcfg = config.read(config.BoundariesConfig, p)
    seed = config.seed(p)
    gc = base.grabcut
    plus = dataclasses.replace(gc, method="grabcut_plus")
    r = dataclasses.replace
    variants = [
        ("GrabCut (OpenCV), whole ROI", r(gc, min_side=0, max_side=0)),
        (f"GrabCut, ROI resampled ({gc.min_side}..{gc.max_side} px)", gc),
        ("GrabCut+, no shape prior, no upsampling", r(plus, shape_prior=0.0, min_side=0)),
        ("GrabCut+, no shape prior", r(plus, shape_prior=0.0)),
        (f"GrabCut+ (params.yaml: shape prior {plus.shape_prior:g})", plus),
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    rows = []
    try:
        table, inst = limited_table(args.instances, args.limit, work)
        t0 = time.perf_counter()
        boundaries.run(args.data, inst, work / "hed", bcfg, "grabcut_plus")
        hed_s = time.perf_counter() - t0
        n_images = table.file.nunique()
        for name, g in variants:
            cfg = dataclasses.replace(base, n_jobs=args.jobs, grabcut=g)
            t0 = time.perf_counter()
            m = labels.run(args.data, inst, work / "shards", cfg, seed, work / "hed")
            dt = time.perf_counter() - t0
            fb = sum(m[s][b]["fallbacks"] for s in ("train", "val") for b in ("small", "medium", "large"))
            rows.append((name, m, fb, dt / m["instances"], g.method))
    finally:
        shutil.rmtree(work)
    print(
        f"\n{len(table)} instances in {n_images} images, {args.jobs} workers, label mIoU against the ground "
        f"truth (both splits)\n"
    )
    print("| labels | mIoU | small | medium | large | fallbacks | ms/instance (x GrabCut) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = rows[0][1]
    print(
        f"| filled box | {pooled(first, 'miou_box'):.4f} | "
        + " | ".join(f"{pooled(first, 'miou_box', b):.4f}" for b in ("small", "medium", "large"))
        + " | | |"
    )
    ref = rows[0][3]
    hed_per_inst = hed_s / len(table)
    for name, m, fb, per, method in rows:
        extra = hed_per_inst if method == "grabcut_plus" else 0.0
        cost = f"{1000 * (per + extra):.1f} ({(per + extra) / ref:.2f}x)"
        print(
            f"| {name} | {pooled(m, 'miou_teacher'):.4f} | "
            + " | ".join(f"{pooled(m, 'miou_teacher', b):.4f}" for b in ("small", "medium", "large"))
            + f" | {fb} | {cost} |"
        )
    sizes = {
        b: int(sum(rows[0][1][s][b]["with_masks"] for s in ("train", "val"))) for b in ("small", "medium", "large")
    }
    print(f"\ninstances with masks per size: {sizes}")
    print(
        f"HED: {hed_s / n_images:.2f} s per image ({1000 * hed_per_inst:.1f} ms per instance, "
        f"included in GrabCut+'s cost)"
    )


if __name__ == "__main__":
    main()
