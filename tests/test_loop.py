"""The training loop and its hooks, with a fake step: the order of calls, the guard, the log."""

from __future__ import annotations

import math

import pytest

from wss.net import hooks
from wss.net.loop import Hook, TrainLoop


class Recorder(Hook):
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def before_train(self, loop):
        self.calls.append(("before_train", loop.start))

    def before_step(self, loop):
        self.calls.append(("before_step", loop.step))

    def after_step(self, loop):
        self.calls.append(("after_step", loop.step, loop.losses["loss"]))

    def after_train(self, loop):
        self.calls.append(("after_train", loop.step))


class Resume(Hook):
    """Sets the start, as the checkpointer does."""

    def before_train(self, loop):
        loop.start = 2


def fake_step(losses):
    it = iter(losses)
    return lambda x, y: {"loss": next(it), "loss_fused": 0.5}


def test_the_loop_runs_hooks_around_each_step_from_the_start_a_hook_sets():
    calls = []
    seen_start = []

    def batches(start):
        seen_start.append(start)
        return [(None, None)] * (4 - start)

    loop = TrainLoop(fake_step([1.0, 2.0]), batches, 4, [Resume(), Recorder(calls)])
    loop.train()
    assert seen_start == [2]
    assert calls == [
        ("before_train", 2),
        ("before_step", 2),
        ("after_step", 2, 1.0),
        ("before_step", 3),
        ("after_step", 3, 2.0),
        ("after_train", 4),
    ]
    assert loop.step == 4


def test_the_nan_guard_stops_at_the_step_before_later_hooks_see_it():
    calls = []
    loop = TrainLoop(
        fake_step([1.0, math.nan, 3.0]), lambda s: [(None, None)] * 3, 3, [hooks.NanGuard(), Recorder(calls)]
    )
    with pytest.raises(hooks.NonFiniteLoss, match=r"^loss is nan at step 1 \(lr 0\)"):
        loop.train()
    assert [c for c in calls if c[0] == "after_step"] == [("after_step", 0, 1.0)]


def test_history_logs_every_n_and_the_last_step_and_a_resume_keeps_the_rows_before_it(tmp_path):
    path = tmp_path / hooks.HISTORY
    loop = TrainLoop(fake_step([1.0, 3.0, 5.0, 7.0, 9.0]), lambda s: [(None, None)] * 5, 5, [hooks.History(path, 2)])
    loop.train()
    assert [(r["step"], r["loss"]) for r in loop.history] == [(2, 2.0), (4, 6.0), (5, 9.0)]
    assert hooks.read_history(path, 5) == loop.history
    # A run resumed at step 4 keeps the rows up to it and drops the rest (written after the checkpoint).
    again = TrainLoop(fake_step([11.0]), lambda s: [(None, None)] * (5 - s), 5, [Resume4(), hooks.History(path, 2)])
    again.train()
    assert [(r["step"], r["loss"]) for r in hooks.read_history(path, 5)] == [(2, 2.0), (4, 6.0), (5, 11.0)]


class Resume4(Hook):
    def before_train(self, loop):
        loop.start = 4


def test_a_torn_last_line_of_the_log_is_dropped(tmp_path):
    path = tmp_path / hooks.HISTORY
    path.write_text("step\tloss\tloss_fused\tlr\tside_weight\n10\t0.5\t0.4\t0.001\t1.0\n20\t0.4\t0.3")
    assert [r["step"] for r in hooks.read_history(path, 100)] == [10]
