"""The platform's health (SPEC ADM-6): each part with its state and version, for the Settings >
Health tab and `GET /api/v1/admin/health`; and "Stop all live export jobs" (JOB-5).

Parts: the database, the search index, the job runner, the processing executor (local worker
processes or a Dask scheduler) and each storage. Every check runs in its own daemon thread and
the report waits at most `timeout_seconds` (2 s) for all of them together: a PostgreSQL server,
Dask scheduler or network mount that does not answer shows as "down" and never hangs the page.

States, precisely:

- **stable**: the part answered and works as configured.
- **down**: the part did not answer within the time limit, answered with an error, or cannot do
  its work: database unreachable; search index missing elements with no reindex under way; job
  runner with jobs waiting longer than `STALLED_AFTER` while no worker has given a heartbeat
  within the stale limit (nobody runs jobs), or the portal's own worker thread has stopped;
  Dask scheduler unreachable; storage missing, unreadable or unwritable.
- **waiting**: the part answers but is not ready yet, or is behind: database schema older than
  the newest migration (an upgrade is pending or running); search index being rebuilt (a reindex
  job waiting or running); job runner with a job waiting longer than `EXPECTED_WAIT`, or a
  running job whose worker stopped beating and that no worker has taken over yet; Dask scheduler
  with no worker connected (workers starting up).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from cryovault import __version__
from cryovault.access.actor import Actor
from cryovault.access.roles import CUSTOMER_ADMIN, WORKFLOW_ADMIN
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.db.search import SearchDocument
from cryovault.errors import Conflict, Forbidden, NotFound
from cryovault.jobs.records import PENDING, cancel_job
from cryovault.jobs.runner import stale_after
from cryovault.settings import Settings
from cryovault.storage.backends import FsspecStorage, LocalStorage, Storage
from cryovault.storage.registry import StorageSet
from cryovault.storage.usage import human_bytes

STABLE, DOWN, WAITING = "stable", "down", "waiting"
STATES = (STABLE, WAITING, DOWN)
CHECK_TIMEOUT_SECONDS = 2.0
EXPECTED_WAIT = timedelta(seconds=30)
STALLED_AFTER = timedelta(minutes=10)
LIVE_EXPORT_JOB = "live_export"
REINDEX_JOB = "reindex"  # search/jobs.py registers its handler
OPERATORS = frozenset({WORKFLOW_ADMIN, CUSTOMER_ADMIN})


@dataclass(frozen=True)
class PartHealth:
    name: str     # what the tab shows: "Database", "Storage “primary”" …
    kind: str     # "database" | "search" | "jobs" | "executor" | "storage"
    state: str    # "stable" | "waiting" | "down"
    version: str
    detail: str


@dataclass(frozen=True)
class HealthReport:
    parts: list[PartHealth]
    checked_at: datetime
    elapsed_seconds: float

    @property
    def state(self) -> str:
        """The worst state of any part."""
        return max((p.state for p in self.parts), key=STATES.index, default=STABLE)


def may_operate(actor: Actor) -> bool:
    """Workflow-admins and customer-admins see the health, reindex and stop live exports."""
    return bool(actor.roles & OPERATORS)


def require_operator(actor: Actor, action: str) -> None:
    if not may_operate(actor):
        raise Forbidden(f"only a workflow-admin or customer-admin may {action}")


# --- the report --------------------------------------------------------------------------------


def platform_health(actor: Actor, engine: Engine, settings: Settings, storages: StorageSet, *,
                    local_worker_alive: bool | None = None,
                    timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> HealthReport:
    """Check every part at once; none takes longer than `timeout_seconds` to report.

    `local_worker_alive`: whether the job worker thread of this portal process runs (None when
    this process runs none, e.g. a portal started without workers)."""
    require_operator(actor, "see the platform's health")
    started = time.monotonic()
    probe = probe_engine(engine)
    sessions = sessionmaker(bind=probe, expire_on_commit=False)
    checks: list[tuple[str, str, Callable[[], PartHealth]]] = [
        ("Database", "database", lambda: check_database(probe)),
        ("Search index", "search", lambda: check_search(sessions)),
        ("Job runner", "jobs",
         lambda: check_job_runner(sessions, settings, local_worker_alive)),
        ("Processing executor", "executor",
         lambda: check_executor(settings, started + timeout_seconds)),
    ] + [(storage_title(s), "storage", lambda s=s: check_storage(s)) for s in storages.all()]
    parts = _run_bounded(checks, timeout_seconds)
    return HealthReport(parts, utcnow(), time.monotonic() - started)


def storage_title(storage: Storage) -> str:
    return f"Storage “{storage.name}” ({storage.role})"


def _run_bounded(checks: list[tuple[str, str, Callable[[], PartHealth]]],
                 timeout_seconds: float) -> list[PartHealth]:
    """Run each check in a daemon thread; a check still running at the deadline is reported
    down (its thread is left to finish or hang on its own: it holds nothing of the caller)."""
    results: dict[int, PartHealth] = {}
    threads = []
    for index, (name, kind, check) in enumerate(checks):
        def run(index: int = index, name: str = name, kind: str = kind,
                check: Callable[[], PartHealth] = check) -> None:
            try:
                results[index] = check()
            except Exception as exc:  # a broken part is reported, never raised
                results[index] = PartHealth(name, kind, DOWN, "", _reason(exc))

        thread = threading.Thread(target=run, name=f"health-{kind}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout_seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results.get(index) or PartHealth(name, kind, DOWN, "",
                                             f"no answer within {timeout_seconds:g} s")
            for index, (name, kind, _) in enumerate(checks)]


def _reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0]}" if text_ else type(exc).__name__


_PROBES: dict[str, Engine] = {}
_PROBES_LOCK = threading.Lock()


def probe_engine(engine: Engine) -> Engine:
    """The engine the checks use. SQLite: the portal's own. PostgreSQL: one without a pool whose
    connections give up after 2 s and whose statements after 2 s, so that a server that does not
    answer never ties up the portal's pool or a request."""
    if engine.dialect.name == "sqlite":
        return engine
    url = engine.url.render_as_string(hide_password=False)
    with _PROBES_LOCK:
        probe = _PROBES.get(url)
        if probe is None:
            probe = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})

            @event.listens_for(probe, "connect")
            def _limit(dbapi_connection, _record) -> None:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SET statement_timeout = 2000")
                dbapi_connection.commit()

            _PROBES[url] = probe
    return probe


