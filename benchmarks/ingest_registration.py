#!/usr/bin/env python
"""Registration rate of an EPU session through the ingest API (issue #9, SPEC SPA-1).

A simulated EPU session is generated once (`cryovault simulate epu … --rate 0`, default 500
acquisitions at --size 128 with --frames 4: per acquisition an XML, a JPEG, an integrated MRC
and a movie, plus the session file, atlas, grid-square and foil-hole files). For each backend
(SQLite in a fresh data directory; PostgreSQL in a fresh schema `bench_ingest_<pid>` of
CRYOVAULT_BENCH_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test)
`cryovault serve` runs in its own process; a user, an API token and an SPA workflow with an
EPU run dataset are created through the API, and the watcher (`Watcher` from
cryovault.ingest.watcher, as `cryovault watch epu --once` runs it: 4 upload threads, one
keep-alive HTTP client; small files go in batches through POST …/ingest/batch) registers the
whole session. The time is from the watcher's start (its
listing of what the server holds, the scans, the settle wait of --settle seconds) to the last
answer. Checked afterwards: the run has one micrograph per acquisition of the ground truth and
the ingest listing has every file exactly once. Target: ≥ 50 acquisitions/s.

The backend `null` (add it with --backends sqlite,postgres,null) is a server that only reads
each body (single files and batches) and answers "registered", in its own process: the
watcher's own ceiling on this machine.

    .venv/bin/python benchmarks/ingest_registration.py                       # 500 acq, both
    .venv/bin/python benchmarks/ingest_registration.py --acquisitions 100 --backends sqlite
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ingest_registration.json"
BIN = Path(sys.executable).parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_PER_S = 50.0
PASSWORD = "bench-password-1"


@dataclass
class Row:
    backend: str
    acquisitions: int
    files: int
    megabytes: float
    seconds: float
    acquisitions_per_s: float
    files_per_s: float
    watcher_cpu_s: float
    server_cpu_s: float
    micrographs: int
    duplicates: int
    met: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its living children, e.g. the server
    processes of `serve --workers N` (from /proc)."""
    def own(stat: str) -> float:
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    total = own(Path(f"/proc/{pid}/stat").read_text())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                total += own(stat)
    return total


