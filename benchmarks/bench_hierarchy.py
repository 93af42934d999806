#!/usr/bin/env python
"""Benchmark of the workspace hierarchy: bulk creation, listing, breadcrumbs, permission checks.

For each backend (a SQLite file in a temporary directory; PostgreSQL in a fresh schema
`bench_<pid>` when it answers) it builds a realistic tree of --elements elements through the
services (`create_element`, `set_sharing`), then measures p50/p99 latencies of the read paths a
page load goes through, for the owner of the tree (alice) and for a second user (bob) who sees
only the part of it shared with him or public.

    .venv/bin/python benchmarks/bench_hierarchy.py                      # 100,000 elements
    .venv/bin/python benchmarks/bench_hierarchy.py --elements 5000      # quick run

Results: a table on stdout and benchmarks/results/bench_hierarchy.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import CARD, VIEWER, level_name
from cryovault.access.sharing import set_sharing
from cryovault.access.users import create_user
from cryovault.access.visibility import access_level
from cryovault.db.elements import Element
from cryovault.db.engine import make_engine, make_sessionmaker
from cryovault.db.migrate import upgrade
from cryovault.errors import DomainError
from cryovault.workspace.elements import create_element, element_path, list_children
from cryovault.workspace.templates import get_template

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_hierarchy.json"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

LISTING_TARGET_MS = 50.0
PERMISSION_TARGET_MS = 5.0
# No target was set for the breadcrumb: it is held to the listing target (one read per page).
TARGETS = {"listing": LISTING_TARGET_MS, "breadcrumb": LISTING_TARGET_MS,
           "permission": PERMISSION_TARGET_MS}

PROTEINS = ["Apoferritin", "GroEL", "TRPV1", "Spike", "Ribosome 70S", "Proteasome 20S",
            "Nucleosome", "AAA+ ATPase", "GPCR-Gs", "Aldolase", "Beta-galactosidase", "Tau PHF"]
GROUPS = ["Structural Biology", "Membrane Proteins", "Virology", "Chromatin", "Methods",
          "Neurodegeneration", "Enzymology", "Facility Service"]
PAGE = 100


# --------------------------------------------------------------------------------------------
# Building the tree
# --------------------------------------------------------------------------------------------


@dataclass
class Tree:
    """The ids the measurements need, found while building."""

    alice: Actor
    bob: Actor
    carol: Actor
    big_dataset: uuid.UUID | None = None
    big_files: int = 0
    deep_file: uuid.UUID | None = None
    deep_file_depth: int = 0
    campaign_folder: uuid.UUID | None = None
    campaign_workflows: int = 0
    facility_root: uuid.UUID | None = None
    alice_private_file: uuid.UUID | None = None
    bob_root: uuid.UUID | None = None
    bob_private_file: uuid.UUID | None = None
    shared_with_bob: int = 0
    public_folders: int = 0
    phases: list[dict[str, Any]] = field(default_factory=list)


class Builder:
    """Creates elements through the service, committing every `batch` elements."""

    def __init__(self, sessions: sessionmaker[Session], target: int, batch: int) -> None:
        self.sessions = sessions
        self.target = target
        self.batch = batch
        self.count = 0
        self.db: Session = sessions()
        self._since_commit = 0
        self._next_report = max(target // 10, 1)
        self._started = time.perf_counter()

    @property
    def left(self) -> int:
        return self.target - self.count

    def create(self, actor: Actor, kind: str, name: str, parent: uuid.UUID | None = None,
               **kw: Any) -> uuid.UUID:
        view = create_element(self.db, actor, kind=kind, name=name, parent_id=parent, **kw)
        made = 1
        if kind == "workflow":
            made += len(get_template(kw.get("workflow_type") or "free").steps)
        self.count += made
        self._since_commit += made
        if self._since_commit >= self.batch:
            self.commit()
        if self.count >= self._next_report:
            rate = self.count / (time.perf_counter() - self._started)
            print(f"    {self.count:>9,} / {self.target:,} elements  ({rate:,.0f}/s)",
                  file=sys.stderr, flush=True)
            self._next_report += max(self.target // 10, 1)
        return view.id

    def steps(self, workflow_id: uuid.UUID) -> dict[str, uuid.UUID]:
        rows = self.db.execute(
            select(Element.name, Element.id).where(Element.parent_id == workflow_id)
        ).all()
        return dict(rows)

    def commit(self) -> None:
        self.db.commit()
        self.db.close()
        self.db = self.sessions()
        self._since_commit = 0

    def close(self) -> None:
        self.db.commit()
        self.db.close()


def _file_name(rng: random.Random, index: int) -> str:
    ext = rng.choice(("tiff", "tiff", "tiff", "mrc", "eer"))
    return f"FoilHole_{rng.randrange(10**7, 10**8)}_Data_{index:05d}_fractions.{ext}"


class Phase:
    """Times one phase of the build and records its rate."""

    def __init__(self, tree: Tree, builder: Builder, name: str) -> None:
        self.tree, self.builder, self.name = tree, builder, name

    def __enter__(self) -> Phase:
        self.start = time.perf_counter()
        self.count0 = self.builder.count
        return self

    def __exit__(self, *exc: object) -> None:
        self.builder.commit()
        seconds = time.perf_counter() - self.start
        made = self.builder.count - self.count0
        self.tree.phases.append({
            "phase": self.name, "elements": made, "seconds": round(seconds, 3),
            "elements_per_s": round(made / seconds, 1) if seconds else None,
        })


def build_tree(sessions: sessionmaker[Session], n: int, batch: int, seed: int) -> Tree:
    rng = random.Random(seed)
    with sessions() as db:
        alice_user = create_user(db, "alice", "bench-password-1")
        bob_user = create_user(db, "bob", "bench-password-2")
        carol_user = create_user(db, "carol", "bench-password-3")
        db.commit()
        alice, bob = Actor.of(alice_user), Actor.of(bob_user)
    tree = Tree(alice, bob, Actor.of(carol_user))
    b = Builder(sessions, n, batch)

    big_files = max(100, min(20_000, n // 5))
    campaign_wfs = max(20, min(1_000, n // 100))
    bob_budget = max(60, min(300, n // 300))

    # 1. The facility's big session: Facility / Krios-1 / 2025 / <spa workflow> / Imaging /
    #    Movies with `big_files` files, the workflow shared with bob in the middle of private
    #    folders (the folders are cards for him).
    with Phase(tree, b, f"one dataset of {big_files:,} files"):
        facility = b.create(alice, "folder", "Facility")
        krios = b.create(alice, "folder", "Krios-1", facility)
        year = b.create(alice, "folder", "2025", krios)
        big_wf = b.create(alice, "workflow", "Apoferritin 2025-03-14 overnight", year,
                          workflow_type="spa")
        imaging = b.steps(big_wf)["Imaging"]
        movies = b.create(alice, "dataset", "Movies", imaging, dataset_type="free")
        for i in range(big_files):
            file_id = b.create(alice, "file", _file_name(rng, i), movies)
            if i == big_files // 2:
                tree.deep_file = file_id
        tree.facility_root, tree.big_dataset, tree.big_files = facility, movies, big_files

    # 2. A folder with many workflows (a screening campaign); every 8th is shared with bob.
    campaign_ids: list[uuid.UUID] = []
    with Phase(tree, b, f"one folder of {campaign_wfs:,} workflows"):
        campaigns = b.create(alice, "folder", "Campaigns", facility)
        screening = b.create(alice, "folder", "Screening 2025", campaigns)
        for i in range(campaign_wfs):
            name = f"{rng.choice(PROTEINS)} grid {i:04d}"
            campaign_ids.append(b.create(alice, "workflow", name, screening, workflow_type="spa"))
        tree.campaign_folder, tree.campaign_workflows = screening, campaign_wfs

    # 3. The general tree: group root folders, two levels of subfolders, workflows (mostly SPA)
    #    with datasets of files, until only bob's share of the budget is left.
    folders: list[tuple[uuid.UUID, int, int]] = []  # id, depth, index of its root
    roots: list[uuid.UUID] = []
    workflows: list[tuple[uuid.UUID, int, int]] = []  # id, folder depth (-1: root), root index
    first_file: dict[uuid.UUID, uuid.UUID] = {}  # workflow -> its first file in a dataset
    general = n - b.count - bob_budget
    with Phase(tree, b, "general tree"):
        n_roots = 6 if general > 20_000 else 3
        n_sub, n_subsub = (4, 3) if general > 20_000 else (2, 2)
        for r in range(n_roots):
            root = b.create(alice, "folder", GROUPS[r % len(GROUPS)], None)
            roots.append(root)
            folders.append((root, 0, r))
            for s in range(n_sub):
                sub = b.create(alice, "folder", f"Project {chr(65 + s)}", root)
                folders.append((sub, 1, r))
                for t in range(n_subsub):
                    leaf = b.create(alice, "folder", f"Grid box {t + 1}", sub)
                    folders.append((leaf, 2, r))
        for w in range(2):
            wf = b.create(alice, "workflow", f"Unfiled session {w + 1}", None, workflow_type="spa")
            workflows.append((wf, -1, -1))
        for f in range(10):
            b.create(alice, "file", f"notes-{f:02d}.txt", None)
        weights = [1 if depth == 0 else 2 if depth == 1 else 4 for _, depth, _ in folders]
        stop = n - bob_budget
        last_dataset: uuid.UUID | None = None
        while b.count < stop:
            if stop - b.count < 40 and last_dataset is not None:
                b.create(alice, "file", _file_name(rng, b.count), last_dataset)
                continue
            folder, depth, root_index = rng.choices(folders, weights)[0]
            spa = rng.random() < 0.8
            wf = b.create(alice, "workflow", f"{rng.choice(PROTEINS)} {len(workflows):04d}",
                          folder, workflow_type="spa" if spa else "free")
            workflows.append((wf, depth, root_index))
            if spa:
                steps = list(b.steps(wf).values())
            else:
                steps = [b.create(alice, "step", name, wf) for name in ("Model building", "Map")]
            for step in steps:
                for k in range(rng.randint(0, 5)):
                    if b.count >= stop:
                        break
                    b.create(alice, "file", f"report-{k}.pdf", step)
                for d in range(rng.randint(0, 3)):
                    if b.count >= stop:
                        break
                    last_dataset = b.create(alice, "dataset", f"Run {d + 1:03d}", step,
                                            dataset_type="free")
                    for k in range(rng.randint(5, 80)):
                        if b.count >= stop:
                            break
                        file_id = b.create(alice, "file", _file_name(rng, k), last_dataset)
                        first_file.setdefault(wf, file_id)

    # 4. Bob's own lab: a root folder with a few workflows; one shared with alice, so that his
    #    root folder is a card for her; the rest is invisible to her.
    with Phase(tree, b, "second user's tree"):
        lab = b.create(bob, "folder", "bob-lab")
        tomo = b.create(bob, "folder", "Tomography", lab)
        bob_workflows = []
        while b.left >= 4:
            wf = b.create(bob, "workflow", f"Tomo session {len(bob_workflows) + 1}", tomo,
                          workflow_type="spa")
            bob_workflows.append(wf)
            processing = b.steps(wf)["Processing"]
            for k in range(min(20, b.left)):
                file_id = b.create(bob, "file", f"tomogram_{k:03d}.mrc", processing)
                if len(bob_workflows) > 1 and tree.bob_private_file is None:
                    tree.bob_private_file = file_id
        while b.left > 0:
            b.create(bob, "file", f"lab-notes-{b.left}.txt", lab)
        tree.bob_root = lab
    b.close()

    # 5. Sharing: workflows in the middle of private folders with bob, some folders public.
    start = time.perf_counter()
    shares = 0
    with sessions() as db:
        def share(actor: Actor, element: uuid.UUID, privacy: str, everybody: str | None,
                  grants: list[tuple[str, str]]) -> None:
            nonlocal shares
            set_sharing(db, actor, element, privacy, everybody, grants)
            shares += 1
            if shares % 50 == 0:
                db.commit()

        share(alice, big_wf, "private", None, [("alice", "owner"), ("bob", "viewer")])
        for i, wf in enumerate(campaign_ids):
            if i % 8 == 3:
                share(alice, wf, "private", None, [("alice", "owner"), ("bob", "viewer")])
        # ~3 % of the general workflows below root level, in the private group folders.
        shared: set[uuid.UUID] = set()
        for i, (wf, depth, root_index) in enumerate(workflows):
            if depth >= 1 and root_index != 1 and i % 33 == 7:
                level = "collaborator" if i % 2 else "viewer"
                share(alice, wf, "private", None, [("alice", "owner"), ("bob", level)])
                shared.add(wf)
        tree.shared_with_bob = shares
        # Public: the second group's root folder, and one project folder in the third group.
        share(alice, roots[1], "public", "viewer", [("alice", "owner")])
        project = next(f for f, depth, root_index in folders if depth == 1 and root_index == 2)
        share(alice, project, "public", "viewer", [("alice", "owner")])
        tree.public_folders = 2
        # Invisible to bob: a file of an unshared workflow in a private group folder.
        candidates = (first_file[wf] for wf, _, root_index in workflows
                      if root_index != 1 and wf not in shared and wf in first_file)
        tree.alice_private_file = next(
            (f for f in candidates if access_level(db, bob, f) is None), None)
        share(bob, bob_workflows[0], "private", None, [("bob", "owner"), ("alice", "viewer")])
        db.commit()
    seconds = time.perf_counter() - start
    tree.phases.append({"phase": f"set_sharing x{shares}", "elements": 0,
                        "seconds": round(seconds, 3), "shares_per_s": round(shares / seconds, 1)})

    with sessions() as db:
        depth = db.scalar(select(Element.depth).where(Element.id == tree.deep_file))
        tree.deep_file_depth = int(depth or 0)
    return tree


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Measurement:
    backend: str
    user: str
    operation: str
    kind: str  # listing, breadcrumb, permission
    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    outcome: str
    load: float  # 1-minute load average when the operation was measured
    full_gcs: int  # full (generation 2) garbage collections during the measured calls
    full_gc_max_ms: float

    @property
    def target_ms(self) -> float:
        return TARGETS[self.kind]

    @property
    def passed(self) -> bool:
        return self.p99_ms < self.target_ms


class GcWatch:
    """Counts Python's full (generation 2) collections and their durations."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._start) * 1000)


