"""End to end, each part in its own process as in a facility: `cryovault serve`, the acquisition
simulator writing at its pace, and `cryovault watch`. The watcher is killed with SIGKILL midway
and restarted; the server is stopped for a while and restarted on the same port and data
directory. In the end every acquisition is registered exactly once and every file is listed
once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port

CRYOVAULT = [sys.executable, "-m", "cryovault.cli"]
PASSWORD = "watcher-password-1"


class ServerProcess:
    """`cryovault serve` on a fixed port and data directory, which can be stopped and started
    again."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "CRYOVAULT_DATABASE_URL"}
        self.env["CRYOVAULT_DATA_DIR"] = str(self.data_dir)
        self.process: subprocess.Popen | None = None

    def setup(self) -> None:
        subprocess.run([*CRYOVAULT, "admin", "create-user", "operator", "--password", PASSWORD],
                       env=self.env, check=True, capture_output=True)

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [*CRYOVAULT, "serve", "--port", str(self.port)], env=self.env, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/api/v1/me", timeout=1)
                return
            except httpx.HTTPError:
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path)
    server.setup()
    server.start()
    yield server
    server.stop()


def _api(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def _run_dataset(server: ServerProcess, workflow_type: str, dataset_type: str
                 ) -> tuple[str, str]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/api/v1/auth/login", json={"username": "operator", "password": PASSWORD}
                    ).raise_for_status()
        token = client.post("/api/v1/auth/tokens", json={"name": "watcher"}).json()["token"]
        workflow = client.post("/api/v1/elements", json={
            "kind": "workflow", "name": "Live", "workflow_type": workflow_type}).json()
        steps = client.get("/api/v1/elements", params={"parent_id": workflow["id"]}).json()
        imaging = next(s for s in steps["items"] if s["name"] == "Imaging")
        dataset = client.post("/api/v1/elements", json={
            "kind": "dataset", "name": "Run", "parent_id": imaging["id"],
            "dataset_type": dataset_type}).json()
    return token, dataset["id"]


