#!/usr/bin/env python
"""Throughput of uploads and downloads through the API on loopback (issue: files, WS-10).

Starts `cryovault serve` in its own process on a free port (SQLite and local storage in a
temporary directory), signs a user in, and moves a --size-gb file (default 2 GB, random bytes
written once to the temporary directory) with curl, which streams from and to disk:

* upload, raw body: `POST /api/v1/elements/{dataset}/files?name=…` (curl -T);
* upload, multipart: the same endpoint with a `file` form field (curl -F, streamed);
* upload, resumable: `POST /api/v1/uploads`, then `PATCH` chunks of --chunk-mb;
* download: `GET /api/v1/files/{id}/content` (checksum verified while streaming);
* download of a range: the middle 1 GB with `Range:`;
* download as a zip of the dataset (stored, streamed).

The server's resident memory is sampled every 50 ms from /proc during each transfer: the table
shows its peak above the idle server ("memory flat" means this stays a few tens of MB whatever
the file size). Each figure is the median of --reps runs. Target: upload and download above
300 MB/s.

    .venv/bin/python benchmarks/bench_transfer.py                 # 2 GB, 3 reps
    .venv/bin/python benchmarks/bench_transfer.py --size-gb 0.5 --reps 1   # quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
TARGET_MB_S = 300.0


@dataclass
class Row:
    transfer: str
    size_mb: float
    seconds: float
    mb_per_s: float
    server_peak_rss_mb: float
    target: str
    met: bool | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Peak resident memory of a process while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def curl(*args: str) -> bytes:
    done = subprocess.run(["curl", "--silent", "--show-error", "--fail-with-body", *args],
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed: {done.stderr.decode()} {done.stdout[:500]!r}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the data directory and test file go (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_transfer_", dir=args.workdir))
    data_dir = work / "data"
    size = int(args.size_gb * 1e9)
    source = work / "movie.bin"
    print(f"writing a {size / 1e9:.2f} GB test file …", flush=True)
    digest = hashlib.sha256()
    with open(source, "wb") as out:
        block = os.urandom(64 * 2**20)
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    sha256 = digest.hexdigest()

    env = {**os.environ, "CRYOVAULT_DATA_DIR": str(data_dir),
           "CRYOVAULT_MAX_UPLOAD_BYTES": str(10 * size)}
    subprocess.run([BIN / "cryovault", "db", "upgrade"], env=env, check=True,
                   capture_output=True)
    subprocess.run([BIN / "cryovault", "admin", "create-user", "bench", "--password",
                    "bench-password-1"], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([BIN / "cryovault", "serve", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    rows: list[Row] = []
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/api/v1/me", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = httpx.Client(base_url=base, timeout=60)
        client.post("/api/v1/auth/login",
                    json={"username": "bench", "password": "bench-password-1"}).raise_for_status()
        token = client.post("/api/v1/auth/tokens", json={"name": "bench"}).json()["token"]
        auth = f"Authorization: Bearer {token}"
        workflow = client.post("/api/v1/elements", json={"kind": "workflow", "name": "bench",
                                                         "workflow_type": "free"}).json()
        step = client.post("/api/v1/elements", json={"kind": "step", "name": "step",
                                                     "parent_id": workflow["id"]}).json()
        idle = rss_mb(server.pid)
        size_mb = size / 1e6

        def measure(name: str, run, nbytes: int, target: bool = True) -> None:
            times, peaks = [], []
            for rep in range(args.reps):
                with RssSampler(server.pid) as sampler:
                    start = time.perf_counter()
                    run(rep)
                    times.append(time.perf_counter() - start)
                peaks.append(sampler.peak - idle)
            seconds = statistics.median(times)
            rate = nbytes / 1e6 / seconds
            rows.append(Row(name, nbytes / 1e6, seconds, rate, max(peaks),
                            f"> {TARGET_MB_S:.0f} MB/s" if target else "report",
                            rate > TARGET_MB_S if target else None))
            print(f"  {name}: {seconds:.2f} s, {rate:.0f} MB/s, server +{max(peaks):.0f} MB",
                  flush=True)

        uploaded: list[dict] = []

        def raw_upload(rep: int) -> None:
            out = curl("-T", str(source), "-X", "POST", "-H", auth, "-H",
                       "Content-Type: application/octet-stream",
                       f"{base}/api/v1/elements/{step['id']}/files?name=raw_{rep}.bin")
            file = json.loads(out)
            assert file["file"]["sha256"] == sha256, "checksum differs after upload"
            uploaded.append(file)

        def multipart_upload(rep: int) -> None:
            out = curl("-H", auth, "-F", f"file=@{source};filename=form_{rep}.bin",
                       f"{base}/api/v1/elements/{step['id']}/files")
            assert json.loads(out)["file"]["sha256"] == sha256

        def resumable_upload(rep: int) -> None:
            upload = client.post("/api/v1/uploads", headers={"Authorization": f"Bearer {token}"},
                                 json={"parent_id": step["id"], "name": f"chunked_{rep}.bin",
                                       "size": size, "sha256": sha256}).json()
            chunk = args.chunk_mb * 2**20
            offset = 0
            part = work / "chunk.part"
            with open(source, "rb") as stream:
                while offset < size:
                    data = stream.read(chunk)
                    part.write_bytes(data)
                    out = curl("-T", str(part), "-X", "PATCH", "-H", auth, "-H",
                               f"Upload-Offset: {offset}",
                               f"{base}/api/v1/uploads/{upload['id']}")
                    offset = json.loads(out)["offset"]
            assert json.loads(out)["file"]["file"]["sha256"] == sha256

        def download(rep: int) -> None:
            received = curl("-H", auth, "-o", "/dev/null", "-w", "%{size_download}",
                            f"{base}/api/v1/files/{uploaded[0]['id']}/content")
            assert int(received) == size, received

        half = size // 2

        def ranged(rep: int) -> None:
            out = curl("-H", auth, "-H", f"Range: bytes={size // 4}-{size // 4 + half - 1}",
                       "-o", "/dev/null", "-w", "%{http_code}",
                       f"{base}/api/v1/files/{uploaded[0]['id']}/content")
            assert out == b"206", out

        print(f"transfers of {size_mb:,.0f} MB ({args.reps} reps each):", flush=True)
        measure("upload (raw body, streamed)", raw_upload, size)
        measure("upload (multipart form)", multipart_upload, size)
        measure(f"upload (resumable, {args.chunk_mb} MB chunks)", resumable_upload, size,
                target=False)  # a curl and an fsync per chunk: reported, not the target
        measure("download (whole file, checksum verified)", download, size)
        measure("download (Range: middle half)", ranged, half)
        zip_source = client.post("/api/v1/elements", json={
            "kind": "dataset", "name": "zipped", "parent_id": step["id"]}).json()
        curl("-T", str(source), "-X", "POST", "-H", auth,
             f"{base}/api/v1/elements/{zip_source['id']}/files?name=movie.bin")

        def zipped(rep: int) -> None:
            curl("-H", auth, "-o", "/dev/null", f"{base}/api/v1/zip?ids={zip_source['id']}")

        measure("download (dataset as zip)", zipped, size, target=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'transfer':<45} {'MB':>8} {'s':>7} {'MB/s':>7} {'server +MB':>10}  target")
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "MISSED")
        print(f"{row.transfer:<45} {row.size_mb:>8,.0f} {row.seconds:>7.2f} {row.mb_per_s:>7.0f} "
              f"{row.server_peak_rss_mb:>10.0f}  {row.target} {verdict}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_transfer.json"
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": os.getloadavg()[0]},
        "size_bytes": size, "reps": args.reps, "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
