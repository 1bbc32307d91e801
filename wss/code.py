"""Which project source files a module runs: the code half of a fingerprint.

A stage's output depends on its params, its inputs and its code.  :func:`closure` finds the code:
the project modules a module imports, transitively, read from the source with :mod:`ast` (so
imports inside functions count too, and nothing is executed).  ``labels`` hashes the closure of
its stage into every shard, ``train`` into its checkpoints: a code change rebuilds them, a
comment included, because a fingerprint cannot tell a comment from a fix.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wss", "stages")


def _file(module: str) -> Path | None:
    """The source file of a project module (``wss.model`` -> ``wss/model.py``), or ``None``."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Module names imported by the file ``path`` (the module ``module``), with ``from X import y``
    giving both ``X`` and ``X.y`` (``y`` may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{prefix}.{base}" if base else prefix
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@cache
def closure(module: str) -> tuple[Path, ...]:
    """Project source files that ``module`` runs: itself, what it imports, transitively, and the
    ``__init__.py`` of every package on the way; sorted, relative to the repository root."""
    todo, seen = [module], set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = _file(".".join(parts[:i]))
            if path is not None and path not in files:
                files.add(path)
                todo.append(".".join(parts[:i]))
        path = _file(name)
        if path is not None:
            todo.extend(_imports(path, name))
    return tuple(sorted(p.relative_to(ROOT) for p in files))


def digest(module: str) -> str:
    """SHA-256 over the paths and bytes of :func:`closure` of ``module``."""
    h = hashlib.sha256()
    for rel in closure(module):
        h.update(str(rel).encode() + b"\x00" + (ROOT / rel).read_bytes() + b"\x00")
    return h.hexdigest()
