"""Benchmark of the whole default pipeline: the wall time of every stage of ``dvc.yaml``, run as
``dvc repro`` runs them (the same commands, fresh processes, in a scratch copy of the project),
once per oneDNN instruction-set cap, with the train stage's images/s and the val mIoU::

    python bench/pipeline.py [--isa native AVX512_CORE_BF16 AVX512_CORE AVX2] [--params params.yaml]

``ONEDNN_MAX_CPU_ISA`` caps what oneDNN uses, so one machine measures what CPUs without AMX
(``AVX512_CORE_BF16``), without bfloat16 (``AVX512_CORE``) or without AVX-512 (``AVX2``) do;
``train.precision: auto`` follows the cap (:func:`wss.net.training.cpu_has_bf16`).  The stages
before ``surgery`` use no oneDNN (GrabCut is OpenCV's; HED runs only for ``grabcut_plus``): they
run once, and their time is counted in every column.  Ratios are against the first cap.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("stages", "wss", "datasets", "reviews", "dvc.yaml", "params.yaml")
ONEDNN = ("surgery", "train", "evaluate", "export")  # the stages whose time depends on the cap


def stage_commands(project: Path) -> dict[str, str]:
    """``dvc.yaml``'s stages, in order, and their commands, with ``${section.key}`` filled in from
    ``params.yaml`` as DVC does."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((project / "params.yaml").read_text())

    def value(found: re.Match) -> str:
        v = params
        for part in found.group(1).split("."):
            v = v[part]
        return str(v)

    return {name: re.sub(r"\$\{([\w.]+)\}", value, " ".join(s["cmd"].split())) for name, s in stages.items()}


def run_stage(cmd: str, project: Path, env: dict, log: Path | None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, shell=True, cwd=project, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{cmd} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    if log:
        with open(log, "a") as f:
            f.write(f"# {env.get('ONEDNN_MAX_CPU_ISA', 'native')}: {cmd}\n{res.stdout}")
    return time.perf_counter() - t0


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", nargs="*", default=["native", "AVX512_CORE_BF16", "AVX512_CORE", "AVX2"])
    ap.add_argument("--params", default=ROOT / "params.yaml", type=Path)
    ap.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temporary one)")
    ap.add_argument("--log", type=Path, help="append what each stage printed to this file")
    args = ap.parse_args()
    project = args.keep or Path(tempfile.mkdtemp(prefix="wss-bench-"))
    project.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src, dst = ROOT / name, project / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dst)
    shutil.copy(args.params, project / "params.yaml")
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(project)}
    base.pop("ONEDNN_MAX_CPU_ISA", None)
    commands = stage_commands(project)
    shared = {name: run_stage(cmd, project, base, args.log) for name, cmd in commands.items() if name not in ONEDNN}
    columns = {}
    for isa in args.isa:
        env = dict(base) if isa == "native" else {**base, "ONEDNN_MAX_CPU_ISA": isa}
        shutil.rmtree(project / "models", ignore_errors=True)
        times = {name: run_stage(commands[name], project, env, args.log) for name in ONEDNN}
        train = json.loads((project / "metrics/train.json").read_text())
        ev = json.loads((project / "metrics/eval.json").read_text())
        columns[isa] = {**shared, **times, "precision": train["precision"], "images_per_s": train["images_per_s"]}
        columns[isa]["miou"] = ev["miou"]
        columns[isa]["total"] = sum(columns[isa][n] for n in commands)
        print(f"{isa}: {columns[isa]['total']:.0f} s, val mIoU {ev['miou']}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(project)

    first = columns[args.isa[0]]
    print(f"\n{cpu_name()}, {os.cpu_count()} cores; ONEDNN_MAX_CPU_ISA per column; seconds (ratio to {args.isa[0]})\n")
    print("| stage | " + " | ".join(args.isa) + " |")
    print("|---|" + "---:|" * len(args.isa))
    for name in [*commands, "total"]:
        cells = [
            f"{c[name]:.0f} s ({c[name] / first[name]:.2f}x)" if first[name] else f"{c[name]:.0f} s"
            for c in columns.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| total, minutes | " + " | ".join(f"{c['total'] / 60:.1f}" for c in columns.values()) + " |")
    print("| train precision | " + " | ".join(c["precision"] for c in columns.values()) + " |")
    print("| train images/s | " + " | ".join(f"{c['images_per_s']:.1f}" for c in columns.values()) + " |")
    print("| val mIoU | " + " | ".join(f"{c['miou']:.4f}" for c in columns.values()) + " |")


if __name__ == "__main__":
    main()
