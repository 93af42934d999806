"""Processing executors: local worker processes, a Dask LocalCluster, and a Dask scheduler and
worker started as separate processes, as a facility runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryovault.jobs.executors import (
    DaskExecutor,
    ExecutorUnavailable,
    LocalExecutor,
    make_executor,
    worker_identity,
)
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def fails(message: str) -> None:
    raise ValueError(message)


def test_local_executor_runs_tasks_in_other_processes():
    with LocalExecutor(workers=2) as executor:
        handles = [executor.submit(worker_identity) for _ in range(4)]
        identities = [h.result(timeout=60) for h in handles]
        assert all(i.pid != os.getpid() for i in identities)
        with pytest.raises(ValueError, match="bad input"):
            executor.submit(fails, "bad input").result(timeout=60)
        assert executor.health().state == "stable" and executor.health().workers == 2


def test_dask_local_cluster():
    from distributed import LocalCluster

    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None) as cluster,
          make_executor(cluster.scheduler_address) as executor):
        assert isinstance(executor, DaskExecutor)
        identity = executor.submit(worker_identity).result(timeout=60)
        assert identity.pid != os.getpid()
        with pytest.raises(ValueError, match="broken movie"):
            executor.submit(fails, "broken movie").result(timeout=60)
        health = executor.health()
        assert (health.state, health.workers) == ("stable", 1)


def test_unreachable_scheduler_is_reported():
    started = time.monotonic()
    with pytest.raises(ExecutorUnavailable, match="does not answer"):
        DaskExecutor(f"tcp://127.0.0.1:{free_port()}", timeout_seconds=2)
    assert time.monotonic() - started < 30


def test_separate_scheduler_and_worker_processes(tmp_path):
    dask = shutil.which("dask", path=str(Path(sys.executable).parent))
    assert dask, "the dask command comes with the distributed package"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0", "--no-show"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                               "--no-dashboard", "--local-directory", str(tmp_path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        executor = None
        deadline = time.monotonic() + 60
        while executor is None:
            try:
                executor = DaskExecutor(address, timeout_seconds=5)
            except ExecutorUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with executor:
            while executor.health().workers == 0:
                assert time.monotonic() < deadline, "the worker did not join"
                time.sleep(0.2)
            identity = executor.submit(worker_identity).result(timeout=60)
            # the task ran in the worker process (a child of `dask worker`), not here
            assert identity.pid not in (os.getpid(), scheduler.pid)
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            process.wait(timeout=30)