# --- database ----------------------------------------------------------------------------------


@cache
def _migration_heads() -> tuple[str, ...]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from cryovault.db.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return tuple(ScriptDirectory.from_config(config).get_heads())


def database_version(db: Session) -> str:
    """"SQLite 3.45.1" or "PostgreSQL 16.4"."""
    if db.get_bind().dialect.name == "sqlite":
        return "SQLite " + str(db.scalar(text("SELECT sqlite_version()")))
    version = str(db.scalar(text("SELECT current_setting('server_version')")))
    return "PostgreSQL " + version.split()[0]


def check_database(engine: Engine) -> PartHealth:
    name, kind = "Database", "database"
    started = time.monotonic()
    with Session(engine) as db:
        version = database_version(db)
        revisions = set(db.scalars(text("SELECT version_num FROM alembic_version")))
    latency_ms = (time.monotonic() - started) * 1000
    url = engine.url
    where = (f"file {url.database}" if url.get_backend_name() == "sqlite"
             else f"{url.host or 'local socket'}:{url.port or 5432}/{url.database}")
    heads = set(_migration_heads())
    detail = f"{where}; answered in {latency_ms:.0f} ms"
    if revisions != heads:
        behind = ", ".join(sorted(revisions)) or "none"
        return PartHealth(name, kind, WAITING, version,
                          f"{detail}; schema at revision {behind}, newest is "
                          f"{', '.join(sorted(heads))}: a database upgrade is pending")
    return PartHealth(name, kind, STABLE, version, f"{detail}; schema up to date")


# --- search index ------------------------------------------------------------------------------