def _listing(server: ServerProcess, token: str, dataset_id: str) -> list[str]:
    paths: list[str] = []
    cursor = None
    with _api(server, token) as client:
        while True:
            page = client.get(f"/api/v1/datasets/{dataset_id}/ingest/files", params={
                "limit": 200, **({"cursor": cursor} if cursor else {})})
            page.raise_for_status()
            body = page.json()
            paths += [item["path"] for item in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                return paths


def _safe_count(count: Callable[[], int]) -> int:
    try:
        return count()
    except httpx.HTTPError:
        return -1  # the server is restarting


def _wait_for(condition: Callable[[], bool], timeout: float, what: str,
              processes: tuple[subprocess.Popen, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            if process.poll() not in (None, 0):
                said = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"{process.args[:5]} exited with {process.returncode} "
                                     f"while waiting for {what}: {said}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@contextmanager
def _watcher(args: list[str], token: str, log: Path) -> Iterator[subprocess.Popen]:
    with log.open("a") as out:
        process = subprocess.Popen([*CRYOVAULT, "watch", *args], stdout=out,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "CRYOVAULT_TOKEN": token})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _files_under(root: Path, prefix: str = "", accept=lambda inner: True) -> set[str]:
    return {prefix + p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and accept(p.relative_to(root).as_posix())}


def _kill_restart_and_outage(server: ServerProcess, token: str, dataset_id: str,
                             watch_args: list[str], log: Path,
                             simulator: subprocess.Popen) -> subprocess.Popen:
    """Watcher 1 is killed with SIGKILL once some files are in; watcher 2 takes over and
    lives through a server outage. Returns watcher 2 (still running)."""
    listed = lambda: _safe_count(lambda: len(_listing(server, token, dataset_id)))  # noqa: E731
    with _watcher(watch_args, token, log) as first:
        _wait_for(lambda: listed() >= 8, 120, "the first files", (first, simulator))
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = subprocess.Popen([*CRYOVAULT, "watch", *watch_args], stdout=log.open("a"),
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "CRYOVAULT_TOKEN": token})
    before = listed()
    _wait_for(lambda: listed() >= before + 5, 120, "more files after the restart",
              (second, simulator))
    server.stop()
    time.sleep(3)  # the watcher retries meanwhile; the simulator goes on writing
    server.start()
    return second


def _stop(watcher: subprocess.Popen, log: Path) -> None:
    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait(timeout=60) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_epu_session_is_registered_exactly_once(tmp_path, server):
    token, dataset_id = _run_dataset(server, "spa", "epu_run")
    visit, offload = tmp_path / "visit", tmp_path / "offload"
    simulator = subprocess.Popen(
        [*CRYOVAULT, "simulate", "epu", str(visit), "--squares", "2", "--holes", "4",
         "--acquisitions-per-hole", "2", "--rate", "2", "--size", "96", "--frames", "4",
         "--movies", str(offload), "--out-of-order", "--seed", "11"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.endswith("_EPU") for p in visit.glob("*")), 60,
              "the session folder", (simulator,))
    session = next(p for p in visit.iterdir() if p.name.endswith("_EPU"))
    movies = offload / session.name
    movies.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "watcher.log"
    watch_args = ["epu", str(session), "--movies", str(movies), "--dataset", dataset_id,
                  "--server", server.url, "--interval", "0.3", "--settle", "0.3",
                  "--movie-settle", "3", "--state", str(tmp_path / "state.json")]
    watcher = _kill_restart_and_outage(server, token, dataset_id, watch_args, log, simulator)
    try:
        assert simulator.wait(timeout=300) == 0, simulator.stderr.read()
        truth = [json.loads(line) for line in (visit / "ground_truth.jsonl").read_text()
                 .splitlines() if line.strip()]
        acquisitions = sum(1 for entry in truth if entry["kind"] == "acquisition")
        assert acquisitions == 16
        atlas_dm = next(visit.glob("atlas/*/Sample*/Atlas/Atlas.dm"))
        atlas_session, sample = atlas_dm.parents[2], atlas_dm.parents[1].name
        expected = (_files_under(session) | _files_under(movies)
                    | _files_under(atlas_session, "Atlas/",
                                   lambda inner: "/" not in inner or
                                   inner.startswith(sample + "/")))

        def micrographs_completed() -> int:
            with _api(server, token) as client:
                page = client.get(f"/api/v1/datasets/{dataset_id}/micrographs",
                                  params={"status": "completed", "limit": 1}).json()
            return page["total"]

        _wait_for(lambda: set(_listing(server, token, dataset_id)) == expected
                  and _safe_count(micrographs_completed) == acquisitions, 180,
                  "every file registered", (watcher,))
    finally:
        simulator.kill()
        _stop(watcher, log)
    paths = _listing(server, token, dataset_id)
    assert [p for p, n in Counter(paths).items() if n > 1] == []
    with _api(server, token) as client:
        page = client.get(f"/api/v1/datasets/{dataset_id}/micrographs",
                          params={"limit": 100}).json()
    assert page["total"] == acquisitions
    assert page["counts"] == {"completed": acquisitions, "in_progress": 0, "failed": 0}
    names = [item["name"] for item in page["items"]]
    assert len(set(names)) == acquisitions
    assert set(names) == {e["name"] for e in truth if e["kind"] == "acquisition"}


def test_tomo_session_is_registered_exactly_once(tmp_path, server):
    token, dataset_id = _run_dataset(server, "et", "tomo_run")
    folder = tmp_path / "tomo"
    simulator = subprocess.Popen(
        [*CRYOVAULT, "simulate", "tomo", str(folder), "--positions", "3", "--tilts", "-9:9:3",
         "--rate", "3", "--size", "64", "--frames", "4", "--seed", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(folder.exists, 60, "the acquisition folder", (simulator,))
    log = tmp_path / "watcher.log"
    watch_args = ["tomo", str(folder), "--dataset", dataset_id, "--server", server.url,
                  "--interval", "0.3", "--settle", "0.3", "--movie-settle", "3", "--state",
                  str(tmp_path / "state.json")]
    watcher = _kill_restart_and_outage(server, token, dataset_id, watch_args, log, simulator)
    try:
        assert simulator.wait(timeout=300) == 0, simulator.stderr.read()
        expected = {p for p in _files_under(folder) if not p.endswith(".jsonl")}

        def complete_series() -> int:
            with _api(server, token) as client:
                page = client.get(f"/api/v1/datasets/{dataset_id}/tilt-series").json()
            return sum(1 for s in page["items"] if s["tilt_count"] == 7
                       and s["movie_count"] == 7)

        _wait_for(lambda: expected <= set(_listing(server, token, dataset_id))
                  and _safe_count(complete_series) == 3, 180, "every tilt registered",
                  (watcher,))
    finally:
        simulator.kill()
        _stop(watcher, log)
    paths = _listing(server, token, dataset_id)
    assert [p for p, n in Counter(paths).items() if n > 1] == []
    with _api(server, token) as client:
        page = client.get(f"/api/v1/datasets/{dataset_id}/tilt-series").json()
    assert page["total"] == 3
    assert sorted(s["name"] for s in page["items"]) == ["Position_1", "Position_2",
                                                        "Position_3"]
