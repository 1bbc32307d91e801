"""Reading ``params.yaml`` so that every value reaches the code with the type a user meant."""

from __future__ import annotations

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
