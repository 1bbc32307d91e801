"""The labels stage on Dask: the same shards on any engine, and nothing lost when a worker dies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params
from tests.test_labels import assert_same, shard_contents
from wss import config
from wss.errors import ConfigError, SetupError
from wss.labels import scheduler, shards

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# Jittered GrabCuts make each train instance slow enough to kill a worker in the middle of a run.
SLOW = {"crop_size": 32, "shard_size": 1, "n_jobs": 2, "vote_runs": 12}


@pytest.mark.parametrize(
    "value", ["", "local:1", "local:8", "tcp://127.0.0.1:8786", "tls://sched.example:8786", "node17:8786"]
)
def test_scheduler_values_accepted(value):
    assert config.check_scheduler(value) is None


@pytest.mark.parametrize("value", ["local", "local:0", "local:-2", "dask", "http://x:1", "tcp://", "127.0.0.1"])
def test_bad_scheduler_values_are_named(value):
    from tests.conftest import labels_cfg

    with pytest.raises(ConfigError, match="labels.scheduler"):
        labels_cfg(scheduler=value).validate()


def test_unreachable_scheduler_says_what_to_do(tmp_path):
    with pytest.raises(SetupError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9.*dask scheduler"):
        with scheduler.backend("tcp://127.0.0.1:9", 1, connect_timeout=2):
            pass


def test_a_worker_with_other_code_refuses_to_write():
    with pytest.raises(SetupError, match="other code or library versions for wss.labels.build"):
        scheduler.check_code("wss.labels.build", (), "0" * 64)


def _cli(tmp_path: Path, data: Path, inst: Path, out: Path, **labels) -> list[str]:
    params = write_params(tmp_path / f"params-{out.name}.yaml", labels=labels)
    return [
        sys.executable,
        "-m",
        "stages.labels",
        "--params",
        str(params),
        "--data",
        str(data),
        "--instances",
        str(inst),
        "--out",
        str(out),
        "--metrics",
        str(tmp_path / f"{out.name}.json"),
    ]


def _manifest_hash(out: Path) -> str:
    return hashlib.sha256((out / shards.MANIFEST).read_bytes()).hexdigest()


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, as a user would start them."""

    def __init__(self, tmp: Path, n_workers: int):
        self.tmp, self.file = tmp, tmp / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.scheduler = self._start(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)
        )
        self.address = self._address(time.time() + 60)
        # --no-nanny: the worker is the process, so killing it kills the worker (no restart).
        self.workers = [
            self._start(
                "worker",
                "--scheduler-file",
                str(self.file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"w{i}",
                "--local-directory",
                str(tmp / f"w{i}"),
            )
            for i in range(n_workers)
        ]
        from dask.distributed import Client

        with Client(self.address, timeout=30) as c:
            c.wait_for_workers(n_workers, timeout=60)

    def _address(self, deadline: float) -> str:
        """The scheduler's address from its file, once the file is whole: the scheduler creates it
        before it writes it, so a loaded machine can see it empty or half written."""
        while True:
            try:
                return json.loads(self.file.read_text())["address"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def _start(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{args[0]}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
            cwd=ROOT,
            env=ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, 2)
    yield c
    c.stop()


@pytest.mark.slow
def test_same_shards_on_local_processes_a_local_cluster_and_a_dask_cluster(tiny_sbd, tiny_instances, tmp_path, cluster):
    runs = {"processes": "", "localcluster": "local:2", "cluster": cluster.address}
    for name, value in runs.items():
        # Paths relative to the stage's directory, as dvc gives them; the workers run elsewhere (in ROOT).
        cmd = _cli(
            tmp_path,
            tiny_sbd.relative_to(tmp_path),
            tiny_instances.relative_to(tmp_path),
            Path(name),
            crop_size=32,
            shard_size=4,
            scheduler=value,
        )
        res = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        if value:
            assert "Dask cluster" in res.stdout
    assert _manifest_hash(tmp_path / "localcluster") == _manifest_hash(tmp_path / "processes")
    assert _manifest_hash(tmp_path / "cluster") == _manifest_hash(tmp_path / "processes")
    ref = shard_contents(tmp_path / "processes")
    assert_same(shard_contents(tmp_path / "cluster"), ref)
    assert_same(shard_contents(tmp_path / "localcluster"), ref)
    assert not (ROOT / "cluster").exists()  # the workers wrote where the stage said, not relative to their own cwd


def _wait_for_shards(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while len(list(out.glob("shard-*.h5"))) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, f"no {n} shards in {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(tiny_sbd, tiny_instances, tmp_path, cluster):
    ref = tmp_path / "ref"
    subprocess.run(_cli(tmp_path, tiny_sbd, tiny_instances, ref, **SLOW), env=ENV, check=True, capture_output=True)
    total = len(list(ref.glob("shard-*.h5")))

    # One of the two workers dies mid-run: Dask hands its task to the other, the run completes.
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cli(tmp_path, tiny_sbd, tiny_instances, out, **SLOW, scheduler=cluster.address),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_shards(out, 2, proc)
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert _manifest_hash(out) == _manifest_hash(ref)
    assert_same(shard_contents(out), ref_contents := shard_contents(ref))

    # The stage itself is killed mid-run: the shards finished so far are kept, the rerun builds the rest.
    again = tmp_path / "again"
    proc = subprocess.Popen(
        _cli(tmp_path, tiny_sbd, tiny_instances, again, **SLOW, scheduler=cluster.address),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for_shards(again, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in again.glob("shard-*.h5")}
    assert 3 <= len(done) < total and not (again / shards.MANIFEST).exists()
    time.sleep(1)  # tasks of the killed run may still be finishing on the worker; they write whole files only
    res = subprocess.run(
        _cli(tmp_path, tiny_sbd, tiny_instances, again, **SLOW, scheduler=cluster.address),
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    reused = int(res.stdout.split(" reused from an earlier run")[0].rsplit(", ", 1)[1])
    assert len(done) <= reused < total
    for name, mtime in done.items():
        assert (again / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    assert _manifest_hash(again) == _manifest_hash(ref)
    assert_same(shard_contents(again), ref_contents)
    assert not list(again.glob(".tmp-*"))
