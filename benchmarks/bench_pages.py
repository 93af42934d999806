#!/usr/bin/env python
"""Benchmark of the portal's heaviest pages: the workspace page and the explorer tree of a
dataset with --files files (default 20,000) and of a folder with --workflows workflows
(default 1,000), on SQLite and PostgreSQL.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema
`bench_pages_<pid>` when it answers, as tests/conftest.py makes them) it builds the tree through
the services, signs alice (the owner) and bob (a viewer of the big session's workflow and of
every 8th workflow of the folder, so that the folders above are path-only cards for him) in
through the login form, then times --reps GET requests per page after --warmup ones:

* server time: from the request entering the ASGI app to the last body chunk leaving it (a
  timing middleware wrapped around the app; the target applies to it);
* client time: as seen by an httpx client over TCP to uvicorn on 127.0.0.1 (default), or
  through the Starlette TestClient with --transport testclient;
* SQL: statements per request and their summed time (engine events).

    .venv/bin/python benchmarks/bench_pages.py                          # 20,000 files, 1,000 wfs
    .venv/bin/python benchmarks/bench_pages.py --files 2000 --workflows 100 --reps 50  # quick
    .venv/bin/python benchmarks/bench_pages.py --profile   # + cProfile of each page, in-thread

Results: a table on stdout and benchmarks/results/bench_pages.json; profiles in
benchmarks/results/bench_pages_profiles/.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cryovault.access.actor import Actor
from cryovault.access.sharing import set_sharing
from cryovault.access.users import create_user
from cryovault.db.elements import Element
from cryovault.db.engine import make_engine
from cryovault.db.migrate import upgrade
from cryovault.db.users import User
from cryovault.settings import Settings
from cryovault.web.app import create_app
from cryovault.workspace.elements import create_element

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_pages.json"
PROFILES = HERE / "results" / "bench_pages_profiles"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 150.0
PASSWORD = "bench-password-1"
PROTEINS = ["Apoferritin", "GroEL", "TRPV1", "Spike", "Ribosome 70S", "Proteasome 20S",
            "Nucleosome", "AAA+ ATPase", "GPCR-Gs", "Aldolase", "Beta-galactosidase", "Tau PHF"]
ITEM = re.compile(r'data-id="[0-9a-f-]{36}"')


# --------------------------------------------------------------------------------------------
# Server-side timing and SQL accounting
# --------------------------------------------------------------------------------------------


class ServerTimer:
    """ASGI wrapper: the time from the request entering the app to its last body chunk."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # Set before handing the last chunk on, so the client cannot read it first.
                self.last_ms = (time.perf_counter() - started) * 1000
            await send(message)

        await self.app(scope, receive, timed_send)


class SqlCounter:
    """Statements and their time on an engine, since the last reset (requests are serial)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.seconds = 0.0
        self.statements: list[tuple[float, str]] = []
        self.keep = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.count, self.seconds, self.statements = 0, 0.0, []

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        elapsed = time.perf_counter() - conn.info["bench_started"].pop()
        self.count += 1
        self.seconds += elapsed
        if self.keep:
            self.statements.append((elapsed * 1000, " ".join(statement.split())))


class GcTimer:
    """Pauses of Python's cyclic garbage collector (any thread), since the last reset."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.seconds, self.full = 0.0, 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info.get("generation") == 2

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


# --------------------------------------------------------------------------------------------
# Building the tree
# --------------------------------------------------------------------------------------------


@dataclass
class Tree:
    alice: Actor
    bob: Actor
    dataset: uuid.UUID | None = None
    folder: uuid.UUID | None = None
    files: int = 0
    workflows: int = 0
    deep_cursor: str = ""
    build: list[dict[str, Any]] = field(default_factory=list)