GC_WATCH = GcWatch()


class Runner:
    """Times one operation `reps` times, each call in a fresh session (or a long-lived one)."""

    def __init__(self, backend: str, sessions: sessionmaker[Session], reps: int, warmup: int,
                 mode: str) -> None:
        self.backend, self.sessions, self.reps, self.warmup = backend, sessions, reps, warmup
        self.mode = mode
        self.results: list[Measurement] = []

    def measure(self, user: str, operation: str, kind: str,
                call: Callable[[Session], str]) -> Measurement:
        times: list[float] = []
        outcome = ""
        load_before = os.getloadavg()[0]
        gc_mark = len(GC_WATCH.pauses)
        long_db = self.sessions() if self.mode == "long" else None
        try:
            for i in range(self.warmup + self.reps):
                if long_db is not None:
                    long_db.expunge_all()  # no identity-map hits from the previous call
                    t0 = time.perf_counter()
                    outcome = call(long_db)
                    elapsed = time.perf_counter() - t0
                else:
                    t0 = time.perf_counter()
                    with self.sessions() as db:
                        outcome = call(db)
                    elapsed = time.perf_counter() - t0
                if i == self.warmup - 1:
                    gc_mark = len(GC_WATCH.pauses)
                if i >= self.warmup:
                    times.append(elapsed * 1000)
        finally:
            if long_db is not None:
                long_db.close()
        times.sort()
        m = Measurement(self.backend, user, operation, kind, len(times),
                        percentile(times, 0.50), percentile(times, 0.99),
                        statistics.fmean(times), times[-1], outcome,
                        round(max(load_before, os.getloadavg()[0]), 2),
                        len(GC_WATCH.pauses[gc_mark:]),
                        round(max(GC_WATCH.pauses[gc_mark:], default=0.0), 2))
        self.results.append(m)
        mark = "ok" if m.passed else "MISS"
        print(f"    {user:<6} {operation:<52} p50 {m.p50_ms:8.2f}  p99 {m.p99_ms:8.2f} ms  "
              f"{mark}  [{outcome}] load {m.load:.1f}, {m.full_gcs} full GCs "
              f"(max {m.full_gc_max_ms:.0f} ms)", file=sys.stderr, flush=True)
        return m


