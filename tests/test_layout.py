"""The layout is the architecture: thin stages over the ``wss`` library, and a ``dvc.yaml`` whose
code deps are exactly what each stage runs, found by an import walk independent of the library's."""

from __future__ import annotations

import ast
import modulefinder
from pathlib import Path

import pytest
import yaml

from wss import code, labels, training
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_module(cmd: str) -> str:
    words = cmd.split()
    return words[words.index("-m") + 1]


def project_files(module: str) -> set[str]:
    """Project source files that ``module`` imports, transitively, by the standard library's own
    bytecode-level import finder (function-level imports included)."""
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])
    finder.run_script(str(ROOT / (module.replace(".", "/") + ".py")))
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return {str(f.relative_to(ROOT)) for f in files if f.is_relative_to(ROOT)} | {"stages/__init__.py"}


@pytest.mark.parametrize("stage", sorted(DVC))
def test_dvc_yaml_lists_exactly_the_code_each_stage_runs(stage):
    spec = DVC[stage]
    declared = {d for d in spec["deps"] if d.endswith(".py")}
    runs = project_files(stage_module(spec["cmd"]))
    assert not runs - declared, f"dvc.yaml stage {stage} misses {sorted(runs - declared)}"
    assert not declared - runs, f"dvc.yaml stage {stage} lists {sorted(declared - runs)}, which it does not run"


@pytest.mark.parametrize("module", [labels.STAGE, training.STAGE])
def test_fingerprinted_code_is_what_the_stage_runs(module):
    assert {str(p) for p in code.closure(module)} == project_files(module)


def test_stages_are_thin_doors_and_the_logic_lives_in_wss():
    stage_files = {p.stem for p in (ROOT / "stages").glob("*.py")} - {"__init__"}
    assert stage_files == {stage_module(s["cmd"]).split(".")[1] for s in DVC.values()} | {"predict"}
    for path in (ROOT / "stages").glob("*.py"):
        tree = ast.parse(path.read_text())
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], f"{path.name} defines a class"
        assert len(path.read_text().splitlines()) < 100, f"{path.name} is not thin"
        assert "main" in defs or path.name == "__init__.py"
    for name in ("boxes", "masks", "sbd", "instances", "grabcut", "shards", "model", "inputs", "metrics", "draw",
                 "fetch", "atomic", "params", "sample"):  # fmt: skip
        assert (ROOT / "wss" / f"{name}.py").is_file(), name


def test_bench_imports_the_installed_package_without_path_hacks():
    for path in (ROOT / "bench").glob("*.py"):
        assert "sys.path" not in path.read_text(), path.name
