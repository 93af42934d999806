#!/usr/bin/env python
"""Job throughput (issue #6, JOB-1): no-op jobs per second run by 1, 2 and 4 worker processes
through the job table, on SQLite and PostgreSQL.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema
`bench_jobs_<pid>` at `CRYOVAULT_BENCH_POSTGRES_URL`, default
`postgresql+psycopg://postgres@127.0.0.1:5432/test`, skipped with a note when it does not
answer) and each number of workers, --jobs no-op jobs are queued in one transaction; then the
worker processes (already started, connected and warmed up) are released together and each runs
`cryovault.jobs.runner.run_pending` — what the `cryovault worker` loop calls — until the queue
is empty. Throughput = jobs / (time from the release to the last job's end). Every job is
checked to have run exactly once (status completed, attempts 1). Target: ≥ 200 jobs/s on
PostgreSQL.

    .venv/bin/python benchmarks/jobs_throughput.py                       # 1000 jobs, 3 reps
    .venv/bin/python benchmarks/jobs_throughput.py --jobs 500 --reps 1   # quick
    .venv/bin/python benchmarks/jobs_throughput.py --profile             # cProfile of 1 worker
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOOP = "bench-noop"
TARGET_JOBS_PER_S = 200.0


@dataclass
class Row:
    backend: str
    workers: int
    jobs: int
    seconds: float
    jobs_per_s: float
    runs: list[float]
    load_1min: float
    target: str
    met: bool | None


def _noop(context) -> None:
    return None


def _worker(url: str, ready, go, done, profile_to: str | None) -> None:
    """One worker process: connect, warm up, wait for the release, run until the queue is
    empty, report when its last job ended."""
    from cryovault.db.engine import make_engine, make_sessionmaker
    from cryovault.jobs.runner import JobEnvironment, register_handler, run_pending

    register_handler(NOOP, _noop)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as db:  # a connection in the pool, the statements compiled once
        db.execute(text("SELECT 1"))
    env = JobEnvironment(sessions)
    run_pending(env)  # nothing queued yet: warms up the claim query
    ready.release()
    go.wait()
    profiler = cProfile.Profile() if profile_to else None
    if profiler:
        profiler.enable()
    ran = run_pending(env)
    ended = time.perf_counter()
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile_to)
    done.put((ran, ended))
    engine.dispose()


def _queue(url: str, user_id: uuid.UUID, count: int) -> None:
    from cryovault.db.base import utcnow
    from cryovault.db.engine import make_engine
    from cryovault.db.jobs import Job

    engine = make_engine(url)
    now = utcnow()
    rows = [{"id": uuid.uuid4(), "kind": NOOP, "status": "waiting", "user_id": user_id,
             "element_name": "", "progress": 0.0, "message": "", "parameters": "{}",
             "attempts": 0, "cancel_requested": False, "dismissed": False, "created_at": now}
            for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(Job), rows)
    engine.dispose()


def _check(url: str, count: int) -> None:
    from cryovault.db.engine import make_engine
    from cryovault.db.jobs import Job

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Job.status, Job.attempts, func.count())
                            .where(Job.kind == NOOP).group_by(Job.status, Job.attempts)).all()
        conn.execute(text("DELETE FROM jobs"))
        conn.commit()
    engine.dispose()
    if [tuple(r) for r in rows] != [("completed", 1, count)]:
        raise AssertionError(f"every job should have run exactly once: {rows}")


def run_once(url: str, user_id: uuid.UUID, workers: int, count: int,
             profile_to: str | None = None) -> float:
    context = multiprocessing.get_context("spawn")
    ready, go, done = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=_worker, args=(url, ready, go, done,
                                                       profile_to if i == 0 else None))
                 for i in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a worker process did not start")
    _queue(url, user_id, count)  # after the workers' warm-up run found the queue empty
    started = time.perf_counter()
    go.set()
    results = [done.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    ended = max(end for _, end in results)
    if sum(ran for ran, _ in results) != count:
        raise AssertionError(f"ran {sum(r for r, _ in results)} jobs, {count} were queued")
    _check(url, count)
    return ended - started


def _pg_url(base: str, schema: str | None) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    if schema:
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def prepare(backend: str, keep: bool):
    """(url, note, cleanup) for a fresh, migrated database with one user; None when skipped."""
    from cryovault.access.users import create_user
    from cryovault.db.engine import make_engine, make_sessionmaker
    from cryovault.db.migrate import upgrade

    if backend == "sqlite":
        import sqlite3

        folder = tempfile.mkdtemp(prefix="bench_jobs_")
        url = f"sqlite:///{folder}/bench.db"
        note = f"SQLite {sqlite3.sqlite_version} (WAL), {folder}"

        def cleanup() -> None:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    else:
        base = os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
        schema = f"bench_jobs_{os.getpid()}"
        admin = make_engine(_pg_url(base, None))
        try:
            with admin.begin() as conn:
                version = conn.scalar(text("SHOW server_version"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            admin.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            return None, f"PostgreSQL not reachable at {base}: {reason}", None
        url = _pg_url(base, schema)
        note = f"PostgreSQL {version}, schema {schema}"

        def cleanup() -> None:
            if not keep:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as db:
        user = create_user(db, "bench", "bench-password-1")
        db.commit()
        user_id = user.id
    engine.dispose()
    return (url, user_id), note, cleanup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])
    parser.add_argument("--profile", action="store_true",
                        help="profile the first worker of a 1-worker run (cProfile) and print "
                             "the top functions")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", type=Path, default=RESULTS / "jobs_throughput.json")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    notes: dict[str, str] = {}
    for backend in args.backends:
        prepared, note, cleanup = prepare(backend, args.keep)
        notes[backend] = note
        print(f"== {backend}: {note}", flush=True)
        if prepared is None:
            continue
        url, user_id = prepared
        try:
            if args.profile:
                with tempfile.NamedTemporaryFile(suffix=".prof") as out:
                    run_once(url, user_id, 1, args.jobs, out.name)
                    stream = io.StringIO()
                    pstats.Stats(out.name, stream=stream).sort_stats("cumulative") \
                        .print_stats(30)
                    print(stream.getvalue())
            run_once(url, user_id, 1, min(200, args.jobs))  # warm-up: caches, disk
            for workers in args.workers:
                load = os.getloadavg()[0]
                runs = [run_once(url, user_id, workers, args.jobs) for _ in range(args.reps)]
                seconds = statistics.median(runs)
                rate = args.jobs / seconds
                is_target = backend == "postgres"
                rows.append(Row(backend, workers, args.jobs, seconds, rate,
                                [round(r, 4) for r in runs],
                                round(max(load, os.getloadavg()[0]), 2),
                                f"≥ {TARGET_JOBS_PER_S:.0f}/s" if is_target else "report",
                                rate >= TARGET_JOBS_PER_S if is_target else None))
                print(f"  {workers} worker(s): {rate:,.0f} jobs/s "
                      f"({', '.join(f'{args.jobs / r:,.0f}' for r in runs)})", flush=True)
        finally:
            cleanup()

    print()
    print(f"{'backend':<10} {'workers':>7} {'jobs':>6} {'median s':>9} {'jobs/s':>8} "
          f"{'load':>5}  target")
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "MISSED")
        print(f"{row.backend:<10} {row.workers:>7} {row.jobs:>6} {row.seconds:>9.3f} "
              f"{row.jobs_per_s:>8,.0f} {row.load_1min:>5.2f}  {row.target} {verdict}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "backends": notes, "jobs": args.jobs, "reps": args.reps,
        "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