def _cursor_at(sessions: sessionmaker[Session], actor: Actor, parent: uuid.UUID, sort: str,
               page: int) -> str | None:
    """The cursor of page `page` (1-based), walking next_cursor from the first page."""
    cursor = None
    with sessions() as db:
        for _ in range(page - 1):
            result = list_children(db, actor, parent, sort=sort, limit=PAGE, cursor=cursor)
            if result.next_cursor is None:
                return None
            cursor = result.next_cursor
    return cursor


def _count_visible(sessions: sessionmaker[Session], actor: Actor, parent: uuid.UUID) -> int:
    total, cursor = 0, None
    with sessions() as db:
        while True:
            result = list_children(db, actor, parent, sort="name", limit=1000, cursor=cursor)
            total += len(result.items)
            if result.next_cursor is None:
                return total
            cursor = result.next_cursor


def _listing(actor: Actor, parent: uuid.UUID | None, sort: str,
             cursor: str | None) -> Callable[[Session], str]:
    def call(db: Session) -> str:
        page = list_children(db, actor, parent, sort=sort, limit=PAGE, cursor=cursor)
        cards = sum(1 for item in page.items if item.is_card)
        more = "more" if page.next_cursor else "last"
        return f"{len(page.items)} items, {cards} cards, {more}"
    return call


