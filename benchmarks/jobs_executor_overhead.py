#!/usr/bin/env python
"""Overhead per processing task (issue #6, JOB-1, OPS-2): a no-op task submitted through the
processing executor and waited for, with the platform's bookkeeping around it, on the local
worker processes and on a Dask LocalCluster, against the raw submit of each.

Rows (each the median and 90th percentile of --tasks round trips, one task at a time after
--warmup, plus the mean per task when --tasks are submitted at once and then waited for):

* raw `ProcessPoolExecutor.submit(f).result()` (forkserver, as LocalExecutor uses);
* `LocalExecutor.submit(f).result()` (cryovault's TaskHandle around it);
* the same plus the bookkeeping of a job that runs tasks: `JobContext.heartbeat()` after each
  task (what a pipeline's loop calls; it writes at most every HEARTBEAT_EVERY) — and, as the
  worst case, `JobContext.checkpoint(progress)` after each task (one committed UPDATE each);
* raw Dask `client.submit(f, pure=False).result()` on a LocalCluster (1 worker process,
  1 thread, 127.0.0.1);
* `DaskExecutor.submit(f).result()` on the same cluster, then with the bookkeeping.

"+raw ms" is the median above the raw submit of the same executor: what cryovault adds.
The bookkeeping writes to a SQLite file (WAL) or, with --backend postgres, to PostgreSQL at
CRYOVAULT_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test,
schema bench_exec_<pid>). Target: under 5 ms per task including the bookkeeping (the issue
measured a raw Dask submit at about 1.8 ms).

    .venv/bin/python benchmarks/jobs_executor_overhead.py                    # 500 tasks
    .venv/bin/python benchmarks/jobs_executor_overhead.py --tasks 100        # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 5.0


def noop(value: int) -> int:
    return value


@dataclass
class Row:
    measurement: str
    tasks: int
    median_ms: float
    p90_ms: float
    batch_mean_ms: float
    added_ms: float | None  # median above the raw submit of the same executor
    target: str
    met: bool | None


def measure(name: str, submit: Callable[[int], object], result: Callable[[object], object],
            after: Callable[[int], None] | None, tasks: int, warmup: int,
            targeted: bool, raw: Row | None = None) -> Row:
    for n in range(warmup):
        result(submit(n))
    times = []
    for n in range(tasks):
        start = time.perf_counter()
        assert result(submit(n)) == n
        if after is not None:
            after(n)
        times.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    handles = [submit(n) for n in range(tasks)]
    for n, handle in enumerate(handles):
        assert result(handle) == n
        if after is not None:
            after(n)
    batch = (time.perf_counter() - start) * 1000 / tasks
    times.sort()
    median = statistics.median(times)
    row = Row(name, tasks, round(median, 3), round(times[int(0.9 * (len(times) - 1))], 3),
              round(batch, 3), round(median - raw.median_ms, 3) if raw else None,
              f"< {TARGET_MS:g} ms" if targeted else "report",
              median < TARGET_MS if targeted else None)
    print(f"  {name}: median {row.median_ms:.2f} ms, p90 {row.p90_ms:.2f} ms, "
          f"batch {row.batch_mean_ms:.2f} ms/task", flush=True)
    return row


class Bookkeeping:
    """A running job in a fresh database, and the calls a job makes around its tasks."""

    def __init__(self, backend: str) -> None:
        from cryovault.access.actor import Actor
        from cryovault.access.users import create_user
        from cryovault.db.engine import make_engine, make_sessionmaker
        from cryovault.db.migrate import upgrade
        from cryovault.jobs.records import create_job
        from cryovault.jobs.runner import JobContext, JobEnvironment, _claim

        self.folder = tempfile.mkdtemp(prefix="bench_exec_")
        self.schema = None
        if backend == "sqlite":
            url = f"sqlite:///{self.folder}/bench.db"
            self.note = "SQLite (WAL)"
        else:
            base = make_url(os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL", DEFAULT_PG_URL))
            base = base.set(drivername="postgresql+psycopg")
            self.schema = f"bench_exec_{os.getpid()}"
            self.admin = make_engine(base.render_as_string(hide_password=False))
            with self.admin.begin() as conn:
                version = conn.scalar(text("SHOW server_version"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            url = base.update_query_dict({"options": f"-csearch_path={self.schema}"}) \
                .render_as_string(hide_password=False)
            self.note = f"PostgreSQL {version.split()[0]}"
        self.engine = make_engine(url)
        upgrade(self.engine)
        sessions = make_sessionmaker(self.engine)
        self.db = sessions()
        user = create_user(self.db, "bench", "bench-password-1")
        job = create_job(self.db, "bench-processing", Actor.of(user), None)
        self.db.commit()
        claimed = _claim(self.db, job.id, "bench:1:1")
        assert claimed is not None
        self.context = JobContext(JobEnvironment(sessions), self.db, claimed, "bench:1:1")
        self.total = 1

    def heartbeat(self, n: int) -> None:
        self.context.heartbeat()

    def checkpoint(self, n: int) -> None:
        self.context.checkpoint((n + 1) / self.total)

    def close(self) -> None:
        self.db.close()
        self.engine.dispose()
        if self.schema:
            with self.admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            self.admin.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="database of the bookkeeping")
    parser.add_argument("--json", type=Path, default=RESULTS / "jobs_executor_overhead.json")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from cryovault.jobs.executors import DaskExecutor, LocalExecutor

    load_before = os.getloadavg()[0]
    books = Bookkeeping(args.backend)
    rows: list[Row] = []
    try:
        books.total = args.tasks
        print(f"local processes (bookkeeping on {books.note}):", flush=True)
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            raw = measure("raw ProcessPoolExecutor submit + result", lambda n:
                          pool.submit(noop, n), lambda f: f.result(), None, args.tasks,
                          args.warmup, False)
            rows.append(raw)
        with LocalExecutor(workers=1) as local:
            rows.append(measure("LocalExecutor submit + result", lambda n:
                                local.submit(noop, n), lambda h: h.result(), None,
                                args.tasks, args.warmup, True, raw))
            rows.append(measure("LocalExecutor + job heartbeat", lambda n: local.submit(noop, n),
                                lambda h: h.result(), books.heartbeat, args.tasks, args.warmup,
                                True, raw))
            rows.append(measure("LocalExecutor + job checkpoint per task", lambda n:
                                local.submit(noop, n), lambda h: h.result(), books.checkpoint,
                                args.tasks, args.warmup, False, raw))
        print("Dask LocalCluster (1 worker process, 1 thread):", flush=True)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            with Client(cluster.scheduler_address, set_as_default=False) as client:
                raw = measure("raw Dask client.submit + result", lambda n:
                              client.submit(noop, n, pure=False), lambda f: f.result(),
                              None, args.tasks, args.warmup, False)
                rows.append(raw)
            with DaskExecutor(cluster.scheduler_address) as dask:
                rows.append(measure("DaskExecutor submit + result", lambda n:
                                    dask.submit(noop, n), lambda h: h.result(), None,
                                    args.tasks, args.warmup, True, raw))
                rows.append(measure("DaskExecutor + job heartbeat", lambda n:
                                    dask.submit(noop, n), lambda h: h.result(), books.heartbeat,
                                    args.tasks, args.warmup, True, raw))
                rows.append(measure("DaskExecutor + job checkpoint per task", lambda n:
                                    dask.submit(noop, n), lambda h: h.result(),
                                    books.checkpoint, args.tasks, args.warmup, False, raw))
    finally:
        books.close()
    load = round(max(load_before, os.getloadavg()[0]), 2)

    print()
    print(f"{'measurement':<42} {'median ms':>9} {'p90 ms':>8} {'batch ms':>9} "
          f"{'+raw ms':>8}  target")
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "MISSED")
        added = "" if row.added_ms is None else f"{row.added_ms:+.2f}"
        print(f"{row.measurement:<42} {row.median_ms:>9.2f} {row.p90_ms:>8.2f} "
              f"{row.batch_mean_ms:>9.2f} {added:>8}  {row.target} {verdict}")
    print(f"(bookkeeping on {books.note}; 1-minute load average up to {load})")
    import dask
    import distributed

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": load},
        "versions": {"dask": dask.__version__, "distributed": distributed.__version__},
        "bookkeeping": books.note, "tasks": args.tasks,
        "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
