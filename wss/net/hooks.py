"""The side work of training, as hooks of :class:`wss.net.loop.TrainLoop`.

Called in the order ``train`` lists them: :class:`Checkpointer` (resume, then save every
``checkpoint_every`` updates and at the end), :class:`Schedule` (lr and side-output weight),
:class:`NanGuard`, :class:`History` (the loss log next to the checkpoints), :class:`Live`
(DVCLive), :class:`Progress` (the bar) and :class:`SaveModel` (the model and its sidecar).
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from wss.config import TrainConfig
from wss.core import atomic, resumable
from wss.errors import WssError
from wss.net.loop import Hook, TrainLoop

HISTORY = "history.tsv"  # the loss log, next to the checkpoints
LOGGED = ("loss", "loss_fused", "lr", "side_weight")


class NonFiniteLoss(WssError):
    pass


def piecewise(step: int, boundaries: tuple[int, ...], values: tuple[float, ...]) -> float:
    """``values[i]`` for the ``i``-th interval of ``boundaries`` that ``step`` falls in."""
    return float(values[sum(step >= b for b in boundaries)])


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The factor of ``train.lr`` at update ``step`` (0-based): the piecewise factor
    (``lr_boundaries``/``lr_factors``), times a linear ramp over the first ``lr_warmup`` updates,
    times, with ``lr_decay: cosine``, a half cosine from 1 after the warm-up to 0 at ``steps``
    (one cycle: fewer updates reach the loss that a constant lr needs many more for)."""
    factor = piecewise(step, cfg.lr_boundaries, cfg.lr_factors)
    if step < cfg.lr_warmup:
        factor *= (step + 1) / cfg.lr_warmup
    elif cfg.lr_decay == "cosine":
        span = max(cfg.steps - cfg.lr_warmup, 1)
        factor *= 0.5 * (1 + math.cos(math.pi * min(step - cfg.lr_warmup, span) / span))
    return factor


class Checkpointer(Hook):
    """Resumes from the newest checkpoint at or below ``steps`` in ``directory`` when it was made
    for ``fingerprint`` (:mod:`wss.core.resumable`; otherwise the directory starts empty), saves
    every ``every`` updates, keeping ``kept``, and after the last update.  The entries of
    ``directory`` named in ``keep`` are not its to clear (:data:`wss.net.training.REVIEWED_SHARDS`)."""

    def __init__(
        self, checkpoint, step_var, directory: Path, fingerprint: str, every: int, kept: int, keep: tuple[str, ...] = ()
    ) -> None:
        self.ckpt, self.step_var, self.directory = checkpoint, step_var, Path(directory)
        self.fingerprint, self.every, self.kept, self.keep = fingerprint, every, kept, keep
        self.resumed = False

    def _manager(self):
        import tensorflow as tf

        return tf.train.CheckpointManager(self.ckpt, str(self.directory), max_to_keep=self.kept)

    def before_train(self, loop: TrainLoop) -> None:
        reusable = resumable.start(self.directory, self.fingerprint, keep=self.keep)
        self.manager = self._manager()
        usable = [c for c in self.manager.checkpoints if int(c.rsplit("-", 1)[1]) <= loop.total]
        self.resumed = reusable and bool(usable)
        if self.resumed:
            self.ckpt.restore(usable[-1]).assert_existing_objects_matched()
            print(f"train: resuming from {usable[-1]} at step {int(self.step_var.numpy())}")
        elif reusable:  # made for these weights, but every checkpoint lies beyond the new total
            resumable.clear(self.directory, self.keep)
            self.manager = self._manager()
        loop.start = int(self.step_var.numpy())

    def after_step(self, loop: TrainLoop) -> None:
        if (loop.step + 1) % self.every == 0:
            self.manager.save(checkpoint_number=loop.step + 1)

    def after_train(self, loop: TrainLoop) -> None:
        # The checkpoint keeps the raw weights, so that raising train.steps resumes the same trajectory.
        # (Not again when the loop just saved this step, or there was nothing left to train.)
        last = int(self.step_var.numpy())
        if not (self.manager.latest_checkpoint or "").endswith(f"-{last}"):
            self.manager.save(checkpoint_number=last)


class Schedule(Hook):
    """Sets the lr (``train.lr`` times :func:`lr_factor`) and the
    side-output loss weight (``side_boundaries``/``side_weights``) of each update."""

    def __init__(self, lr_var, side_var, cfg: TrainConfig) -> None:
        self.lr_var, self.side_var, self.cfg = lr_var, side_var, cfg

    def before_step(self, loop: TrainLoop) -> None:
        c = self.cfg
        self.lr_var.assign(c.lr * lr_factor(loop.step, c))
        self.side_var.assign(piecewise(loop.step, c.side_boundaries, c.side_weights))
        loop.lr, loop.side_weight = float(self.lr_var.numpy()), float(self.side_var.numpy())