def generate_session(work: Path, acquisitions: int, size: int, frames: int, seed: int
                     ) -> tuple[Path, int]:
    """A simulated EPU visit with about `acquisitions` acquisitions; returns the session
    folder and the number of acquisitions in the ground truth."""
    visit = work / "visit"
    per_hole = 2
    squares = max(1, math.ceil(acquisitions / 100))
    holes = math.ceil(acquisitions / (squares * per_hole))
    print(f"simulating {squares} squares × {holes} holes × {per_hole} acquisitions at "
          f"{size} px, {frames} frames …", flush=True)
    started = time.perf_counter()
    subprocess.run([BIN / "cryovault", "simulate", "epu", str(visit), "--squares", str(squares),
                    "--holes", str(holes), "--acquisitions-per-hole", str(per_hole),
                    "--rate", "0", "--size", str(size), "--frames", str(frames),
                    "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    print(f"  written in {time.perf_counter() - started:.1f} s", flush=True)
    sessions = sorted(p for p in visit.iterdir() if p.is_dir() and p.name.endswith("_EPU"))
    if len(sessions) != 1:
        raise SystemExit(f"expected one *_EPU session folder in {visit}, found {sessions}")
    return sessions[0], count_acquisitions(visit)


def count_acquisitions(visit: Path) -> int:
    truth = visit / "ground_truth.jsonl"
    if truth.exists():
        kinds = Counter(json.loads(line).get("kind") for line in truth.read_text().splitlines()
                        if line.strip())
        return kinds.get("acquisition", 0)
    return len(json.loads((visit / "ground_truth.json").read_text())["acquisitions"])


def _pg_url(base: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


NULL_SERVER = """
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def put(request):
    await request.body()
    name = request.path_params["path"].rsplit("/", 1)[-1]
    item = ({"kind": "micrograph", "id": name.split(".")[0], "name": name, "status": "x"}
            if name.endswith(".xml") and "_Data_" in name else None)
    return JSONResponse({"status": "registered", "file_id": "f", "item": item,
                         "problem": None}, status_code=201)

async def batch(request):
    body, position, results = await request.body(), 0, []
    while position < len(body):
        end = body.index(b"\\n", position)
        header = json.loads(body[position:end])
        position = end + 1 + header["size"]
        name = header["path"].rsplit("/", 1)[-1]
        item = ({"kind": "micrograph", "id": name.split(".")[0], "name": name, "status": "x"}
                if name.endswith(".xml") and "_Data_" in name else None)
        results.append({"path": header["path"], "status": "registered", "file_id": "f",
                        "item": item, "problem": None, "detail": None})
    return JSONResponse({"results": results})

async def listing(request):
    return JSONResponse({"items": [], "next_cursor": None})

app = Starlette(routes=[
    Route("/api/v1/datasets/{dataset}/ingest/files/{path:path}", put, methods=["PUT"]),
    Route("/api/v1/datasets/{dataset}/ingest/batch", batch, methods=["POST"]),
    Route("/api/v1/datasets/{dataset}/ingest/files", listing),
    Route("/api/v1/me", listing)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


class NullServer:
    """A server that reads each body and answers 201 (the watcher's ceiling)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> NullServer:
        self.process = subprocess.Popen([sys.executable, "-c", NULL_SERVER, str(self.port)])
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/api/v1/me", timeout=1)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the null server did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)


class Server:
    """`cryovault serve` in its own process with a fresh database."""

    def __init__(self, work: Path, database_url: str | None, processes: int = 1) -> None:
        self.processes = processes
        self.data_dir = work / "data"
        self.env = {**os.environ, "CRYOVAULT_DATA_DIR": str(self.data_dir)}
        self.env.pop("CRYOVAULT_DATABASE_URL", None)
        if database_url:
            self.env["CRYOVAULT_DATABASE_URL"] = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        subprocess.run([BIN / "cryovault", "db", "upgrade"], env=self.env, check=True,
                       capture_output=True)
        subprocess.run([BIN / "cryovault", "admin", "create-user", "bench", "--password",
                        PASSWORD], env=self.env, check=True, capture_output=True)
        self.process = subprocess.Popen(
            [BIN / "cryovault", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.processes)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/api/v1/me", timeout=1)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def prepare_dataset(url: str) -> tuple[str, str]:
    """(token, dataset id) for a fresh SPA workflow's EPU run."""
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/api/v1/auth/login",
                    json={"username": "bench", "password": PASSWORD}).raise_for_status()
        token = client.post("/api/v1/auth/tokens", json={"name": "watcher"}).json()["token"]
        workflow = client.post("/api/v1/elements", json={
            "kind": "workflow", "name": "Ingest benchmark", "workflow_type": "spa"}).json()
        steps = client.get("/api/v1/elements", params={"parent_id": workflow["id"]}).json()
        imaging = next(s for s in steps["items"] if s["name"] == "Imaging")
        dataset = client.post("/api/v1/elements", json={
            "kind": "dataset", "name": "EPU run", "parent_id": imaging["id"],
            "dataset_type": "epu_run"}).json()
    return token, dataset["id"]


def check_run(url: str, token: str, dataset_id: str) -> tuple[int, int, int]:
    """(micrographs, files listed, duplicated paths) as the server reports them."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        micrographs = client.get(f"/api/v1/datasets/{dataset_id}/micrographs",
                                 params={"limit": 1}).json()["total"]
        paths: list[str] = []
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/api/v1/datasets/{dataset_id}/ingest/files",
                              params=params).json()
            paths += [item["path"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    duplicates = sum(n - 1 for n in Counter(paths).values() if n > 1)
    return micrographs, len(paths), duplicates


def run_backend(name: str, session_dir: Path, acquisitions: int, args, work: Path) -> Row | dict:
    from cryovault.ingest.watcher.agent import Watcher, WatchOptions
    from cryovault.ingest.watcher.epu import EpuLayout

    schema = None
    admin = None
    database_url = None
    if name == "postgres":
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        from cryovault.db.engine import make_engine

        base = os.environ.get("CRYOVAULT_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
        schema = f"bench_ingest_{os.getpid()}"
        admin = make_engine(_pg_url(base, "public"))
        try:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OperationalError as exc:
            return {"backend": name, "skipped": f"PostgreSQL does not answer: {exc}"}
        database_url = _pg_url(base, schema)
    backend_work = work / name
    backend_work.mkdir()
    try:
        with (NullServer() if name == "null" else Server(backend_work, database_url,
                                                                 args.server_processes)) as server:
            if name == "null":
                token, dataset_id = "t", "00000000-0000-4000-8000-000000000000"
            else:
                token, dataset_id = prepare_dataset(server.url)
            files = [p for p in session_dir.rglob("*") if p.is_file()]
            megabytes = sum(p.stat().st_size for p in files) / 1e6
            options = WatchOptions(server=server.url, token=token, dataset_id=dataset_id,
                                   state_path=backend_work / "state.json", once=True,
                                   settle_s=args.settle, workers=args.workers,
                                   retry_limit_s=120.0)
            print(f"[{name}] registering {acquisitions} acquisitions …", flush=True)
            server_cpu = cpu_seconds(server.process.pid)
            own_cpu = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            report = Watcher(EpuLayout(session_dir), options).run()
            seconds = time.perf_counter() - started
            own = resource.getrusage(resource.RUSAGE_SELF)
            watcher_cpu = (own.ru_utime - own_cpu.ru_utime) + (own.ru_stime - own_cpu.ru_stime)
            server_cpu = cpu_seconds(server.process.pid) - server_cpu
            if report.fatal:
                raise SystemExit(f"[{name}] the watcher stopped: {report.fatal}")
            if name == "null":  # nothing is kept: the watcher's own count
                micrographs, listed, duplicates = report.acquisitions, report.registered, 0
            else:
                micrographs, listed, duplicates = check_run(server.url, token, dataset_id)
    finally:
        if admin is not None:
            from sqlalchemy import text

            if not args.keep:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    rate = acquisitions / seconds
    row = Row(name, acquisitions, report.registered, round(megabytes, 1), round(seconds, 2),
              round(rate, 1), round(report.registered / seconds, 1), round(watcher_cpu, 1),
              round(server_cpu, 1), micrographs, duplicates, rate >= TARGET_PER_S)
    print(f"[{name}] {seconds:.1f} s: {rate:.1f} acquisitions/s, {row.files_per_s} files/s; "
          f"{micrographs} micrographs, {listed} files listed, {duplicates} duplicates; "
          f"{report.waiting} files left waiting", flush=True)
    if micrographs != acquisitions or duplicates or report.waiting:
        print(f"[{name}] WARNING: the run does not match the ground truth", flush=True)
    return row


def print_table(rows: list[Row | dict]) -> None:
    print(f"\nregistration through the API (target ≥ {TARGET_PER_S:.0f} acquisitions/s)\n")
    print("| backend | acquisitions | files | MB | s | acq/s | files/s | watcher CPU s | "
          "server CPU s | micrographs | duplicates | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        if isinstance(row, dict):
            print(f"| {row['backend']} | skipped: {row['skipped']} |")
            continue
        print(f"| {row.backend} | {row.acquisitions} | {row.files} | {row.megabytes} | "
              f"{row.seconds} | {row.acquisitions_per_s} | {row.files_per_s} | "
              f"{row.watcher_cpu_s} | {row.server_cpu_s} | {row.micrographs} | "
              f"{row.duplicates} | {'met' if row.met else 'missed'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acquisitions", type=int, default=500)
    parser.add_argument("--size", type=int, default=128, help="movie / micrograph edge, px")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", type=int, default=4, help="watcher upload threads")
    parser.add_argument("--settle", type=float, default=0.2, help="watcher --settle, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-processes", type=int, default=1,
                        help="`cryovault serve --workers N` (several server processes)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep data and schema")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.workdir))
    try:
        session_dir, acquisitions = generate_session(work, args.acquisitions, args.size,
                                                     args.frames, args.seed)
        rows = [run_backend(b.strip(), session_dir, acquisitions, args, work)
                for b in args.backends.split(",") if b.strip()]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    report = {"benchmark": "ingest_registration",
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "settings": {"acquisitions": args.acquisitions, "size_px": args.size,
                           "frames": args.frames, "workers": args.workers,
                           "server_processes": args.server_processes,
                           "settle_s": args.settle},
              "target_acquisitions_per_s": TARGET_PER_S,
              "rows": [r if isinstance(r, dict) else asdict(r) for r in rows]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