def check_search(sessions: sessionmaker[Session]) -> PartHealth:
    name, kind = "Search index", "search"
    with sessions() as db:
        sqlite = db.get_bind().dialect.name == "sqlite"
        backend = "SQLite FTS5" if sqlite else "PostgreSQL full-text"
        version = f"{backend} ({database_version(db)})"
        if sqlite:  # the FTS5 table must be there and answer
            db.execute(text("SELECT rowid FROM search_fts LIMIT 1")).all()
        elements = db.scalar(select(func.count()).select_from(Element)) or 0
        indexed = db.scalar(select(func.count()).select_from(SearchDocument)) or 0
        reindex = db.execute(
            select(Job.status, Job.progress).where(Job.kind == REINDEX_JOB,
                                                   Job.status.in_(PENDING))
            .order_by(Job.created_at.desc()).limit(1)).first()
    counts = f"{indexed:,} of {elements:,} elements indexed"
    if reindex is not None:
        status, progress = reindex
        return PartHealth(name, kind, WAITING, version,
                          f"{counts}; reindex {status} ({progress:.0%})")
    if indexed != elements:
        return PartHealth(name, kind, DOWN, version,
                          f"{counts}: the index is out of date; run Reindex")
    return PartHealth(name, kind, STABLE, version, counts)


# --- job runner --------------------------------------------------------------------------------


def check_job_runner(sessions: sessionmaker[Session], settings: Settings | None,
                     local_worker_alive: bool | None) -> PartHealth:
    name, kind = "Job runner", "jobs"
    version = f"cryovault {__version__}"
    now = utcnow()
    stale = stale_after(settings)
    with sessions() as db:
        waiting, oldest = db.execute(
            select(func.count(), func.min(Job.created_at)).where(Job.status == "waiting")).one()
        workers = set(db.scalars(select(Job.worker).distinct().where(
            Job.status == "running", Job.heartbeat_at >= now - stale)))
        orphaned = db.scalar(select(func.count()).select_from(Job).where(
            Job.status == "running", Job.heartbeat_at < now - stale)) or 0
    oldest_wait = (now - _aware(oldest)) if oldest is not None else None
    hosts = sorted({w.rsplit(":", 1)[0] for w in workers if w})
    parts = [f"{len(workers)} worker thread{'s' if len(workers) != 1 else ''} busy"
             + (f" ({', '.join(hosts)})" if hosts else "")]
    if local_worker_alive is not None:
        parts.append("this portal runs a worker thread" if local_worker_alive
                     else "this portal's worker thread has stopped")
    parts.append(f"{waiting} job{'s' if waiting != 1 else ''} waiting"
                 + (f", oldest for {_duration(oldest_wait)}" if oldest_wait else ""))
    if orphaned:
        parts.append(f"{orphaned} running job{'s' if orphaned != 1 else ''} without heartbeat "
                     f"for over {_duration(stale)} (to be taken over)")
    detail = "; ".join(parts)
    if local_worker_alive is False:
        return PartHealth(name, kind, DOWN, version, detail)
    if oldest_wait is not None and oldest_wait > STALLED_AFTER and not workers:
        return PartHealth(name, kind, DOWN, version,
                          detail + "; no worker is running jobs: start 'cryovault worker'")
    if (oldest_wait is not None and oldest_wait > EXPECTED_WAIT) or orphaned:
        return PartHealth(name, kind, WAITING, version, detail)
    return PartHealth(name, kind, STABLE, version, detail)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# --- processing executor -----------------------------------------------------------------------


def check_executor(settings: Settings, deadline: float | None = None) -> PartHealth:
    """The local processes, or the Dask scheduler asked before `deadline` (time.monotonic;
    default: CHECK_TIMEOUT_SECONDS from now)."""
    name, kind = "Processing executor", "executor"
    if settings.dask_scheduler:
        if deadline is None:
            deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
        return _check_dask(settings.dask_scheduler, deadline)
    workers = settings.processing_workers or os.cpu_count() or 1
    methods = multiprocessing.get_all_start_methods()
    version = f"local processes (Python {platform.python_version()})"
    if "forkserver" not in methods:
        return PartHealth(name, kind, DOWN, version,
                          "this system cannot start worker processes with forkserver")
    return PartHealth(name, kind, STABLE, version,
                      f"{workers} worker process{'es' if workers != 1 else ''} on this machine, "
                      "started when processing begins")


