"""Benchmark of the labels stage: serial vs parallel, GrabCut on a ROI vs the whole image.

Runs the real stage function (:func:`wss.labels.run`, HDF5 writing included) on the
converted dataset, every variant in the same process run, and prints a table::

    python bench/labels.py [--instances data/instances] [--data data/raw] [--limit 600]

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

from wss import labels, params
from wss.instances import TABLE, read_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", default="data/raw", type=Path)
    ap.add_argument("--instances", default="data/instances", type=Path)
    ap.add_argument("--limit", type=int, default=600, help="instances to label (0 = all)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    p = params.load(args.params)
    base = labels.LabelsConfig.from_params(params.section(p, "labels"))
    seed = params.seed(p)
    work = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    try:
        table = read_table(args.instances)
        if args.limit:
            table = table.head(args.limit)
        inst = work / "instances"
        inst.mkdir()
        table.to_parquet(inst / TABLE, index=False)
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
            miou = (m["train"]["miou_grabcut"] * m["train"]["with_masks"]
                    + (m["val"]["miou_grabcut"] or 0) * m["val"]["with_masks"]) / scored  # fmt: skip
            rows.append((name, m["instances"] / dt, miou, m["fallbacks"]["empty_grabcut"]))
    finally:
        shutil.rmtree(work)
    print(f"\n{len(table)} instances, {os.cpu_count()} cores, crop {base.crop_size}, {base.grabcut.iterations} iterations\n")
    print(f"| variant | instances/s | speed-up vs ROI serial | GrabCut mIoU | empty_grabcut fallbacks |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, miou, empty in rows:
        print(f"| {name} | {rate:.1f} | {rate / rows[0][1]:.2f}x | {miou:.4f} | {empty} |")
    eff_roi = rows[1][1] / rows[0][1] / args.jobs
    eff_whole = rows[3][1] / rows[2][1] / args.jobs
    print(f"\nparallel efficiency (speed-up / {args.jobs} workers): ROI {eff_roi:.2f}, whole image {eff_whole:.2f}")
    print(f"ROI vs whole image: {rows[0][1] / rows[2][1]:.2f}x faster, mIoU change {100 * (rows[0][2] - rows[2][2]):+.2f} points")


if __name__ == "__main__":
    main()
