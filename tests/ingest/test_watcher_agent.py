"""The watcher loop against a small fake ingest server (real HTTP, in a thread): order,
idempotency across restarts, incomplete movies, refusals, retries while the server is down,
files deleted while waiting."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cryovault.ingest.watcher import agent as agent_module
from cryovault.ingest.watcher.agent import Watcher, WatchOptions
from cryovault.ingest.watcher.backoff import Backoff
from cryovault.ingest.watcher.epu import EpuLayout
from cryovault.science.simulate import write_tiff_movie
from tests.live_server import free_port

FIXTURES = Path("/work/shared/fixtures/epu")
DATASET = "6f1d3c1a-86f6-4a5c-9a59-2f3c0d7e4b21"
TOKEN = "watch-token"
SESSION = "Supervisor_20250108_101446_62_cm40593-1_EPU"
ATLAS_SESSION = "Supervisor_20250108_101551_cm40593-1_Atlas"
SQUARE = "Images-Disc1/GridSquare_8999138"
ACQUISITION = "FoilHole_9015883_Data_9017347_6_20250108_154915"  # its XML states 50 fractions
REWRITTEN_SUFFIXES = (".dm", ".mdoc")


# -- a fake of the server's ingest API ----------------------------------------------------------


@dataclass
class FakeIngest:
    """Keeps (session, path) → (size, mtime); answers like the real API (single PUTs and
    batches; a 503 for a batch is one entry in `puts`)."""

    fail_first: int = 0
    # called with each PUT's path before it is answered; returning True answers 503
    on_put: object = None
    batches: bool = True  # False: an older server without the batch route
    files: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    puts: list[tuple[str, int]] = field(default_factory=list)  # (path, status) in order
    requests: int = 0  # registration requests (PUTs and batches)
    batch_sizes: list[int] = field(default_factory=list)
    batched: list[str] = field(default_factory=list)  # paths that came in batches
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> FastAPI:
        app = FastAPI()
        prefix = "/api/v1/datasets/{dataset_id}/ingest/files"

        def refuse(request: Request, dataset_id: str) -> JSONResponse | None:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"detail": "invalid or expired token"}, status_code=401)
            if dataset_id != DATASET:
                return JSONResponse({"detail": "no such dataset"}, status_code=404)
            return None

        @app.put(prefix + "/{relative_path:path}")
        async def put(dataset_id: str, relative_path: str, request: Request):
            refused = refuse(request, dataset_id)
            if refused is not None:
                return refused
            body = await request.body()
            with self.lock:
                self.requests += 1
                if self.on_put is not None and self.on_put(relative_path):
                    self.puts.append((relative_path, 503))
                    return JSONResponse({"detail": "busy"}, status_code=503)
                if self.fail_first > 0:
                    self.fail_first -= 1
                    self.puts.append((relative_path, 503))
                    return JSONResponse({"detail": "busy"}, status_code=503)
                status, answer = self.register(
                    request.headers["X-Session"], relative_path,
                    int(request.headers["X-Source-Size"]),
                    float(request.headers["X-Source-Mtime"]), body)
            return JSONResponse(answer, status_code=status)

        if self.batches:
            @app.post("/api/v1/datasets/{dataset_id}/ingest/batch")
            async def batch(dataset_id: str, request: Request):
                refused = refuse(request, dataset_id)
                if refused is not None:
                    return refused
                body = await request.body()
                files, position = [], 0
                while position < len(body):  # the framing of the real API
                    end = body.index(b"\n", position)
                    header = json.loads(body[position:end])
                    files.append((header, body[end + 1:end + 1 + header["size"]]))
                    position = end + 1 + header["size"]
                with self.lock:
                    self.requests += 1
                    self.batch_sizes.append(len(files))
                    busy = [h["path"] for h, _ in files
                            if self.on_put is not None and self.on_put(h["path"])]
                    if busy:
                        self.puts.append((busy[0], 503))
                        return JSONResponse({"detail": "busy"}, status_code=503)
                    if self.fail_first > 0:
                        self.fail_first -= 1
                        self.puts.append(("(batch)", 503))
                        return JSONResponse({"detail": "busy"}, status_code=503)
                    results = []
                    for header, data in files:
                        self.batched.append(header["path"])
                        assert header["sha256"] == hashlib.sha256(data).hexdigest()
                        status, answer = self.register(request.headers["X-Session"],
                                                       header["path"], header["size"],
                                                       float(header["mtime"]), data)
                        if status == 409:
                            answer = {"status": "conflict", "detail": answer["detail"]}
                        elif status == 422:
                            answer = {"status": "refused", "detail": answer["detail"]}
                        results.append({"path": header["path"], "file_id": None, "item": None,
                                        "problem": None, "detail": None, **answer})
                return {"results": results}

        @app.get(prefix)
        async def listing(dataset_id: str, request: Request, session: str, limit: int = 1000,
                          cursor: str | None = None):
            refused = refuse(request, dataset_id)
            if refused is not None:
                return refused
            with self.lock:
                rows = sorted((p, s, m) for (sess, p), (s, m) in self.files.items()
                              if sess == session)
            start = int(cursor or 0)
            page = rows[start:start + limit]
            more = start + limit < len(rows)
            return {"items": [{"path": p, "source_size": s, "source_mtime": m}
                              for p, s, m in page],
                    "next_cursor": str(start + limit) if more else None}

        return app

    def register(self, session: str, relative_path: str, size: int, mtime: float,
                 body: bytes) -> tuple[int, dict]:
        """One file, under the lock: (status, answer) like the real PUT."""
        key = (session, relative_path)
        if len(body) != size:
            status, answer = 422, {"detail": "size mismatch"}
        elif key in self.files and self.files[key] == (size, mtime):
            status, answer = 200, {"status": "already_registered", "file_id": "f"}
        elif key in self.files and not relative_path.endswith(REWRITTEN_SUFFIXES):
            status, answer = 409, {"detail": "another file has this path"}
        else:
            self.files[key] = (size, mtime)
            status, answer = 201, {"status": "registered", "file_id": "f"}
        if status in (200, 201):
            name = relative_path.rsplit("/", 1)[-1]
            item = None
            if "_Data_" in name:
                acquisition = name.split(".")[0].removesuffix("_fractions")
                item = {"kind": "micrograph", "id": acquisition, "name": acquisition,
                        "status": "in_progress"}
            answer |= {"item": item, "problem": "broken XML" if name.startswith(
                "broken") else None}
        self.puts.append((relative_path, status))
        return status, answer

    def registered_paths(self) -> list[str]:
        return sorted(path for _, path in self.files)

    def sent(self, status: int = 201) -> list[str]:
        return [path for path, code in self.puts if code == status]


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the fake server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def fake() -> FakeIngest:
    return FakeIngest()


@pytest.fixture
def server(fake) -> Iterator[str]:
    with serve(fake.app()) as url:
        yield url


# -- a session folder built from the real EPU files -------------------------------------------


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)  # the fixtures are read-only; the copies must not be


def _movie(path: Path, frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).poisson(2.0, (frames, 8, 8)).astype(np.uint16)
    write_tiff_movie(path, data)


@pytest.fixture
def visit(tmp_path) -> Path:
    visit = tmp_path / "cm40593-1"
    session = visit / SESSION
    example = FIXTURES / "epu-dir-example"
    _copy(example / "EpuSession.dm", session / "EpuSession.dm")
    for xml in example.rglob("*.xml"):
        _copy(xml, session / xml.relative_to(example))
    _copy(example / SQUARE / "Data" / f"{ACQUISITION}.jpg",
          session / SQUARE / "Data" / f"{ACQUISITION}.jpg")
    _copy(FIXTURES / "metadata" / "GridSquare_4590776.dm",
          session / "Metadata" / "GridSquare_8999138.dm")
    atlas = visit / "atlas" / ATLAS_SESSION
    _copy(FIXTURES / "atlas" / "Atlas.dm", atlas / "Sample7" / "Atlas" / "Atlas.dm")
    (atlas / "Sample7" / "Atlas" / "Atlas_1.jpg").write_bytes(b"\xff\xd8atlas")
    (atlas / "Sample3" / "Atlas").mkdir(parents=True)
    (atlas / "Sample3" / "Atlas" / "Atlas.dm").write_bytes(b"another grid's atlas")
    (atlas / "ScreeningSession.dm").write_bytes(b"<ScreeningSessionXml/>")
    # what must never be sent
    (session / ".hidden.xml").write_bytes(b"x")
    (session / SQUARE / "Data" / "~lock.xml").write_bytes(b"x")
    (session / SQUARE / "Data" / "copying.xml.part").write_bytes(b"x")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.txt", session / "link-out.txt")
    return visit


def _options(server: str, tmp_path: Path, **kw) -> WatchOptions:
    values = dict(server=server, token=TOKEN, dataset_id=DATASET,
                  state_path=tmp_path / "state.json", once=True, settle_s=0.05,
                  movie_settle_s=0.5, interval_s=0.05, workers=1, retry_limit_s=5.0)
    values.update(kw)
    return WatchOptions(**values)


FAST = Backoff(initial_s=0.01, factor=2.0, cap_s=0.05)


def _watch(visit: Path, options: WatchOptions, movies: Path | None = None, **kw) -> Watcher:
    return Watcher(EpuLayout(visit / SESSION, movies), options, backoff=FAST, **kw)


EXPECTED = sorted([
    "EpuSession.dm", "Metadata/GridSquare_8999138.dm",
    f"{SQUARE}/GridSquare_20250108_151151.xml",
    f"{SQUARE}/FoilHoles/FoilHole_9015889_20250108_154715.xml",
    f"{SQUARE}/Data/{ACQUISITION}.xml", f"{SQUARE}/Data/{ACQUISITION}.jpg",
    f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff",
    "Atlas/ScreeningSession.dm", "Atlas/Sample7/Atlas/Atlas.dm", "Atlas/Sample7/Atlas/Atlas_1.jpg",
])


def test_once_sends_the_session_atlas_and_movies_in_order(visit, tmp_path, server, fake):
    movies = tmp_path / "offload" / SESSION
    _movie(movies / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff", 50)
    (movies / "notes.txt").write_bytes(b"only movies are taken from the movies folder")
    report = _watch(visit, _options(server, tmp_path), movies).run()
    assert report.fatal is None and report.exit_code == 0
    assert fake.registered_paths() == EXPECTED
    assert report.registered == len(EXPECTED) and report.acquisitions == 1
    order = fake.sent()
    assert order[0] == "EpuSession.dm"
    assert {order[1], order[2], order[3]} == {"Atlas/ScreeningSession.dm",
                                             "Atlas/Sample7/Atlas/Atlas.dm",
                                             "Atlas/Sample7/Atlas/Atlas_1.jpg"}
    assert order.index(f"{SQUARE}/Data/{ACQUISITION}.xml") < \
        order.index(f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff") == len(order) - 1
    assert order.index("Metadata/GridSquare_8999138.dm") < \
        order.index(f"{SQUARE}/GridSquare_20250108_151151.xml")


def test_small_files_go_in_batches(visit, tmp_path, server, fake):
    _movie(visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff", 50)
    report = _watch(visit, _options(server, tmp_path, workers=2)).run()
    assert report.fatal is None and fake.registered_paths() == EXPECTED
    assert report.registered == len(EXPECTED)
    assert fake.batch_sizes and max(fake.batch_sizes) > 1
    assert fake.requests < len(EXPECTED)  # fewer requests than files


def test_big_files_go_one_by_one(visit, tmp_path, server, fake, monkeypatch):
    monkeypatch.setattr(agent_module, "SMALL_FILE_BYTES", 10_000)
    movie = visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff"
    _movie(movie, 50)
    assert movie.stat().st_size > 10_000
    (visit / SESSION / "Metadata" / "GridSquare_1.dm").write_bytes(b"<x/>")
    (visit / SESSION / "Metadata" / "GridSquare_2.dm").write_bytes(b"<y/>")
    _watch(visit, _options(server, tmp_path)).run()
    assert len(fake.registered_paths()) == len(EXPECTED) + 2
    assert fake.batched and all(path != f"{SQUARE}/Data/{movie.name}" for path in fake.batched)
    # each file sent once: one request per batch and per file sent alone
    assert fake.requests == len(fake.batch_sizes) + len(EXPECTED) + 2 - len(fake.batched)


def test_an_older_server_without_batches_gets_single_files(visit, tmp_path, caplog):
    fake = FakeIngest(batches=False)
    caplog.set_level(logging.INFO, "cryovault.watch")
    with serve(fake.app()) as url:
        report = _watch(visit, _options(url, tmp_path, workers=2)).run()
    assert report.fatal is None and report.refused == 0
    assert fake.registered_paths() == [p for p in EXPECTED if not p.endswith(".tiff")]
    assert fake.requests == len(fake.registered_paths())  # each once: the batch was a 404
    assert "takes no batches" in caplog.text


def test_a_second_run_sends_nothing_even_without_its_state_file(visit, tmp_path, server, fake):
    _movie(visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff", 50)
    _watch(visit, _options(server, tmp_path)).run()
    first = len(fake.puts)
    assert first == len(EXPECTED)
    again = _watch(visit, _options(server, tmp_path)).run()
    assert len(fake.puts) == first and again.registered == 0
    (tmp_path / "state.json").unlink()  # the server's listing is enough
    again = _watch(visit, _options(server, tmp_path)).run()
    assert len(fake.puts) == first and again.registered == 0
    # a rewritten session file is sent again; a changed data file is a conflict
    session_file = visit / SESSION / "EpuSession.dm"
    session_file.write_bytes(session_file.read_bytes() + b" ")
    xml = visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}.xml"
    xml.write_bytes(xml.read_bytes() + b" ")
    report = _watch(visit, _options(server, tmp_path)).run()
    assert fake.puts[first:] == [("EpuSession.dm", 201), (f"{SQUARE}/Data/{ACQUISITION}.xml",
                                                          409)]
    assert report.registered == 1 and report.refused == 1


def test_an_incomplete_movie_waits_for_its_frames(visit, tmp_path, server, fake, caplog):
    movie = visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff"
    _movie(movie, 40)
    caplog.set_level(logging.INFO, "cryovault.watch")
    report = _watch(visit, _options(server, tmp_path)).run()
    assert f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff" not in fake.registered_paths()
    assert report.waiting == 1
    assert "40 of 50 frames" in caplog.text and f"{ACQUISITION}_fractions.tiff" in caplog.text
    _movie(movie, 50)
    _watch(visit, _options(server, tmp_path)).run()
    assert fake.registered_paths() == EXPECTED


def test_a_movie_without_its_xml_needs_the_longer_settle_time(visit, tmp_path, server, fake):
    (visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}.xml").unlink()
    movie = visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff"
    _movie(movie, 12)
    _watch(visit, _options(server, tmp_path, movie_settle_s=3600)).run()
    assert f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff" not in fake.registered_paths()
    old = time.time() - 60
    os.utime(movie, (old, old))  # nothing wrote it for a minute
    _watch(visit, _options(server, tmp_path, movie_settle_s=30)).run()
    assert f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff" in fake.registered_paths()


def test_an_empty_file_is_sent_only_once_it_stays_empty(visit, tmp_path, server, fake):
    empty = visit / SESSION / SQUARE / "Data" / "FoilHole_1_Data_2_3_20250108_160000.xml"
    empty.touch()  # created, not written yet
    _watch(visit, _options(server, tmp_path, movie_settle_s=30)).run()
    assert f"{SQUARE}/Data/{empty.name}" not in fake.registered_paths()
    old = time.time() - 60
    os.utime(empty, (old, old))
    _watch(visit, _options(server, tmp_path, movie_settle_s=30)).run()
    assert f"{SQUARE}/Data/{empty.name}" in fake.registered_paths()


def test_server_errors_are_retried_and_nothing_is_dropped(visit, tmp_path, fake):
    fake.fail_first = 7
    _movie(visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff", 50)
    with serve(fake.app()) as url:
        report = _watch(visit, _options(url, tmp_path, workers=3)).run()
    assert report.fatal is None
    assert fake.registered_paths() == EXPECTED
    assert len(fake.sent(503)) == 7 and len(fake.sent(201)) == len(EXPECTED)
    assert len(fake.sent(200)) == 0  # each file registered exactly once


@pytest.mark.parametrize("token,dataset,words", [
    ("wrong", DATASET, ["refused the API token", "--token"]),
    (TOKEN, "00000000-0000-0000-0000-000000000000", ["not found", "--dataset"]),
])
def test_a_refused_watcher_stops_with_a_message(visit, tmp_path, server, fake, token, dataset,
                                                words):
    report = _watch(visit, _options(server, tmp_path, token=token, dataset_id=dataset)).run()
    assert report.exit_code == 1
    for word in words:
        assert word in report.fatal
    assert fake.puts == []


def test_once_gives_up_when_the_server_cannot_be_reached(visit, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    report = _watch(visit, _options(f"http://127.0.0.1:{port}", tmp_path,
                                    retry_limit_s=0.2)).run()
    assert report.exit_code == 1 and "cannot reach the server" in report.fatal


def test_unusable_files_are_logged_with_their_path(visit, tmp_path, server, fake, caplog):
    (visit / SESSION / "broken.xml").write_bytes(b"<MicroscopeImage")
    caplog.set_level(logging.WARNING, "cryovault.watch")
    report = _watch(visit, _options(server, tmp_path)).run()
    assert report.problems == 1
    assert "broken.xml: stored, but the server could not use it: broken XML" in caplog.text


def test_a_file_deleted_while_being_sent_is_logged_and_forgotten(visit, tmp_path, server, fake,
                                                                 caplog):
    jpg = visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}.jpg"

    def delete_the_jpg(path: str) -> bool:
        if path.endswith(f"{ACQUISITION}.jpg"):
            jpg.unlink(missing_ok=True)  # gone before the retry reads it again
            return True
        return False

    fake.on_put = delete_the_jpg
    caplog.set_level(logging.INFO, "cryovault.watch")
    report = _watch(visit, _options(server, tmp_path)).run()
    assert report.fatal is None and report.waiting == 0
    assert f"{jpg}: deleted while it was being sent; forgotten" in caplog.text
    assert fake.registered_paths() == [p for p in EXPECTED if not p.endswith(
        (f"{ACQUISITION}.jpg", ".tiff"))]


def _wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_watching_follows_a_growing_session(visit, tmp_path, fake, monkeypatch):
    """Watch mode: the server is down at start and comes up on the same port later; files
    grow and appear while watched; one is deleted before it is complete; a stop ends it."""
    monkeypatch.setattr(agent_module, "STARTUP_LISTING_LIMIT_S", 0.2)
    monkeypatch.setattr(agent_module, "LISTING_RETRY_EVERY_S", 0.2)
    port = free_port()
    stop = threading.Event()
    watcher = _watch(visit, _options(f"http://127.0.0.1:{port}", tmp_path, once=False,
                                     retry_limit_s=None, workers=4), stop=stop)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        time.sleep(0.5)  # the watcher retries while nothing listens
        data = visit / SESSION / SQUARE / "Data"
        movie = data / f"{ACQUISITION}_fractions.tiff"
        full = tmp_path / "full.tiff"
        _movie(full, 50)
        content = full.read_bytes()
        with movie.open("wb") as out:  # written in pieces, like EPU
            for start in range(0, len(content), len(content) // 5 + 1):
                out.write(content[start:start + len(content) // 5 + 1])
                out.flush()
                time.sleep(0.1)
        (data / "FoilHole_1_Data_2_3_20250108_160000.jpg").write_bytes(b"will vanish")
        with serve(fake.app(), port=port):
            _wait_for(lambda: set(EXPECTED) <= set(fake.registered_paths()),
                      what="the whole session")
            (data / "FoilHole_1_Data_2_3_20250108_160000.jpg").unlink(missing_ok=True)
            late = data / "FoilHole_9015883_Data_9017354_6_20250108_154918.xml"
            late.write_bytes((data / f"{ACQUISITION}.xml").read_bytes())
            _wait_for(lambda: f"{SQUARE}/Data/{late.name}" in fake.registered_paths(),
                      what="a file written later")
            stop.set()
            thread.join(timeout=20)
            assert not thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=20)
    assert watcher.report.fatal is None
    counts: dict[str, int] = {}
    for path, status in fake.puts:
        if status == 201:
            counts[path] = counts.get(path, 0) + 1
    assert all(n == 1 for n in counts.values()), counts
    assert (tmp_path / "state.json").exists()
