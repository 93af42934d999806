#!/usr/bin/env python
"""Benchmark of search (PLT-2): latency over a large workspace for a user who sees 10 % of it,
and the time of a full reindex, on SQLite (FTS5) and PostgreSQL (tsvector + GIN).

For each backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema
`bench_search_<pid>` when it answers) it migrates a schema and bulk-loads --elements elements
(projects of 1 folder, 9 workflows, 90 datasets) with ~5 typed metadata entries each and a note
on 5 % of them, straight into the tables (executemany on SQLite, COPY on PostgreSQL). Each
project has its own permission set: alice owns all, bob is viewer of 10 % of the projects, two
of 50 other users are collaborators of each. It then rebuilds the search index with the reindex
job's function (timed) and measures `search.service.search` for bob over a mix of queries from
rare (a sample code: ~10 matches) to very common (a metadata name on every dataset), with
"search in" and kind filters, first and later pages.

    .venv/bin/python benchmarks/bench_search.py                       # 1,000,000 elements
    .venv/bin/python benchmarks/bench_search.py --elements 20000      # quick run

Results: a table on stdout and benchmarks/results/bench_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cryovault.access.actor import Actor
from cryovault.access.users import create_user
from cryovault.db.engine import make_engine, make_sessionmaker
from cryovault.db.migrate import upgrade
from cryovault.metadata.quantities import resolve_unit, to_base
from cryovault.search.index import reindex_all
from cryovault.search.service import search

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_search.json"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 200.0
PROJECT_SIZE = 100  # 1 folder + 9 workflows + 90 datasets
VISIBLE_SHARE = 0.10

PROTEINS = ["Apoferritin", "GroEL", "TRPV1", "Spike", "Ribosome", "Proteasome", "Nucleosome",
            "ATPase", "GPCR", "Aldolase", "Galactosidase", "Tau"]
MICROSCOPES = ["Krios G4", "Krios G3i", "Glacios", "Talos Arctica", "CRYO ARM 300"]
DETECTORS = ["Falcon 4i", "K3", "Falcon 3EC", "DE64"]
GRIDS = ["Quantifoil R1.2/1.3", "UltrAuFoil R1.2/1.3", "C-flat 2/1", "Lacey carbon"]
BUFFERS = ["HEPES pH 7.5", "Tris pH 8.0", "PBS", "MES pH 6.5"]
NOTE_WORDS = ["thin", "ice", "contamination", "drift", "good", "particles", "aggregation",
              "crystalline", "blotting", "humidity", "retake", "promising", "astigmatism"]


def now() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------------


class Loader:
    """Rows for the tables, written in batches by executemany (SQLite) or COPY (PostgreSQL)."""

    TABLES = {
        "acls": ("id", "element_id"),
        "acl_grants": ("acl_id", "user_id", "level"),
        "elements": ("id", "kind", "name", "name_key", "parent_id", "description", "status",
                     "workflow_type", "dataset_type", "position", "depth", "creator_id",
                     "acl_id", "deleting", "created_at", "updated_at"),
        "element_ancestors": ("element_id", "ancestor_id", "depth"),
        "metadata_entries": ("id", "element_id", "group_name", "name", "name_key", "value_type",
                             "text_value", "number_value", "quantity", "unit", "base_value",
                             "creator_id", "created_at", "updated_at"),
        "notes": ("id", "element_id", "author_id", "body", "created_at", "updated_at"),
    }

    def __init__(self, engine, batch: int = 20_000) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.rows: dict[str, list[tuple]] = {t: [] for t in self.TABLES}
        self.batch = batch
        self.counts: dict[str, int] = dict.fromkeys(self.TABLES, 0)
        self.raw = engine.raw_connection()

    def _value(self, value: Any) -> Any:
        if not self.sqlite:
            return value
        if isinstance(value, uuid.UUID):
            return value.hex
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, bool):
            return int(value)
        return value

    def add(self, table: str, *values: Any) -> None:
        self.rows[table].append(tuple(self._value(v) for v in values))
        if len(self.rows[table]) >= self.batch:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        # Parents before children: the foreign keys are checked row by row.
        order = ["elements", "acls", "acl_grants", "element_ancestors", "metadata_entries",
                 "notes"]
        for name in order if table is None else [table]:
            rows = self.rows[name]
            if not rows:
                continue
            if table is not None and name != "elements":
                self.flush("elements")
            columns = self.TABLES[name]
            cursor = self.raw.cursor()
            if self.sqlite:
                marks = ", ".join("?" for _ in columns)
                cursor.executemany(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})",
                                   rows)
            else:
                with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cursor.close()
            self.counts[name] += len(rows)
            self.rows[name] = []

    def commit(self) -> None:
        self.flush()
        self.raw.commit()

    def close(self) -> None:
        self.raw.close()


def build(engine, sessions: sessionmaker[Session], n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with sessions() as db:
        users = {name: create_user(db, name, "bench-password-1") for name in ("alice", "bob")}
        others = [create_user(db, f"user{i:02d}", "bench-password-1") for i in range(50)]
        db.commit()
        ids = {name: user.id for name, user in users.items()}
        other_ids = [u.id for u in others]
    alice, bob = ids["alice"], ids["bob"]
    loader = Loader(engine)
    if loader.sqlite:
        loader.raw.execute("PRAGMA foreign_keys=OFF")  # rows are written parents first anyway
    projects = max(1, n // PROJECT_SIZE)
    bob_projects = set(rng.sample(range(projects), max(1, round(projects * VISIBLE_SHARE))))
    units = {name: resolve_unit(None, name) for name in
             ("angstrom", "micrometer", "elementary_charge / angstrom ** 2", "second",
              "kilovolt", "degree", "milligram / milliliter")}
    started = time.perf_counter()
    count = 0
    t0 = now()
    bob_codes: list[str] = []  # sample codes on datasets bob may see: the rare queries

    def metadata(element_id: uuid.UUID, entries: list[tuple]) -> None:
        for group, name, value_type, value, unit in entries:
            number = float(value) if value_type in ("double", "integer") else None
            quantity = base = None
            if unit is not None:
                q, choice = units[unit]
                quantity, base = q.name, to_base(number, q, choice)
            elif number is not None:
                base = number
            text_value = repr(number) if value_type == "double" else str(value)
            loader.add("metadata_entries", uuid.uuid4(), element_id, group, name, name.casefold(),
                       value_type, text_value, number, quantity, unit, base, alice, t0, t0)

    def element(kind: str, name: str, parent: list[uuid.UUID], acl: uuid.UUID, position: int,
                **extra: Any) -> uuid.UUID:
        nonlocal count
        element_id = uuid.uuid4()
        created = t0 + timedelta(seconds=count)
        loader.add("elements", element_id, kind, name, name.casefold(),
                   parent[-1] if parent else None, extra.get("description", ""),
                   extra.get("status"), extra.get("workflow_type"), extra.get("dataset_type"),
                   position, len(parent), alice, acl, False, created, created)
        loader.add("element_ancestors", element_id, element_id, 0)
        for depth, ancestor in enumerate(reversed(parent), start=1):
            loader.add("element_ancestors", element_id, ancestor, depth)
        if rng.random() < 0.05:
            words = " ".join(rng.choice(NOTE_WORDS) for _ in range(12))
            loader.add("notes", uuid.uuid4(), element_id, alice, f"Session note: {words}.", created,
                       created)
        count += 1
        return element_id

    for p in range(projects):
        protein = PROTEINS[p % len(PROTEINS)]
        acl = uuid.uuid4()
        folder = element("folder", f"Project {p:05d} {protein}", [], acl, 0,
                         description=f"{protein} structure, group {p % 40}")
        loader.add("acls", acl, folder)
        loader.add("acl_grants", acl, alice, 3)
        if p in bob_projects:
            loader.add("acl_grants", acl, bob, 1)
        for other in rng.sample(other_ids, 2):
            loader.add("acl_grants", acl, other, 2)
        metadata(folder, [
            ("Core", "Protein", "string", protein, None),
            ("Core", "Buffer", "string", rng.choice(BUFFERS), None),
            ("Custom", "Concentration", "double", round(rng.uniform(0.5, 5), 2),
             "milligram / milliliter"),
            ("Custom", "Grant", "string", f"ERC-{rng.randrange(10_000):04d}", None),
            ("Custom", "Priority", "integer", rng.randrange(1, 6), None),
        ])
        for w in range(9):
            microscope = rng.choice(MICROSCOPES)
            workflow = element("workflow", f"Workflow {w} {microscope}", [folder], acl, w,
                               workflow_type="spa")
            metadata(workflow, [
                ("Instrument", "Microscope", "string", microscope, None),
                ("Instrument", "Detector", "string", rng.choice(DETECTORS), None),
                ("Instrument", "Voltage", "double", 300.0, "kilovolt"),
                ("Instrument", "Spherical aberration", "double", 2.7, None),
                ("Custom", "Session date", "date", f"2025-{rng.randrange(1, 13):02d}-"
                 f"{rng.randrange(1, 29):02d}", None),
            ])
            for d in range(10):
                code = f"SC-{rng.randrange(100_000):05d}"
                if p in bob_projects and len(bob_codes) < 50:
                    bob_codes.append(code)
                dataset = element("dataset", f"Dataset {d} grid {rng.randrange(1, 13)}",
                                  [folder, workflow], acl, d, status="completed",
                                  dataset_type="free")
                metadata(dataset, [
                    ("Acquisition", "Pixel size", "double", round(rng.uniform(0.6, 1.2), 3),
                     "angstrom"),
                    ("Acquisition", "Defocus", "double", round(rng.uniform(-2.5, -0.5), 2),
                     "micrometer"),
                    ("Acquisition", "Total dose", "double", round(rng.uniform(30, 60), 1),
                     "elementary_charge / angstrom ** 2"),
                    ("Acquisition", "Grid type", "string", rng.choice(GRIDS), None),
                    ("Custom", "Sample code", "string", code, None),
                ])
        if (p + 1) % 200 == 0:
            loader.commit()
            elapsed = time.perf_counter() - started
            print(f"  loaded {count:,} elements in {elapsed:.0f} s", file=sys.stderr, flush=True)
    loader.commit()
    if loader.sqlite:
        loader.raw.execute("PRAGMA foreign_keys=ON")
    loader.close()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return {"elements": count, "projects": projects, "bob_projects": len(bob_projects),
            "rows": loader.counts, "load_s": round(time.perf_counter() - started, 1),
            "bob_codes": bob_codes,
            "bob": str(bob), "alice": str(alice)}


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def query_mix(rng: random.Random, codes: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(class, query, options): what a facility's users type, from rare to very common."""
    mix: list[tuple[str, str, dict[str, Any]]] = []
    for code in rng.sample(codes, min(10, len(codes))):
        mix.append(("rare: sample code", code, {}))
    for protein in PROTEINS[:6]:
        mix.append(("protein (projects)", protein.lower(), {}))
        mix.append(("protein, names only", protein.lower(), {"fields": ("name",)}))
    for microscope in MICROSCOPES:
        mix.append(("two words", f"{microscope.split()[0].lower()} {rng.choice(DETECTORS)}", {}))
    for word in ("apofer", "proteas", "quantif"):
        mix.append(("prefix", word, {}))
    for word in NOTE_WORDS[:5]:
        mix.append(("notes only", word, {"fields": ("notes",)}))
    mix.append(("very common: metadata name", "defocus", {}))
    mix.append(("very common: metadata name", "pixel size", {}))
    mix.append(("very common, datasets", "grid", {"kinds": ("dataset",)}))
    mix.append(("very common, page 5", "defocus", {"offset": 80}))
    mix.append(("very common: kind word", "dataset", {}))
    return mix