def _breadcrumb(actor: Actor, element: uuid.UUID) -> Callable[[Session], str]:
    def call(db: Session) -> str:
        return f"{len(element_path(db, actor, element))} entries"
    return call


def _level(actor: Actor, element: uuid.UUID) -> Callable[[Session], str]:
    def call(db: Session) -> str:
        level = access_level(db, actor, element)
        return "invisible" if level is None else level_name(level)
    return call


def _require(actor: Actor, element: uuid.UUID, minimum: int) -> Callable[[Session], str]:
    def call(db: Session) -> str:
        try:
            _, level = require_access(db, actor, element, minimum, "open")
        except DomainError as exc:
            return type(exc).__name__
        return level_name(level)
    return call


def measure_all(runner: Runner, tree: Tree) -> None:
    sessions = runner.sessions
    pages = math.ceil(tree.big_files / PAGE)
    deep = max(2, pages // 2)
    campaign_pages = math.ceil(tree.campaign_workflows / PAGE)
    campaign_deep = max(2, campaign_pages // 2)
    users = [
        # name, actor, (visible, card, invisible) elements for the permission checks
        ("alice", tree.alice, (tree.deep_file, tree.bob_root, tree.bob_private_file)),
        ("bob", tree.bob, (tree.deep_file, tree.facility_root, tree.alice_private_file)),
    ]
    for name, actor, (visible, card, invisible) in users:
        assert visible and card and invisible and tree.big_dataset and tree.campaign_folder
        for sort in ("name", "date"):
            label = f"dataset {tree.big_files:,} files"
            runner.measure(name, f"list {label}, {sort}, page 1", "listing",
                           _listing(actor, tree.big_dataset, sort, None))
            cursor = _cursor_at(sessions, actor, tree.big_dataset, sort, deep)
            if cursor:
                runner.measure(name, f"list {label}, {sort}, page {deep}", "listing",
                               _listing(actor, tree.big_dataset, sort, cursor))
        label = f"folder {tree.campaign_workflows:,} workflows"
        for sort in ("name", "date"):
            runner.measure(name, f"list {label}, {sort}, page 1", "listing",
                           _listing(actor, tree.campaign_folder, sort, None))
        cursor = _cursor_at(sessions, actor, tree.campaign_folder, "name", campaign_deep)
        if cursor:
            runner.measure(name, f"list {label}, name, page {campaign_deep}", "listing",
                           _listing(actor, tree.campaign_folder, "name", cursor))
        runner.measure(name, "list root", "listing",
                       _listing(actor, None, "name", None))
        runner.measure(name, f"breadcrumb of a depth-{tree.deep_file_depth} file", "breadcrumb",
                       _breadcrumb(actor, visible))
        for what, element in (("visible", visible), ("card", card), ("invisible", invisible)):
            runner.measure(name, f"access_level, {what}", "permission", _level(actor, element))
        for what, element in (("visible", visible), ("card", card), ("invisible", invisible)):
            runner.measure(name, f"require_access(CARD), {what}", "permission",
                           _require(actor, element, CARD))
        runner.measure(name, "require_access(VIEWER), card", "permission",
                       _require(actor, card, VIEWER))
    # Worst case of the card check: a user with no grant anywhere below an element with a large
    # subtree (here the big dataset and the facility's root folder) is refused only after the
    # whole subtree has been searched for a permission set granting him something.
    big = f"invisible, {tree.big_files:,}-file dataset"
    assert tree.big_dataset and tree.facility_root
    runner.measure("carol", f"access_level, {big}", "permission",
                   _level(tree.carol, tree.big_dataset))
    runner.measure("carol", f"require_access(CARD), {big}", "permission",
                   _require(tree.carol, tree.big_dataset, CARD))
    runner.measure("carol", "access_level, invisible root folder", "permission",
                   _level(tree.carol, tree.facility_root))
    runner.measure("carol", "list root (public folders only)", "listing",
                   _listing(tree.carol, None, "name", None))


def sanity_check(sessions: sessionmaker[Session], tree: Tree) -> dict[str, Any]:
    """Check that the tree is what the measurements claim (levels, visible counts)."""
    expect = [
        (tree.alice, tree.deep_file, "owner"), (tree.alice, tree.bob_root, "card"),
        (tree.alice, tree.bob_private_file, "invisible"),
        (tree.bob, tree.deep_file, "viewer"), (tree.bob, tree.facility_root, "card"),
        (tree.bob, tree.alice_private_file, "invisible"),
        (tree.carol, tree.big_dataset, "invisible"), (tree.carol, tree.facility_root, "invisible"),
    ]
    with sessions() as db:
        for actor, element, want in expect:
            assert element is not None
            level = access_level(db, actor, element)
            got = "invisible" if level is None else level_name(level)
            if got != want:
                raise SystemExit(f"sanity check: {actor.username} on {element} is {got}, "
                                 f"expected {want}")
        total = db.scalar(select(func.count()).select_from(Element))
    assert tree.campaign_folder is not None
    return {
        "elements": total,
        "bob_visible_in_campaign_folder": _count_visible(sessions, tree.bob,
                                                         tree.campaign_folder),
        "bob_visible_roots": _count_visible(sessions, tree.bob, None),
        "alice_visible_roots": _count_visible(sessions, tree.alice, None),
    }


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def _pg_url(base: str, schema: str | None) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    if schema:
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cleanup: Callable[[], None]
    note = ""
    if name == "sqlite":
        tmp = tempfile.mkdtemp(prefix="cryovault-bench-")
        url = f"sqlite:///{tmp}/bench.db"
        note = f"SQLite {__import__('sqlite3').sqlite_version}, file {tmp}/bench.db"

        def cleanup() -> None:
            if args.keep:
                print(f"  kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        base = os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
        schema = f"bench_{os.getpid()}"
        admin = make_engine(_pg_url(base, None))
        try:
            with admin.begin() as conn:
                version = conn.scalar(text("SHOW server_version"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            admin.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            return {"skipped": f"PostgreSQL not reachable at "
                               f"{make_url(base).render_as_string()}: {reason}"}
        url = _pg_url(base, schema)
        note = f"PostgreSQL {version}, schema {schema}"

        def cleanup() -> None:
            if args.keep:
                print(f"  kept schema {schema}", file=sys.stderr)
            else:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()

    print(f"\n== {name}: {note}", file=sys.stderr, flush=True)
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        print(f"  building {args.elements:,} elements (commit every {args.batch})",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        tree = build_tree(sessions, args.elements, args.batch, args.seed)
        build_s = time.perf_counter() - t0
        created = sum(p["elements"] for p in tree.phases)
        create_s = sum(p["seconds"] for p in tree.phases if p["elements"])
        for p in tree.phases:
            rate = p.get("elements_per_s") or p.get("shares_per_s")
            unit = "elements/s" if "elements_per_s" in p else "shares/s"
            print(f"    {p['phase']:<34} {p['elements']:>8,} in {p['seconds']:8.1f} s"
                  f"  {rate:>9,.1f} {unit}", file=sys.stderr)
        analyzed = False
        if name == "postgres":
            # Autovacuum would analyse the freshly loaded tables within a minute or so; do it
            # now so that the plans are those of a running server, not of empty statistics.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            analyzed = True
        elif args.sqlite_analyze:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            analyzed = True
        checks = sanity_check(sessions, tree)
        print(f"  tree: {checks}", file=sys.stderr, flush=True)
        runner = Runner(name, sessions, args.reps, args.warmup, args.session)
        gc.collect()
        if args.gc_freeze:
            gc.freeze()  # as create_app's lifespan does: old objects leave the GC's full scans
        print(f"  measuring ({args.reps} reps + {args.warmup} warm-up, {args.session} session "
              "per call)", file=sys.stderr, flush=True)
        measure_all(runner, tree)
    finally:
        gc.unfreeze()
        engine.dispose()
        cleanup()
    return {
        "note": note,
        "analyzed": analyzed,
        "build": {
            "elements": created,
            "seconds": round(build_s, 1),
            "create_elements_per_s": round(created / create_s, 1),
            "phases": tree.phases,
            "shared_with_bob": tree.shared_with_bob,
            "public_folders": tree.public_folders,
        },
        "tree": checks,
        "results": [
            {**m.__dict__, "target_ms": m.target_ms, "pass": m.passed} for m in runner.results
        ],
    }


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"\ncryovault hierarchy benchmark: {meta['elements']:,} elements, {meta['reps']} reps, "
          f"{meta['session']} session per call, gc.freeze: {meta['gc_freeze']}; "
          f"{meta['cpus']} CPUs")
    header = f"{'backend':<9}{'user':<7}{'operation':<52}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}" \
             f"{'target':>9}  result  full GCs"
    for backend, data in report["backends"].items():
        if "skipped" in data:
            print(f"\n{backend}: skipped — {data['skipped']}")
            continue
        build = data["build"]
        print(f"\n{backend}: {data['note']}; statistics analysed: {data['analyzed']}")
        print(f"  created {build['elements']:,} elements in {build['seconds']} s "
              f"(create_element: {build['create_elements_per_s']:,.0f} elements/s overall)")
        for p in build["phases"]:
            if p["elements"]:
                print(f"    {p['phase']:<34} {p['elements']:>8,} elements "
                      f"{p['elements_per_s']:>9,.0f} elements/s")
            else:
                print(f"    {p['phase']:<34} {p['seconds']:>8.1f} s")
        print(header)
        print("-" * len(header))
        for r in data["results"]:
            result = "pass" if r["pass"] else "FAIL"
            gcs = f"{r['full_gcs']} (max {r['full_gc_max_ms']:.0f} ms)" if r["full_gcs"] else "0"
            print(f"{backend:<9}{r['user']:<7}{r['operation']:<52}{r['n']:>5}"
                  f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{'< ' + format(r['target_ms'], 'g'):>9}"
                  f"  {result:<6}  {gcs}")
        loads = [r["load"] for r in data["results"]]
        busy = " (busier than the machine has CPUs: p99 includes waits for a CPU)" \
            if max(loads) > (meta["cpus"] or 1) else ""
        print(f"  1-minute load average while measuring: {min(loads):.1f} to {max(loads):.1f} "
              f"on {meta['cpus']} CPUs{busy}")
    fails = [r for d in report["backends"].values() for r in d.get("results", [])
             if not r["pass"]]
    print(f"\n{len(fails)} target(s) missed; wall time {meta['wall_s']:.0f} s; "
          f"JSON: {meta['json']}")
    print("targets: listing and breadcrumb p99 < 50 ms, permission check p99 < 5 ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=100_000,
                        help="elements to create per backend (default 100000)")
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (default both)")
    parser.add_argument("--reps", type=int, default=300, help="measured calls per operation")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured calls first")
    parser.add_argument("--batch", type=int, default=500, help="commit every N elements")
    parser.add_argument("--session", choices=("fresh", "long"), default="fresh",
                        help="fresh: a new session per call, as a web request (default); "
                             "long: one session per operation, identity map cleared per call")
    parser.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction, default=True,
                        help="gc.freeze() before measuring, as the server does at start-up "
                             "(default); with --no-gc-freeze, Python's full collections over "
                             "every object of the process (40-150 ms here) show in the p99")
    parser.add_argument("--sqlite-analyze", action="store_true",
                        help="run ANALYZE on SQLite after the build (the app does not)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true",
                        help="keep the SQLite file and PostgreSQL schema")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.elements < 2_000:
        parser.error("--elements must be at least 2000")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    report: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "elements": args.elements, "reps": args.reps, "warmup": args.warmup,
            "session": args.session, "batch": args.batch, "seed": args.seed,
            "gc_freeze": args.gc_freeze,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "targets_ms": TARGETS,
        },
        "backends": {},
    }
    for backend in backends:
        report["backends"][backend] = run_backend(backend, args)
        if "skipped" in report["backends"][backend]:
            print(f"\n== {backend}: skipped: {report['backends'][backend]['skipped']}",
                  file=sys.stderr)
    report["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    report["meta"]["json"] = str(args.json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
