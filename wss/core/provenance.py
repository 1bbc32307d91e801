"""Fingerprints: what made a result, hashed.

A stage's output depends on its params, its inputs and its code.  :func:`digest` is the one hash
of params and bytes.  :func:`closure` finds the code: the modules of this package that a module
imports, transitively, read from the source with :mod:`ast` (so imports inside functions count
too, and nothing is executed).  :func:`code_digest` hashes that code *as parsed*, without
docstrings, comments or layout, together with the versions of the packages that compute the
result.  Shards, HED maps and checkpoints carry it (:mod:`wss.core.resumable`), so editing a
comment or a docstring reuses them, while changing a constant or an expression, or upgrading
OpenCV or TensorFlow, rebuilds them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = __name__.split(".")[0]  # the package whose code is fingerprinted: this one
# Modules whose effect a fingerprint holds as data, not code: the params as read (each output's
# fingerprint carries the values config.read made, wss.config.content_fields) and the error
# messages.  A new parameter, or a reworded message, then reuses every shard and checkpoint.
AS_DATA = (f"{PACKAGE}/config.py", f"{PACKAGE}/errors.py")
ROOT = Path(__file__).resolve().parents[2]


def digest(*parts: Any) -> str:
    """SHA-256 over JSON-able parts and raw ``bytes``, in order."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file(module: str) -> Path | None:
    """The source file of a module of this package (``wss.net.model`` -> ``wss/net/model.py``), or ``None``."""
    if module.split(".")[0] != PACKAGE:
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
    """Source files of this package that ``module`` runs: itself, what it imports, transitively, and the
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


# Distribution names to try for a package that ships under several (the first one installed wins).
DISTRIBUTIONS = {
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python")
}


def versions(*packages: str) -> dict[str, str]:
    """``{package: installed version}`` ("absent" if it is not installed), read from the packages'
    metadata without importing them."""
    found = {}
    for name in packages:
        found[name] = "absent"
        for dist in DISTRIBUTIONS.get(name, (name,)):
            try:
                found[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def normalised_source(path: Path) -> str:
    """The code of ``path`` as Python parses it: the AST without docstrings and without positions,
    so comments, docstrings, blank lines and line breaks do not change it, and every token that
    runs does."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return ast.dump(_without_docstrings(tree), include_attributes=False)


def code_digest(module: str, packages: tuple[str, ...] = ()) -> str:
    """SHA-256 over the paths and :func:`normalised_source` of :func:`closure` of ``module`` (but
    :data:`AS_DATA`), the Python version (the AST's dialect) and the :func:`versions` of ``packages``."""
    h = hashlib.sha256(f"python {sys.version_info[0]}.{sys.version_info[1]}\x00".encode())
    for rel in closure(module):
        if rel.as_posix() in AS_DATA:
            continue
        h.update(str(rel).encode() + b"\x00" + normalised_source(ROOT / rel).encode() + b"\x00")
    for name, version in sorted(versions(*packages).items()):
        h.update(f"{name}=={version}\x00".encode())
    return h.hexdigest()
