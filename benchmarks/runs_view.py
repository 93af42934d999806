#!/usr/bin/env python
"""Benchmark of opening a large EPU run (SPEC SPA-2; issue #9 target: p99 < 200 ms server time
for a 50,000-micrograph run), on SQLite and PostgreSQL.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema
`bench_runs_<pid>` when it answers) it migrates a schema, creates alice, an SPA workflow and an
EPU run, and inserts --micrographs micrographs (default 50,000: 90 % completed, 8 % in progress,
2 % failed, with EPU-like metadata) in bulk. It then times --reps requests after --warmup ones,
each through the ASGI app with a timer around it (server time: request in → last body chunk):

* API: the first page of micrographs with the counts, the "errors only" page, a page deep in
  the run by cursor;
* portal: the EPU run view page and its list partial, when they exist (paths given by
  --page, default the run view routes of web/ui/run_pages.py).

    .venv/bin/python benchmarks/runs_view.py                        # 50,000 micrographs
    .venv/bin/python benchmarks/runs_view.py --micrographs 5000 --reps 50   # quick

Prints a table (p50 / p99 ms against the 200 ms target) and writes
benchmarks/results/runs_view.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_pages import ServerTimer  # the same server-side timing as the pages benchmark
from fastapi.testclient import TestClient
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cryovault.access.actor import Actor
from cryovault.access.credentials import create_token
from cryovault.access.users import create_user
from cryovault.db.engine import make_engine
from cryovault.db.migrate import upgrade
from cryovault.db.runs import Micrograph
from cryovault.settings import Settings
from cryovault.web.app import create_app
from cryovault.workspace.elements import create_element, list_children

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "runs_view.json"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 200.0


def metadata_of(index: int, rng: random.Random) -> str:
    return json.dumps({
        "pixel_size_angstrom": 0.83, "dose_e_per_angstrom2": 50.0 + rng.random(),
        "defocus_target_angstrom": rng.choice([8000, 10000, 12000, 14000]),
        "exposure_time_s": 2.5, "number_of_fractions": 40, "magnification": 105000,
        "voltage_kv": 300, "microscope": "TITAN52336320", "detector": "EF-CCD",
        "stage_x_um": rng.uniform(-900, 900), "stage_y_um": rng.uniform(-900, 900),
        "stage_z_um": rng.uniform(-20, 20), "image_shift_x": rng.uniform(-1, 1),
        "image_shift_y": rng.uniform(-1, 1), "grid_square_id": str(8999000 + index // 400),
        "foil_hole_id": str(9015000 + index // 4)}, sort_keys=True)


def build(settings: Settings, count: int) -> tuple[str, str]:
    """alice's token and the id of her EPU run holding `count` micrographs."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    from cryovault.db.engine import make_sessionmaker
    sessions = make_sessionmaker(engine)
    rng = random.Random(7)
    with sessions() as db:
        user = create_user(db, "alice", "bench-password-1")
        _, token = create_token(db, user, "bench")
        actor = Actor.of(user)
        workflow = create_element(db, actor, kind="workflow", name="Apoferritin",
                                  parent_id=None, workflow_type="spa")
        steps = list_children(db, actor, workflow.id).items
        imaging = next(step for step in steps if step.element.name == "Imaging")
        run = create_element(db, actor, kind="dataset", name="EPU run 1",
                             parent_id=imaging.id, dataset_type="epu_run")
        db.commit()
        run_id = run.id
    started = datetime(2026, 11, 1, tzinfo=UTC)
    batch: list[dict] = []
    with engine.begin() as conn:
        for index in range(count):
            draw = rng.random()
            status = "completed" if draw < 0.90 else "in_progress" if draw < 0.98 else "failed"
            when = started + timedelta(seconds=4 * index)
            batch.append({
                "id": uuid.uuid4(), "dataset_id": run_id,
                "name": f"FoilHole_{9015000 + index // 4}_Data_{9017000 + index}_6_"
                        f"{when:%Y%m%d_%H%M%S}",
                "status": status, "problem": "XML: not well-formed" if status == "failed"
                else None, "acquired_at": when, "grid_square_id": str(8999000 + index // 400),
                "foil_hole_id": str(9015000 + index // 4), "metadata_json": metadata_of(index, rng),
                "has_xml": True, "has_movie": status == "completed", "expected_frames": 40,
                "created_at": when, "updated_at": when})
            if len(batch) == 2000:
                conn.execute(insert(Micrograph), batch)
                batch.clear()
        if batch:
            conn.execute(insert(Micrograph), batch)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return token, str(run_id)


def measure(client: TestClient, timer: ServerTimer, url: str, headers: dict, reps: int,
            warmup: int) -> dict[str, float] | None:
    samples = []
    for index in range(warmup + reps):
        response = client.get(url, headers=headers, follow_redirects=False)
        if response.status_code == 404 and index == 0:
            return None
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        if index >= warmup:
            samples.append(timer.last_ms)
    samples.sort()
    return {"p50_ms": statistics.median(samples),
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "max_ms": samples[-1]}


def run_backend(name: str, database_url: str, data_dir: Path, args) -> list[dict]:
    settings = Settings(data_dir=data_dir, database_url=database_url, auto_upgrade=False)
    started = time.perf_counter()
    token, run_id = build(settings, args.micrographs)
    print(f"[{name}] built {args.micrographs:,} micrographs in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    app = create_app(settings, resume_jobs=False)
    timer = ServerTimer(app)
    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    with TestClient(timer) as client:
        # the portal's pages take the session cookie (the API takes the token as well)
        client.post("/api/v1/auth/login", json={"username": "alice",
                                                "password": "bench-password-1"}
                    ).raise_for_status()
        api = f"/api/v1/datasets/{run_id}/micrographs"
        first = client.get(f"{api}?limit=200", headers=headers).json()
        cursor = first["next_cursor"]
        for _ in range(min(100, args.micrographs // 200 - 1)):  # deep into the run
            cursor = client.get(f"{api}?limit=200&cursor={cursor}", headers=headers).json()[
                "next_cursor"] or cursor
        urls = {
            "API first page (50) + counts": f"{api}?limit=50",
            "API errors only": f"{api}?status=failed&limit=50",
            "API page deep by cursor": f"{api}?limit=50&cursor={cursor}",
        }
        for label, template in args.page:
            urls[label] = template.format(run_id=run_id)
        for label, url in urls.items():
            figures = measure(client, timer, url, headers, args.reps, args.warmup)
            if figures is None:
                print(f"[{name}] {label}: {url} answers 404, skipped", file=sys.stderr)
                continue
            rows.append({"backend": name, "request": label, **figures})
    app.state.engine.dispose()
    return rows


def postgres_schema(base: str) -> tuple[str, str] | None:
    schema = f"bench_runs_{os.getpid()}"
    try:
        engine = make_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except OperationalError as exc:
        print(f"PostgreSQL does not answer ({exc.__class__.__name__}); skipped", file=sys.stderr)
        return None
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def drop_schema(base: str, schema: str) -> None:
    engine = make_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micrographs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--page", nargs=2, action="append", metavar=("LABEL", "URL"),
                        default=[["portal: run view page", "/runs/{run_id}"],
                                 ["portal: next items (partial)", "/ui/runs/{run_id}/items"],
                                 ["portal: live update (partial)", "/ui/runs/{run_id}/live"]],
                        help="extra URL to time ({run_id} is replaced); repeatable")
    parser.add_argument("--postgres-url", default=os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL",
                                                                 DEFAULT_PG_URL))
    args = parser.parse_args()
    rows: list[dict] = []
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="cv-bench-runs-") as tmp:
            if backend == "sqlite":
                rows += run_backend("SQLite", f"sqlite:///{tmp}/bench.db", Path(tmp), args)
            elif backend == "postgresql":
                made = postgres_schema(args.postgres_url)
                if made is None:
                    continue
                schema, url = made
                try:
                    rows += run_backend("PostgreSQL", url, Path(tmp), args)
                finally:
                    drop_schema(args.postgres_url, schema)
    load = os.getloadavg()[0]
    print(f"\nEPU run view, {args.micrographs:,} micrographs, {args.reps} requests each "
          f"(server time), load average {load:.2f}, {platform.processor() or platform.machine()}")
    print(f"{'backend':<11} {'request':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target")
    for row in rows:
        verdict = "ok" if row["p99_ms"] < TARGET_P99_MS else "MISSED"
        print(f"{row['backend']:<11} {row['request']:<34} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f}  p99<{TARGET_P99_MS:.0f} {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"micrographs": args.micrographs, "reps": args.reps,
                                   "load_average": load, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