def _cursor(value: Any, element_id: uuid.UUID) -> str:
    """A name-sort cursor as the page's "Next page" link carries it."""
    raw = json.dumps([value, str(element_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def build_tree(sessions: sessionmaker[Session], files: int, workflows: int, batch: int,
               seed: int) -> Tree:
    rng = random.Random(seed)
    with sessions() as db:
        alice_user = create_user(db, "alice", PASSWORD)
        bob_user = create_user(db, "bob", PASSWORD)
        db.commit()
        tree = Tree(Actor.of(alice_user), Actor.of(bob_user))
    alice = tree.alice

    def phase(name: str, made: int, started: float) -> None:
        seconds = time.perf_counter() - started
        tree.build.append({"phase": name, "elements": made, "seconds": round(seconds, 1),
                           "elements_per_s": round(made / seconds, 1)})
        print(f"    {name:<40} {made:>7,} elements in {seconds:6.1f} s", file=sys.stderr,
              flush=True)

    started = time.perf_counter()
    db = sessions()
    facility = create_element(db, alice, kind="folder", name="Facility").id
    krios = create_element(db, alice, kind="folder", name="Krios-1", parent_id=facility).id
    session_wf = create_element(db, alice, kind="workflow", name="Apoferritin 2025-03-14",
                                parent_id=krios, workflow_type="spa").id
    imaging = db.scalar(select(Element.id).where(Element.parent_id == session_wf,
                                                 Element.name == "Imaging"))
    dataset = create_element(db, alice, kind="dataset", name="Movies", parent_id=imaging,
                             dataset_type="free").id
    for i in range(files):
        ext = rng.choice(("tiff", "tiff", "tiff", "mrc", "eer"))
        name = f"FoilHole_{rng.randrange(10**7, 10**8)}_Data_{i:05d}_fractions.{ext}"
        create_element(db, alice, kind="file", name=name, parent_id=dataset)
        if (i + 1) % batch == 0:
            db.commit()
            if (i + 1) % (batch * 10) == 0:
                print(f"      {i + 1:>7,} files", file=sys.stderr, flush=True)
    db.commit()
    phase(f"dataset of {files:,} files", files + 9, started)

    started = time.perf_counter()
    folder = create_element(db, alice, kind="folder", name="Screening 2025",
                            parent_id=facility).id
    shared = []
    for i in range(workflows):
        wf = create_element(db, alice, kind="workflow", parent_id=folder,
                            name=f"{rng.choice(PROTEINS)} grid {i:04d}", workflow_type="spa").id
        if i % 8 == 0:
            shared.append(wf)
        if (i + 1) % max(batch // 4, 1) == 0:
            db.commit()
    db.commit()
    phase(f"folder of {workflows:,} spa workflows", workflows * 4 + 1, started)

    started = time.perf_counter()
    for element in [session_wf, *shared]:
        set_sharing(db, alice, element, "private", None, [("alice", "owner"), ("bob", "viewer")])
    db.commit()
    phase(f"share {len(shared) + 1} workflows with bob", 0, started)

    # The cursor of the dataset's middle page, sorted by name.
    keys = db.execute(select(Element.name_key, Element.id).where(Element.parent_id == dataset)
                      .order_by(Element.name_key, Element.id)
                      .offset(max(files // 2 - 1, 0)).limit(1)).first()
    db.close()
    tree.dataset, tree.folder, tree.files, tree.workflows = dataset, folder, files, workflows
    tree.deep_cursor = _cursor(keys[0], keys[1]) if keys else ""
    return tree


# --------------------------------------------------------------------------------------------
# Serving and measuring
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: Any, transport: str) -> Iterator[Callable[[], Any]]:
    """Yields a factory of clients (own cookie jars) talking to `app`."""
    if transport == "testclient":
        clients: list[TestClient] = []

        def make_test_client() -> TestClient:
            client = TestClient(app)
            clients.append(client)
            return client

        try:
            yield make_test_client
        finally:
            for c in clients:
                c.close()
        return

    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    http_clients: list[httpx.Client] = []

    def make_http_client() -> httpx.Client:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        http_clients.append(client)
        return client

    try:
        yield make_http_client
    finally:
        for c in http_clients:
            c.close()
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Measurement:
    backend: str
    user: str
    page: str
    url: str
    n: int
    server_p50_ms: float
    server_p99_ms: float
    server_max_ms: float
    client_p50_ms: float
    client_p99_ms: float
    sql_per_request: float
    sql_p50_ms: float
    sql_p99_ms: float
    gc_p99_ms: float
    gc_max_ms: float
    full_gcs: int
    outcome: str
    target_ms: float = TARGET_P99_MS

    @property
    def passed(self) -> bool:
        return self.server_p99_ms < self.target_ms


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), int(-(-q * len(values) // 1))))
    return values[rank - 1]


def _outcome(url: str, body: str) -> str:
    if url.startswith("/ui/tree"):
        nodes = body.count('<li class="tree-node')
        more = "more" if "More…" in body else "last"
        return f"{nodes} tree nodes, {more}"
    items = len(ITEM.findall(body.split('id="items"', 1)[-1]))
    more = "next" if 'id="next-page"' in body else "last"
    return f"{items} items, {more}, {len(body) // 1024} KiB"


def measure(backend: str, user: str, client: Any, timer: ServerTimer, sql: SqlCounter,
            gcs: GcTimer, page: str, url: str, reps: int, warmup: int) -> Measurement:
    server, client_ms, sql_ms, counts, gc_ms = [], [], [], [], []
    full_gcs = 0
    body = ""
    for i in range(warmup + reps):
        sql.reset()
        gcs.reset()
        t0 = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{user} GET {url}: {response.status_code} {response.text[:300]}")
        if i >= warmup:
            server.append(timer.last_ms)
            client_ms.append(elapsed)
            sql_ms.append(sql.seconds * 1000)
            counts.append(sql.count)
            gc_ms.append(gcs.seconds * 1000)
            full_gcs += gcs.full
        body = response.text
    server.sort()
    client_ms.sort()
    sql_ms.sort()
    gc_ms.sort()
    m = Measurement(backend, user, page, url, reps, percentile(server, 0.5),
                    percentile(server, 0.99), server[-1], percentile(client_ms, 0.5),
                    percentile(client_ms, 0.99), statistics.fmean(counts),
                    percentile(sql_ms, 0.5), percentile(sql_ms, 0.99), percentile(gc_ms, 0.99),
                    gc_ms[-1], full_gcs, _outcome(url, body))
    mark = "ok" if m.passed else "MISS"
    print(f"    {user:<6} {page:<38} server p50 {m.server_p50_ms:7.1f}  p99 "
          f"{m.server_p99_ms:7.1f} ms  {m.sql_per_request:4.1f} SQL  GC p99 {m.gc_p99_ms:5.1f} "
          f"({m.full_gcs} full)  {mark}  [{m.outcome}]",
          file=sys.stderr, flush=True)
    return m


def sign_in(make_client: Callable[[], Any], username: str) -> Any:
    client = make_client()
    response = client.post("/login", data={"login": username, "password": PASSWORD,
                                            "next": "/workspace"}, follow_redirects=False)
    if response.status_code != 303:
        raise SystemExit(f"login of {username} failed: {response.status_code}")
    return client


def pages(tree: Tree) -> list[tuple[str, str, str]]:
    """(user, label, url) of every measured page."""
    files, wfs = f"{tree.files:,} files", f"{tree.workflows:,} workflows"
    d, f = tree.dataset, tree.folder
    alice = [
        ("alice", f"workspace, dataset {files}", f"/workspace/{d}"),
        ("alice", f"workspace, dataset {files}, middle page",
         f"/workspace/{d}?view=list&sort=name&order=asc&cursor={tree.deep_cursor}"),
        ("alice", f"workspace, dataset {files}, newest", f"/workspace/{d}?sort=date&order=desc"),
        ("alice", f"workspace, dataset {files}, cards", f"/workspace/{d}?view=cards"),
        ("alice", f"workspace, folder {wfs}", f"/workspace/{f}"),
        ("alice", f"workspace, folder {wfs}, cards", f"/workspace/{f}?view=cards"),
        ("alice", f"workspace, folder {wfs}, newest", f"/workspace/{f}?sort=date&order=desc"),
        ("alice", f"tree, dataset {files}", f"/ui/tree?parent={d}"),
        ("alice", f"tree, folder {wfs}", f"/ui/tree?parent={f}"),
    ]
    bob = [
        ("bob", f"workspace, dataset {files}", f"/workspace/{d}"),
        ("bob", f"workspace, folder {wfs} (card)", f"/workspace/{f}"),
        ("bob", f"tree, dataset {files}", f"/ui/tree?parent={d}"),
        ("bob", f"tree, folder {wfs} (card)", f"/ui/tree?parent={f}"),
    ]
    return alice + bob


# --------------------------------------------------------------------------------------------
# Profiling (in the calling thread, through the TestClient's portal is not possible: the sync
# endpoints run in worker threads; so the endpoint functions are called directly here)
# --------------------------------------------------------------------------------------------


def profile_pages(app: Any, sql: SqlCounter, tree: Tree, out_dir: Path, backend: str,
                  reps: int) -> dict[str, Any]:
    from starlette.requests import Request

    from cryovault.access.credentials import open_session
    from cryovault.web.context import SESSION_COOKIE
    from cryovault.web.ui.common import page_caller
    from cryovault.web.ui.workspace_pages import tree as tree_endpoint
    from cryovault.web.ui.workspace_pages import workspace

    sessions = app.state.sessions
    report: dict[str, Any] = {}
    secrets = {}
    with sessions() as db:
        for actor in (tree.alice, tree.bob):
            user = db.get(User, actor.user_id)
            secrets[actor.username] = open_session(db, user, timedelta(hours=12))
        db.commit()

    for user, label, url in pages(tree):
        path, _, query = url.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if p)
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(), "root_path": "", "scheme": "http",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "app": app,
                 "headers": [(b"cookie", f"{SESSION_COOKIE}={secrets[user]}".encode())]}

        def call(scope=scope, path=path, params=params) -> None:
            request = Request(scope)
            with sessions() as db:
                caller = page_caller(request, db)
                if path.startswith("/ui/tree"):
                    response = tree_endpoint(request, parent=params.get("parent"), sort="name",
                                             order="asc", cursor=None, caller=caller, db=db)
                else:
                    response = workspace(request, element_id=path.rsplit("/", 1)[1],
                                         view=params.get("view", "list"),
                                         sort=params.get("sort"),
                                         order=params.get("order", "asc"),
                                         cursor=params.get("cursor"), caller=caller, db=db)
                db.commit()
            assert response.status_code == 200

        for _ in range(3):
            call()
        sql.reset()
        sql.keep = True
        call()
        sql.keep = False
        statements = sorted(sql.statements, reverse=True)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(reps):
            call()
        profiler.disable()
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer).sort_stats("cumulative")
        stats.print_stats(40)
        slug = re.sub(r"[^a-z0-9]+", "-", f"{backend} {user} {label}".lower()).strip("-")
        target = out_dir / f"profile-{slug}.txt"
        target.write_text(
            f"{backend} {user} {label}: {url}\n\nSQL of one request ({len(statements)} "
            f"statements, {sum(s[0] for s in statements):.1f} ms), slowest first:\n"
            + "\n".join(f"  {ms:8.2f} ms  {sql_text[:400]}" for ms, sql_text in statements)
            + f"\n\ncProfile of {reps} calls, by cumulative time:\n" + buffer.getvalue())
        report[f"{user}: {label}"] = {
            "file": str(target), "statements": len(statements),
            "slowest_sql": [{"ms": round(ms, 2), "sql": s[:300]} for ms, s in statements[:3]],
        }
        print(f"    profile {user:<6} {label:<38} -> {target.name}", file=sys.stderr,
              flush=True)
    return report


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def _pg_url(base: str, schema: str | None) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    if schema:
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="cryovault-bench-pages-")
    admin = None
    if name == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
        note = f"SQLite {sqlite3.sqlite_version}, file {tmp}/bench.db"
    else:
        base = args.postgres_url
        schema = f"bench_pages_{os.getpid()}"
        admin = make_engine(_pg_url(base, None))
        try:
            with admin.begin() as conn:
                version = conn.scalar(text("SHOW server_version"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            admin.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            return {"skipped": f"PostgreSQL not reachable: {reason}"}
        url = _pg_url(base, schema)
        note = f"PostgreSQL {version}, schema {schema}"

    print(f"\n== {name}: {note}", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"note": note}
    try:
        engine = make_engine(url)
        upgrade(engine)
        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        started = time.perf_counter()
        tree = build_tree(sessions, args.files, args.workflows, args.batch, args.seed)
        result["build_seconds"] = round(time.perf_counter() - started, 1)
        result["build"] = tree.build
        analyzed = False
        if name == "postgres" or args.sqlite_analyze:
            # PostgreSQL's autovacuum analyses fresh tables within a minute or so: do it now so
            # the plans are those of a running server. SQLite is never analysed by the app.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            analyzed = True
        result["analyzed"] = analyzed
        result["gc"] = args.gc
        engine.dispose()

        settings = Settings(data_dir=Path(tmp), database_url=url, auto_upgrade=False)
        app = create_app(settings, resume_jobs=False)
        sql = SqlCounter(app.state.engine)
        gcs = GcTimer()
        timer = ServerTimer(app)
        measurements: list[Measurement] = []
        print(f"  measuring through {args.transport}: {args.reps} requests + {args.warmup} "
              "warm-up per page", file=sys.stderr, flush=True)
        with serve(timer, args.transport) as make_client:
            clients = {"alice": sign_in(make_client, "alice"), "bob": sign_in(make_client, "bob")}
            if args.gc == "freeze":
                # What a server could do once started: move the long-lived heap (modules,
                # compiled templates and statements) out of the collector's reach.
                for user, _, page_url in pages(tree):
                    clients[user].get(page_url)
                gc.collect()
                gc.freeze()
            for user, label, page_url in pages(tree):
                measurements.append(measure(name, user, clients[user], timer, sql, gcs, label,
                                            page_url, args.reps, args.warmup))
        gcs.close()
        if args.gc == "freeze":
            gc.unfreeze()
        result["results"] = [{**asdict(m), "pass": m.passed} for m in measurements]
        if args.profile or (args.profile_misses and not all(m.passed for m in measurements)):
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            result["profiles"] = profile_pages(app, sql, tree, args.profile_dir, name,
                                               args.profile_reps)
        app.state.engine.dispose()
    finally:
        if admin is not None:
            if not args.keep:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
        if args.keep:
            print(f"  kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"\ncryovault page benchmark: dataset of {meta['files']:,} files, folder of "
          f"{meta['workflows']:,} workflows; {meta['reps']} requests per page through "
          f"{meta['transport']}; {meta['cpus']} CPUs")
    header = (f"{'backend':<9}{'user':<6}{'page':<40}{'srv p50':>8}{'srv p99':>8}{'cli p99':>8}"
              f"{'SQL/req':>8}{'SQL p50':>8}{'SQL p99':>8}{'GC p99':>8}  result")
    for backend, data in report["backends"].items():
        if "skipped" in data:
            print(f"\n{backend}: skipped: {data['skipped']}")
            continue
        print(f"\n{backend}: {data['note']}; built in {data['build_seconds']} s; "
              f"statistics analysed: {data['analyzed']}; garbage collector: {data['gc']}")
        print(header)
        print("-" * len(header))
        for r in data["results"]:
            print(f"{backend:<9}{r['user']:<6}{r['page']:<40}{r['server_p50_ms']:>8.1f}"
                  f"{r['server_p99_ms']:>8.1f}{r['client_p99_ms']:>8.1f}"
                  f"{r['sql_per_request']:>8.1f}{r['sql_p50_ms']:>8.1f}{r['sql_p99_ms']:>8.1f}"
                  f"{r['gc_p99_ms']:>8.1f}  "
                  f"{'pass' if r['pass'] else 'FAIL'}  ({r['outcome']})")
    misses = [r for d in report["backends"].values() for r in d.get("results", [])
              if not r["pass"]]
    print(f"\ntimes in ms; target: server p99 < {TARGET_P99_MS:g} ms; {len(misses)} missed; "
          f"wall time {meta['wall_s']:.0f} s; JSON: {meta['json']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000, help="files in the big dataset")
    parser.add_argument("--workflows", type=int, default=1_000,
                        help="workflows in the big folder")
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (default both)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "CRYOVAULT_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--transport", choices=("uvicorn", "testclient"), default="uvicorn")
    parser.add_argument("--gc", choices=("default", "freeze"), default="default",
                        help="freeze: gc.freeze() after a warm-up, before measuring")
    parser.add_argument("--reps", type=int, default=200, help="measured requests per page")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests first")
    parser.add_argument("--batch", type=int, default=1000, help="commit every N elements")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sqlite-analyze", action="store_true",
                        help="run ANALYZE on SQLite after the build (the app does not)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile + SQL listing of each page (files in --profile-dir)")
    parser.add_argument("--profile-misses", action=argparse.BooleanOptionalAction, default=True,
                        help="profile a backend's pages when one of them misses the target")
    parser.add_argument("--profile-reps", type=int, default=30)
    parser.add_argument("--profile-dir", type=Path, default=PROFILES)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.reps < 100:
        print("note: fewer than 100 requests per page make p99 the maximum", file=sys.stderr)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    report: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": args.files, "workflows": args.workflows, "reps": args.reps,
            "warmup": args.warmup, "transport": args.transport, "gc": args.gc, "seed": args.seed,
            "target_server_p99_ms": TARGET_P99_MS, "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
        },
        "backends": {},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for backend in backends:
        report["backends"][backend] = run_backend(backend, args)
    report["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    report["meta"]["json"] = str(args.json)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
