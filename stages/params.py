"""Reading ``params.yaml`` so that every value reaches the code with the type a user meant."""

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


def loads(text: str) -> dict[str, Any]:
    """Parse params YAML text; numbers such as ``1e-06`` come back as ``float``."""
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    return data or {}


def load(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the whole params file."""
    return loads(Path(path).read_text())


def typed(cls: type, section: dict[str, Any], where: str, **fixed: Any) -> Any:
    """Build the dataclass ``cls`` from a params section, casting each value to its field's type.

    Field types (``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``, ``tuple[float, ...]``)
    are read from the annotations; ``fixed`` fields are passed through.  Unknown keys and values
    of the wrong kind stop the stage with a message naming the key (``where`` is its section).
    """
    kinds = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in fixed}
    unknown = set(section) - set(kinds)
    if unknown:
        raise SystemExit(f"params.yaml: unknown keys under {where}: {sorted(unknown)}")
    return cls(**{k: _cast(_kind(kinds[k]), v, f"{where}.{k}") for k, v in section.items()}, **fixed)


def _kind(annotation: Any) -> str:
    """``"int"``, ``"tuple[float, ...]"``...: the annotation as text, whether postponed or not."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _cast(kind: str, value: Any, name: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise SystemExit(f"params.yaml: {name} must be true or false, not {value!r}")
        return value
    try:
        if kind.startswith("tuple"):
            item = int if "int" in kind else float
            return tuple(item(v) for v in (value or ()))
        return {"int": int, "float": float, "str": str}[kind](value)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"params.yaml: {name} must be {kind}, not {value!r}") from exc