def measure(sessions: sessionmaker[Session], actor: Actor, reps: int, seed: int,
            codes: list[str]) -> dict[str, Any]:
    rng = random.Random(seed)
    mix = query_mix(rng, codes)
    samples: dict[str, list[float]] = {}
    totals: dict[str, list[int]] = {}
    everything: list[float] = []
    for rep in range(reps + 1):
        for label, query, options in mix:
            with sessions() as db:
                t = time.perf_counter()
                page = search(db, actor, query, fields=options.get("fields", ("name", "metadata",
                                                                               "notes")),
                              kinds=options.get("kinds"), offset=options.get("offset", 0),
                              limit=20)
                elapsed = (time.perf_counter() - t) * 1000
            if rep == 0:
                continue  # warm-up round
            samples.setdefault(label, []).append(elapsed)
            totals.setdefault(label, []).append(page.total)
            everything.append(elapsed)
    classes = {label: {"n": len(v), "p50_ms": round(statistics.median(v), 2),
                       "p99_ms": round(percentile(v, 0.99), 2),
                       "matches_visible": round(statistics.mean(totals[label]))}
               for label, v in samples.items()}
    return {"queries": len(everything), "p50_ms": round(statistics.median(everything), 2),
            "p99_ms": round(percentile(everything, 0.99), 2),
            "max_ms": round(max(everything), 2), "classes": classes}


