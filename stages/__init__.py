"""The DVC stages of ``dvc.yaml``, one thin module each, plus the ``predict`` command.

Each reads its params section and paths, calls the :mod:`wss` library and writes its outputs.
They are the doors: the library raises :class:`wss.WssError`, and :func:`run` turns it into one
line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from wss.errors import WssError

# Quiet TensorFlow's C++ logs before any stage imports it.  Level 3, because on a CPU machine even
# level 2 prints an ERROR line ("failed call to cuInit") at the first device use, which is noise.
# Python exceptions are unaffected; TF_CPP_MIN_LOG_LEVEL=0 in the environment shows everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr silenced for the duration of the import.

    On a machine without a GPU, TF 2.21 prints CUDA probing notices from C++ during import
    (through absl, before absl is initialised), which ``TF_CPP_MIN_LOG_LEVEL`` does not reach
    (tensorflow#100442).  A failing import still raises, with its traceback, after stderr is back.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        import tensorflow

        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main: Callable[[], int]) -> int:
    """Call a stage's ``main``; a :class:`~wss.WssError` becomes ``<stage>: <message>`` on stderr and
    exit code 2.  Any other exception is a bug and keeps its traceback."""
    module = main.__module__
    if module == "__main__":  # python -m stages.x: the module's own name is in its spec
        spec = sys.modules["__main__"].__spec__
        module = spec.name if spec else Path(sys.argv[0]).stem
    name = module.rpartition(".")[2]
    try:
        return main()
    except WssError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
