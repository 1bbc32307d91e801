"""Where the ``labels`` stage's joblib tasks run: local processes or a Dask cluster.

``labels.scheduler`` picks the engine; the tasks and their results are the same on each, so the
shards are too (the fingerprints do not include the scheduler):

==========================  ===================================================================
``''``                      local processes, joblib's default (loky), ``labels.n_jobs`` of them
``local:N``                 a ``dask.distributed.LocalCluster`` of ``N`` single-threaded
                            worker processes on this machine, started and stopped by the stage
``tcp://host:8786``         the scheduler of a running Dask cluster (``dask scheduler`` plus
                            ``dask worker``, dask-jobqueue on SLURM or PBS, a Kubernetes
                            deployment): joblib's Dask backend sends every shard to it
==========================  ===================================================================

A remote worker reads the images and writes the shards at the paths the stage gives it, so every
worker must see the workspace at the same absolute path (a shared filesystem) and run the same
``wss`` code; :func:`check_code` stops a worker whose code differs before it writes a shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from wss.config import LOCAL_SCHEDULER
from wss.core import provenance
from wss.errors import SetupError


@contextmanager
def backend(scheduler: str, n_jobs: int, connect_timeout: float = 30.0) -> Iterator[int]:
    """Run the joblib ``Parallel`` calls inside on the engine ``scheduler`` names; yields the
    ``n_jobs`` to give them (on Dask, ``-1``: as many tasks at once as the cluster has threads)."""
    if not scheduler:
        yield n_jobs
        return
    import joblib
    from dask.distributed import Client, LocalCluster

    with ExitStack() as stack:
        m = LOCAL_SCHEDULER.fullmatch(scheduler)
        if m:
            # One thread per worker: GrabCut holds the GIL for parts of its work, processes do not share it.
            # No dashboard: two experiments running at once would fight over its port.
            cluster = stack.enter_context(
                LocalCluster(n_workers=int(m.group(1)), threads_per_worker=1, processes=True, dashboard_address=None)
            )
            stack.enter_context(Client(cluster))
            where = f"a local Dask cluster of {m.group(1)} workers"
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=connect_timeout))
            except (OSError, TimeoutError) as exc:
                raise SetupError(
                    f"cannot reach the Dask scheduler at {scheduler} (labels.scheduler): "
                    f"{exc}. Start one (`dask scheduler`, then `dask worker {scheduler}`), or set "
                    f"labels.scheduler to '' for local processes"
                ) from exc
            where = f"the Dask cluster at {scheduler}, {len(client.scheduler_info().get('workers', {}))} workers now"
        print(f"labels: on {where}")
        with joblib.parallel_config(backend="dask"):
            yield -1


def check_code(module: str, packages: tuple[str, ...], expected: str) -> None:
    """Stop when this process's code for ``module`` is not the code the run was fingerprinted
    with: a worker of a shared cluster started from another checkout would write shards that
    claim to be made by code they were not made by."""
    got = provenance.code_digest(module, packages)
    if got != expected:
        import socket

        raise SetupError(
            f"worker on {socket.gethostname()} runs other code or library versions for {module} than the stage "
            f"(from {provenance.ROOT}); start the Dask workers from the same checkout, with the same "
            f"wss installed"
        )