def _pg_url(base: str, schema: str) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = None
    if name == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="bench_search_"))
        url = f"sqlite:///{tmp / 'bench.db'}"
        admin_engine = None
        schema = None
    else:
        base = os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
        schema = f"bench_search_{os.getpid()}"
        admin_engine = make_engine(_pg_url(base, "public"))
        try:
            with admin_engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            return {"backend": name, "skipped": f"PostgreSQL does not answer: {exc}"}
        url = _pg_url(base, schema)
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        print(f"[{name}] loading {args.elements:,} elements …", file=sys.stderr, flush=True)
        data = build(engine, sessions, args.elements, args.seed)
        print(f"[{name}] reindexing …", file=sys.stderr, flush=True)
        with sessions() as db:
            t = time.perf_counter()
            indexed = reindex_all(db)
            reindex_s = time.perf_counter() - t
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        print(f"[{name}] measuring …", file=sys.stderr, flush=True)
        bob = Actor(uuid.UUID(data["bob"]), "bob", frozenset())
        results = measure(sessions, bob, args.reps, args.seed, data.pop("bob_codes"))
        size = None
        if name == "sqlite":
            size = round((tmp / "bench.db").stat().st_size / 2**20)
        return {"backend": name, "data": data, "indexed": indexed,
                "reindex_s": round(reindex_s, 1), "database_mib": size, **results}
    finally:
        engine.dispose()
        if admin_engine is not None:
            if not args.keep:
                with admin_engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin_engine.dispose()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nSearch over {report['elements']:,} elements, user sees "
          f"{VISIBLE_SHARE:.0%} (target p99 < {TARGET_P99_MS:.0f} ms)\n")
    for backend in report["backends"]:
        if "skipped" in backend:
            print(f"{backend['backend']}: skipped — {backend['skipped']}")
            continue
        print(f"{backend['backend']}: {backend['queries']} queries, p50 {backend['p50_ms']} ms, "
              f"p99 {backend['p99_ms']} ms, max {backend['max_ms']} ms; load "
              f"{backend['data']['load_s']} s; full reindex {backend['reindex_s']} s")
        print(f"  {'query class':34} {'matches':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for label, c in backend["classes"].items():
            print(f"  {label:34} {c['matches_visible']:>9,} {c['p50_ms']:>8} {c['p99_ms']:>8}")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=10, help="rounds of the query mix")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database for profiling")
    args = parser.parse_args(argv)
    report = {"benchmark": "bench_search", "elements": args.elements,
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              "target_p99_ms": TARGET_P99_MS,
              "backends": [run_backend(b.strip(), args) for b in args.backends.split(",")]}
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
