"""The training loop, on detectron2's ``engine/train_loop.py``: the loop runs steps, hooks do the rest.

:class:`TrainLoop` only iterates: ``before_train()``, then for each batch ``before_step();
run_step(); after_step()``, then ``after_train()``.  Everything else (resuming from and saving
checkpoints, the lr schedule, the loss log, DVCLive, the NaN guard, the progress bar, saving the
model) is a :class:`Hook` in :mod:`wss.net.hooks`, called in the order given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class Hook:
    """Side work around the loop's steps; each method sees the :class:`TrainLoop` and its state."""

    def before_train(self, loop: TrainLoop) -> None:
        pass

    def before_step(self, loop: TrainLoop) -> None:
        pass

    def after_step(self, loop: TrainLoop) -> None:
        pass

    def after_train(self, loop: TrainLoop) -> None:
        pass


class TrainLoop:
    """``total`` optimizer updates of ``run_step`` over ``batches(start)``.

    ``run_step(x, y)`` makes one update and returns its losses (``{"loss": ..., "loss_fused": ...}``,
    Python floats).  ``batches(start)`` is the stream of updates from update ``start`` on, which a
    hook that resumes sets in ``before_train`` (default 0).  State the hooks read and write:

    - ``step``: the index of the update being made (0-based), so ``step + 1`` are done in ``after_step``;
      after the loop, the number done;
    - ``losses``: what the last ``run_step`` returned;
    - ``lr``, ``side_weight``: what the schedule set for this update;
    - ``logged``: the loss-log row written at this step, or ``None``;
    - ``history``: the loss-log rows so far; ``seconds``: time spent in the steps of this run.
    """

    def __init__(
        self,
        run_step: Callable[[Any, Any], dict[str, float]],
        batches: Callable[[int], Iterable],
        total: int,
        hooks: Sequence[Hook],
    ) -> None:
        self.run_step, self.batches, self.total, self.hooks = run_step, batches, total, list(hooks)
        self.start = self.step = 0
        self.losses: dict[str, float] = {}
        self.lr = self.side_weight = 0.0
        self.logged: dict | None = None
        self.history: list[dict] = []
        self.seconds = 0.0

    def train(self) -> None:
        for h in self.hooks:
            h.before_train(self)
        self.step = self.start
        t0 = time.perf_counter()
        for x, y in self.batches(self.start):
            self.logged = None
            for h in self.hooks:
                h.before_step(self)
            self.losses = self.run_step(x, y)
            for h in self.hooks:
                h.after_step(self)
            self.step += 1
        self.seconds = time.perf_counter() - t0
        for h in self.hooks:
            h.after_train(self)
