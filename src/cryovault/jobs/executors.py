"""Where processing tasks run (SPEC JOB-1, OPS-1, OPS-2): one interface, two implementations.

- `LocalExecutor` (default): a pool of local worker processes, one per CPU unless configured;
- `DaskExecutor`: a Dask distributed cluster (`CRYOVAULT_DASK_SCHEDULER=tcp://host:8786`), whose
  workers may have GPUs or come from an HPC queue through dask-jobqueue.

A task is a picklable function with picklable arguments (the pipelines pass paths and
dataclasses, never database sessions); `submit` answers a `TaskHandle` whose `result()` waits.
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ExecutorUnavailable(Exception):
    """The processing executor cannot be reached (a Dask scheduler that does not answer)."""


@dataclass(frozen=True)
class ExecutorHealth:
    name: str
    state: str  # "stable" | "down"
    workers: int
    detail: str


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int
    cpus: int


def worker_identity() -> WorkerIdentity:
    """A task that says where it ran: the health check sends it to prove the executor works."""
    import socket

    return WorkerIdentity(socket.gethostname(), os.getpid(), os.cpu_count() or 1)


class TaskHandle(Generic[T]):
    """A submitted task: `result()` waits for it (re-raising its exception), `cancel()` tries
    to stop it before it starts."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> T:
        return self._future.result(timeout=timeout)

    def done(self) -> bool:
        return bool(self._future.done())

    def cancel(self) -> bool:
        return bool(self._future.cancel())


class Executor(ABC):
    name: str

    @abstractmethod
    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        ...

    @abstractmethod
    def health(self) -> ExecutorHealth: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    name = "local processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        # forkserver: workers do not inherit the portal's threads, sockets or database pools.
        context = multiprocessing.get_context("forkserver")
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        future: Future[T] = self._pool.submit(function, *args, **kwargs)
        return TaskHandle(future)

    def health(self) -> ExecutorHealth:
        return ExecutorHealth(self.name, "stable", self.workers,
                              f"{self.workers} worker processes on this machine")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    name = "Dask cluster"

    def __init__(self, scheduler_address: str, *, timeout_seconds: float = 10.0) -> None:
        from distributed import Client

        self.address = scheduler_address
        try:
            self._client = Client(scheduler_address, timeout=timeout_seconds,
                                  set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(f"the Dask scheduler at {scheduler_address} does not "
                                      f"answer ({exc})") from exc

    def submit(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> TaskHandle[T]:
        # pure=False: two submissions of the same call are two tasks (processing has effects).
        return TaskHandle(self._client.submit(function, *args, pure=False, **kwargs))

    def health(self) -> ExecutorHealth:
        try:
            workers = self._client.scheduler_info(n_workers=-1).get("workers", {})
        except (OSError, TimeoutError) as exc:
            return ExecutorHealth(self.name, "down", 0, f"{self.address}: {exc}")
        state = "stable" if workers else "waiting"
        return ExecutorHealth(self.name, state, len(workers),
                              f"{len(workers)} workers at {self.address}")

    def close(self) -> None:
        self._client.close()


def make_executor(dask_scheduler: str | None, workers: int | None = None) -> Executor:
    """The executor the settings ask for: Dask when a scheduler address is given."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler)
    return LocalExecutor(workers)
