"""Rewrite the code deps of every stage in ``dvc.yaml`` from the import walk.

    python tools/sync_deps.py          # rewrite dvc.yaml in place
    python tools/sync_deps.py --check  # exit 1 if it is out of date

A stage's ``.py`` deps are exactly :func:`wss.core.provenance.closure` of its module (what it
imports, transitively); its data deps, params and outs are left as written.  The layout test
checks the result against an independent walk (the standard library's ``modulefinder``).
"""

from __future__ import annotations

import argparse
import re
import sys

import yaml

from wss.core import provenance

DVC_YAML = provenance.ROOT / "dvc.yaml"


def stage_module(cmd: str) -> str:
    words = cmd.split()
    return words[words.index("-m") + 1]


def synced(text: str) -> str:
    stages = yaml.safe_load(text)["stages"]
    out, stage = [], None
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):\s*$", line)
        if m and m.group(1) in stages:
            stage = m.group(1)
        if stage and re.match(r"^    deps:\s*$", line):
            out.append(line)
            i += 1
            data = []
            while i < len(lines) and re.match(r"^      - ", lines[i]):
                dep = lines[i].split("- ", 1)[1].strip()
                if not dep.endswith(".py"):
                    data.append(lines[i])
                i += 1
            code = provenance.closure(stage_module(stages[stage]["cmd"]))
            out += [f"      - {p}\n" for p in code] + data
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = DVC_YAML.read_text()
    new = synced(text)
    if args.check:
        if new != text:
            print("dvc.yaml code deps are out of date: run python tools/sync_deps.py", file=sys.stderr)
            return 1
        return 0
    DVC_YAML.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