class NanGuard(Hook):
    """Stops the run at the first update whose loss is NaN or Inf, before it is checkpointed."""

    def after_step(self, loop: TrainLoop) -> None:
        bad = [v for v in loop.losses.values() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLoss(
                f"loss is {bad[0]} at step {loop.step} (lr {loop.lr:g}); the last good checkpoint is kept. "
                "Lower train.lr or check the inputs."
            )


class History(Hook):
    """The loss log at ``path`` (tab-separated, one row every ``every`` updates and at the last), kept
    with the checkpoints so that a resumed run continues it: the mean loss since the last row, the
    last fused loss, the lr and the side weight."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = Path(path), every
        self.window: list[float] = []

    def before_train(self, loop: TrainLoop) -> None:
        loop.history = read_history(self.path, loop.start)
        write_history(self.path, loop.history)

    def after_step(self, loop: TrainLoop) -> None:
        self.window.append(loop.losses["loss"])
        done = loop.step + 1
        if done % self.every and done != loop.total:
            return
        row = {
            "step": done,
            "loss": float(np.mean(self.window)),
            "loss_fused": loop.losses["loss_fused"],
            "lr": loop.lr,
            "side_weight": loop.side_weight,
        }
        with open(self.path, "a") as log:
            log.write(_history_line(row))
        loop.history.append(row)
        loop.logged = row
        self.window = []


def read_history(path: Path, upto: int) -> list[dict]:
    """Rows of the loss log with ``step <= upto`` (a torn last line from a kill is dropped)."""
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                try:
                    parsed = {"step": int(row["step"]), **{k: float(row[k]) for k in LOGGED}}
                except (TypeError, ValueError, KeyError):
                    continue
                if parsed["step"] <= upto:
                    rows.append(parsed)
    return rows


def write_history(path: Path, rows: list[dict]) -> None:
    atomic.write_text(path, "\t".join(("step",) + LOGGED) + "\n" + "".join(_history_line(r) for r in rows))


def _history_line(row: dict) -> str:
    return "\t".join([str(row["step"])] + [repr(row[k]) for k in LOGGED]) + "\n"


class Live(Hook):
    """DVCLive's curves in ``directory`` (made afresh, with the rows a resumed run already logged)
    and its ``params``."""

    def __init__(self, directory: Path, params: dict[str, Any]) -> None:
        self.directory, self.params = Path(directory), params

    def before_train(self, loop: TrainLoop) -> None:
        from dvclive import Live as DVCLive

        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.live = DVCLive(str(self.directory), dvcyaml=False, resume=False, save_dvc_exp=False, report=None)
        self.live.log_params(self.params)
        for row in loop.history:
            self._log(row)

    def after_step(self, loop: TrainLoop) -> None:
        if loop.logged:
            self._log(loop.logged)

    def after_train(self, loop: TrainLoop) -> None:
        self.live.end()

    def _log(self, row: dict) -> None:
        self.live.step = row["step"]
        for k in LOGGED:
            self.live.log_metric(k, row[k])
        self.live.next_step()


class Progress(Hook):
    """A tqdm bar over the updates, with the logged loss."""

    def before_train(self, loop: TrainLoop) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=loop.total, initial=loop.start, desc="train", unit="step")

    def after_step(self, loop: TrainLoop) -> None:
        self.bar.update(1)
        if loop.logged:
            self.bar.set_postfix(loss=f"{loop.logged['loss']:.4f}")

    def after_train(self, loop: TrainLoop) -> None:
        self.bar.close()


class SaveModel(Hook):
    """After the last update: the weights' moving average (``train.ema``), as a float32 one-device
    network (``plain``, for a mixed-precision or replicated one), saved to ``out`` with the ``sidecar``
    that says how to crop for it (:func:`wss.net.model.sidecar`)."""

    def __init__(self, net, opt, out: Path, sidecar: dict[str, Any], plain=None) -> None:
        self.net, self.opt, self.out, self.sidecar, self.plain = net, opt, Path(out), sidecar, plain

    def after_train(self, loop: TrainLoop) -> None:
        from wss.net import model

        self.opt.finalize_variable_values(self.net.trainable_variables)  # the weight average, when train.ema > 0
        net = self.plain(self.net) if self.plain else self.net
        with atomic.target(self.out) as tmp:
            net.save(str(tmp))
        atomic.write_json(model.sidecar(self.out), self.sidecar)
