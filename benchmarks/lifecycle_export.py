#!/usr/bin/env python
"""Export throughput (issue #6, JOB-4, OPS-3): a dataset exported by the export job (each file
copied with its SHA-256 checked and fsynced before it appears) against a plain `cp` of the same
files, measured in the same run on the same disk.

It makes an instance in a temporary directory (SQLite, local primary and export storages on
the same file system), writes --size-gb of random data as files of --file-mb into a dataset
(registered like uploads: moved into the primary storage with their checksums), then, --reps
times, alternating which goes first:

* **export job**: `request_export` + `run_job` (what a worker runs): metadata JSON, then every
  file through `copy_verified`;
* **cp**: one `cp` of all the dataset's files into a fresh folder, and **cp + sync**: the same
  followed by `sync FILE…` (fsync of each copy: as durable as the export's copies).

Before each measurement the source files are evicted from the OS page cache
(`posix_fadvise(DONTNEED)` on those files only), so both read from the disk. Target: the export
reaches ≥ 70 % of the throughput of cp + sync (the table shows plain cp too). It checks the free
space first (it needs about 3.1 × the size) and removes everything it wrote.

    .venv/bin/python benchmarks/lifecycle_export.py                   # 1 GB, 2 reps
    .venv/bin/python benchmarks/lifecycle_export.py --size-gb 10      # the full figure
    .venv/bin/python benchmarks/lifecycle_export.py --size-gb 0.3 --reps 1   # quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_RATIO = 0.70


@dataclass
class Row:
    measurement: str
    size_mb: float
    seconds: float
    mb_per_s: float
    runs: list[float]


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the OS page cache (nothing else on the machine)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_dataset(work: Path, size: int, file_bytes: int):
    """An instance with one dataset holding `size` bytes of random files; what the timings
    need: the app state pieces, the user and the dataset, the source paths."""
    from cryovault.access.actor import Actor
    from cryovault.access.users import create_user
    from cryovault.db.engine import make_engine, make_sessionmaker
    from cryovault.db.migrate import upgrade
    from cryovault.settings import Settings
    from cryovault.storage.files import UploadTarget, register_file
    from cryovault.storage.registry import StorageSet
    from cryovault.web import app as _handlers  # noqa: F401 (registers the job handlers)
    from cryovault.workspace.elements import create_element

    settings = Settings(data_dir=work / "data")
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    storages = StorageSet.from_settings(settings)
    block = os.urandom(16 * 1024 * 1024)
    staging = work / "staging"
    staging.mkdir()
    sources = []
    with sessions() as db:
        user = create_user(db, "bench", "bench-password-1")
        actor = Actor.of(user)
        workflow = create_element(db, actor, kind="workflow", name="Bench",
                                  workflow_type="free")
        step = create_element(db, actor, kind="step", name="Data", parent_id=workflow.id)
        dataset = create_element(db, actor, kind="dataset", name="Grid 1", parent_id=step.id)
        left, n = size, 0
        while left > 0:
            length = min(file_bytes, left)
            path = staging / f"FoilHole_{n:05d}_fractions.tiff"
            digest = hashlib.sha256()
            with open(path, "wb") as out:
                header = f"cryovault export benchmark file {n} {uuid.uuid4()}\n".encode()
                out.write(header)
                digest.update(header)
                remaining = length - len(header)
                while remaining > 0:
                    piece = block[:remaining]
                    out.write(piece)
                    digest.update(piece)
                    remaining -= len(piece)
            view = register_file(db, actor, storages, UploadTarget(dataset.id, path.name), path,
                                 digest.hexdigest(), length)
            sources.append(storages.primary.local_path(view.stored.key))
            left -= length
            n += 1
        db.commit()
    return settings, engine, sessions, storages, actor, dataset.id, sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--file-mb", type=int, default=256,
                        help="size of each file (a movie is typically 100–500 MB)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the instance goes (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=RESULTS / "lifecycle_export.json")
    args = parser.parse_args(argv)

    size = int(args.size_gb * 1e9)
    base = args.workdir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 3.1 * size + 1e9:
        print(f"not enough free space in {base}: {free / 1e9:.1f} GB free, about "
              f"{(3.1 * size + 1e9) / 1e9:.1f} GB needed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_export_", dir=args.workdir))
    load_before = os.getloadavg()[0]
    print(f"writing {size / 1e9:.2f} GB as {args.file_mb} MB files in {work} "
          f"({free / 1e9:.0f} GB free) …", flush=True)
    from sqlalchemy import select

    from cryovault.db.jobs import Job
    from cryovault.jobs.runner import JobEnvironment, run_job
    from cryovault.lifecycle.export import request_export

    times: dict[str, list[float]] = {"export job (SHA-256 checked, fsynced)": [],
                                     "cp": [], "cp + sync": []}
    try:
        settings, engine, sessions, storages, actor, dataset_id, sources = write_dataset(
            work, size, args.file_mb * 1024 * 1024)
        export_root = storages.get("export").local_path("x").parent
        env = JobEnvironment(sessions, settings, storages)
        total = sum(p.stat().st_size for p in sources)

        def export_once(rep: int) -> None:
            with sessions() as db:
                plan = request_export(db, actor, storages, dataset_id, folder=f"rep{rep}")
                db.commit()
                job_id = plan.job.id
            evict(sources)
            start = time.perf_counter()
            run_job(env, job_id)
            times["export job (SHA-256 checked, fsynced)"].append(time.perf_counter() - start)
            with sessions() as db:
                job = db.scalar(select(Job).where(Job.id == job_id))
                if job.status != "completed":
                    raise RuntimeError(f"the export job ended {job.status}: {job.message}")
            shutil.rmtree(export_root / f"rep{rep}")

        def cp_once(rep: int) -> None:
            target = work / f"cp{rep}"
            target.mkdir()
            evict(sources)
            start = time.perf_counter()
            subprocess.run(["cp", "--", *map(str, sources), str(target)], check=True)
            copied = time.perf_counter() - start
            subprocess.run(["sync", "--", *(str(target / p.name) for p in sources)],
                           check=True)
            synced = time.perf_counter() - start
            times["cp"].append(copied)
            times["cp + sync"].append(synced)
            shutil.rmtree(target)

        for rep in range(args.reps):
            order = (export_once, cp_once) if rep % 2 == 0 else (cp_once, export_once)
            for run in order:
                run(rep)
            print(f"  rep {rep + 1}: " + ", ".join(f"{name} {values[-1]:.2f} s"
                                                 for name, values in times.items()), flush=True)
        engine.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [Row(name, total / 1e6, statistics.median(values),
                total / 1e6 / statistics.median(values), [round(v, 3) for v in values])
            for name, values in times.items()]
    export_row, cp_row, synced_row = rows
    ratio = export_row.mb_per_s / synced_row.mb_per_s
    ratio_plain = export_row.mb_per_s / cp_row.mb_per_s
    load = round(max(load_before, os.getloadavg()[0]), 2)
    print()
    print(f"{'measurement':<40} {'MB':>8} {'median s':>9} {'MB/s':>7}")
    for row in rows:
        print(f"{row.measurement:<40} {row.size_mb:>8,.0f} {row.seconds:>9.2f} "
              f"{row.mb_per_s:>7.0f}")
    met = ratio >= TARGET_RATIO
    print(f"export / (cp + sync) = {ratio:.0%} (target ≥ {TARGET_RATIO:.0%}: "
          f"{'met' if met else 'MISSED'}); export / plain cp = {ratio_plain:.0%}; "
          f"1-minute load average up to {load}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": load},
        "size_bytes": total, "file_mb": args.file_mb, "reps": args.reps,
        "ratio_to_cp_sync": round(ratio, 3), "ratio_to_cp": round(ratio_plain, 3),
        "target_ratio": TARGET_RATIO, "met": met,
        "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
