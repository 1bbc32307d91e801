"""Reading ``params.yaml``, the one place where defaults live.

Each stage's settings are a frozen dataclass **without defaults**: :func:`typed` builds it from its
params section, requires every key, refuses unknown ones and casts each value to the field's
type, so a value reaches the code with the type a user meant.  Range checks (:func:`require`)
run in each config's ``validate`` before the stage does any work.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

# PyYAML follows YAML 1.1, where a float needs a dot: ``1e-06`` (what ``dvc exp run -S lr=1e-6``
# writes back) would load as the *string* "1e-06".  DVC itself reads YAML 1.2, so we add the
# YAML 1.2 core-schema float pattern to keep both readers in agreement.
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


class ParamsError(SystemExit):
    """A params value is missing, unknown, of the wrong type or out of range; the message names it."""

    def __init__(self, message: str):
        super().__init__(f"params.yaml: {message}")


def loads(text: str) -> dict[str, Any]:
    """Parse params YAML text; numbers such as ``1e-06`` come back as ``float``."""
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    return data or {}


def load(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the whole params file."""
    return loads(Path(path).read_text())


def section(p: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The section ``dotted`` (``"train"``, ``"data.sample"``) of the loaded params; an error names it if absent."""
    node: Any = p
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"missing section {dotted}")
        node = node[part]
    if not isinstance(node, dict):
        raise ParamsError(f"{dotted} must be a mapping of keys to values")
    return node


def seed(p: dict[str, Any]) -> int:
    """``base.seed``, the one seed every stage derives its randomness from."""
    value = section(p, "base").get("seed")
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, "base.seed", "be an integer >= 0",
            value)
    return int(value)


def typed(cls: type, values: dict[str, Any], where: str, **fixed: Any) -> Any:
    """Build the dataclass ``cls`` from a params section, casting each value to its field's type.

    Field types (``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``, ``tuple[float, ...]``)
    are read from the annotations; ``fixed`` fields are passed through.  Every other field must be
    in ``values`` and nothing else may be: a missing or unknown key stops the stage with a message
    naming it (``where`` is its section).  The config's ``validate()``, if it has one, runs last.
    """
    kinds = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in fixed}
    unknown = set(values) - set(kinds)
    if unknown:
        raise ParamsError(f"unknown keys under {where}: {sorted(unknown)}")
    missing = set(kinds) - set(values)
    if missing:
        raise ParamsError(f"missing keys under {where}: {sorted(f'{where}.{k}' for k in missing)}")
    cfg = cls(**{k: _cast(_kind(kinds[k]), v, f"{where}.{k}") for k, v in values.items()}, **fixed)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def require(ok: bool, name: str, what: str, value: Any) -> None:
    """Stop with ``params.yaml: <name> must <what>, not <value>`` unless ``ok``."""
    if not ok:
        raise ParamsError(f"{name} must {what}, not {value!r}")


def _kind(annotation: Any) -> str:
    """``"int"``, ``"tuple[float, ...]"``...: the annotation as text, whether postponed or not."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _cast(kind: str, value: Any, name: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParamsError(f"{name} must be true or false, not {value!r}")
        return value
    try:
        if kind.startswith("tuple"):
            item = int if "int" in kind else float
            if isinstance(value, (str, bytes, dict)):
                raise TypeError
            return tuple(_number(item, v) for v in (value or ()))
        if kind in ("int", "float"):
            return _number(int if kind == "int" else float, value)
        return {"str": str}[kind](value)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{name} must be {kind}, not {value!r}") from exc


def _number(kind: type, value: Any) -> int | float:
    """``value`` as ``kind``; a bool, or a float with a fraction where an int is meant, is refused."""
    if isinstance(value, bool):
        raise TypeError(value)
    if kind is int:
        as_float = float(value)
        if as_float != int(as_float):
            raise ValueError(value)
        return int(as_float)
    return float(value)