def _check_dask(address: str, deadline: float) -> PartHealth:
    """Ask the scheduler who it is and what it runs, over one connection (no Client), within
    what is left of the time of the report (importing distributed takes part of it)."""
    import asyncio

    import distributed
    from distributed.core import rpc

    name, kind = "Processing executor", "executor"
    timeout_seconds = max(0.3, deadline - time.monotonic() - 0.2)

    async def ask() -> tuple[dict, dict]:
        scheduler = rpc(address, timeout=timeout_seconds)
        try:
            identity = await asyncio.wait_for(scheduler.identity(n_workers=0), timeout_seconds)
            versions = await asyncio.wait_for(scheduler.versions(), timeout_seconds)
        finally:
            await scheduler.close_rpc()
        return identity, versions

    try:
        identity, versions = asyncio.run(ask())
    except Exception as exc:  # refused, timed out, closed: all mean "does not answer"
        return PartHealth(name, kind, DOWN, f"Dask (client {distributed.__version__})",
                          f"the Dask scheduler at {address} does not answer ({_reason(exc)})")
    packages = versions.get("packages", {})
    version = (f"Dask {packages.get('dask', '?')} (distributed "
               f"{packages.get('distributed', '?')})")
    workers = int(identity.get("n_workers", 0))
    threads = int(identity.get("total_threads", 0))
    detail = (f"scheduler {address}: {workers} worker{'s' if workers != 1 else ''}, "
              f"{threads} thread{'s' if threads != 1 else ''}")
    if not workers:
        return PartHealth(name, kind, WAITING, version,
                          detail + "; waiting for workers to connect")
    return PartHealth(name, kind, STABLE, version, detail)


# --- storages ----------------------------------------------------------------------------------


def check_storage(storage: Storage) -> PartHealth:
    """Readable (its root lists), writable (a staged write of a few bytes, then dropped) and
    its free space."""
    name, kind = storage_title(storage), "storage"
    version = _storage_version(storage)
    if isinstance(storage, LocalStorage):
        root = storage.root
        if not root.is_dir():  # checked first: staging a write would create it again
            return PartHealth(name, kind, DOWN, version,
                              f"{root} is not a directory (is the volume mounted?)")
        try:
            next(os.scandir(root), None)
        except OSError as exc:
            return PartHealth(name, kind, DOWN, version, f"{root} cannot be read ({_reason(exc)})")
    else:
        storage.size("health-probe")  # raises when the store cannot be reached
    staged = storage.stage()
    try:
        staged.write(b"cryovault health " + uuid.uuid4().hex.encode())
    finally:
        staged.abort()
    usage = storage.usage()
    if usage.free_bytes is not None and usage.total_bytes:
        space = (f"{human_bytes(usage.free_bytes)} free of {human_bytes(usage.total_bytes)}")
    else:
        space = f"{human_bytes(usage.used_bytes)} stored (no fixed capacity)"
    return PartHealth(name, kind, STABLE, version, f"readable and writable; {space}")


def _storage_version(storage: Storage) -> str:
    if isinstance(storage, LocalStorage):
        return f"local directory ({_filesystem_type(storage.root)})"
    if isinstance(storage, FsspecStorage):
        import fsspec

        return f"{storage.kind} (fsspec {fsspec.__version__})"
    return storage.kind


def _filesystem_type(path: Path) -> str:
    """The type of the file system holding `path` (ext4, xfs, nfs4 …) from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "POSIX"
    best, best_type = "", "POSIX"
    target = str(path)
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, best_type = point, fields[2]
    return best_type


# --- live exports ------------------------------------------------------------------------------


def stop_live_exports(db: Session, actor: Actor) -> int:
    """Cancel every live export job that has not ended (SPEC JOB-5, ADM-6); the number asked to
    stop. Waiting ones end at once; running ones stop at their next checkpoint (the usual
    cancel path, records.cancel_job)."""
    require_operator(actor, "stop the live exports")
    ids = list(db.scalars(select(Job.id).where(Job.kind == LIVE_EXPORT_JOB,
                                               Job.status.in_(PENDING),
                                               Job.cancel_requested.is_(False))))
    stopped = 0
    for job_id in ids:
        try:
            cancel_job(db, actor, job_id)
        except (Conflict, NotFound):  # it ended meanwhile
            continue
        stopped += 1
    return stopped
