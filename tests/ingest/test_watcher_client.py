"""The watcher's HTTP client: headers and body, answers, retries with backoff; and the local
state file."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse

import httpx
import pytest

from cryovault.ingest.watcher import client as client_module
from cryovault.ingest.watcher.backoff import Backoff
from cryovault.ingest.watcher.client import (
    IngestClient,
    RegisteredFile,
    ServerRefused,
    ServerUnreachable,
    SourceChanged,
    SourceFile,
    Stopped,
)
from cryovault.ingest.watcher.state import WatchState, default_state_path

DATASET = "0b7c6a1e-3a52-4c55-9d53-0f7a2f3d9c11"
FAST = Backoff(initial_s=0.001, factor=2.0, cap_s=0.004)


def _source(tmp_path, name="Images-Disc1/GridSquare_1/Data/a b.xml", data=b"<x/>"):
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    stat = path.stat()
    return SourceFile(name, path, stat.st_size, stat.st_mtime_ns)


def _client(handler, **kw) -> IngestClient:
    return IngestClient("http://server.test", "secret-token", DATASET, "Supervisor_X_EPU",
                        transport=httpx.MockTransport(handler), **{"backoff": FAST, **kw})


def _registered(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json={"status": "registered", "file_id": "f1", "problem": None,
                                     "item": {"kind": "micrograph", "id": "i1", "name": "a",
                                              "status": "in_progress"}})


def test_backoff_doubles_from_half_a_second_and_caps_at_30():
    delays = Backoff().delays()
    assert [next(delays) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_register_sends_the_identity_headers_and_the_bytes(tmp_path):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _registered(request)

    source = _source(tmp_path)
    outcome = _client(handler).register(source)
    assert outcome.status == "registered" and outcome.done and outcome.file_id == "f1"
    assert outcome.item.kind == "micrograph" and outcome.item.id == "i1"
    (request,) = seen
    assert request.method == "PUT"
    assert urllib.parse.unquote(request.url.path) == \
        f"/api/v1/datasets/{DATASET}/ingest/files/Images-Disc1/GridSquare_1/Data/a b.xml"
    assert request.headers["Authorization"] == "Bearer secret-token"
    assert request.headers["X-Source-Size"] == str(source.size)
    assert float(request.headers["X-Source-Mtime"]) == source.mtime
    assert request.headers["X-Session"] == "Supervisor_X_EPU"
    assert request.headers["X-Content-SHA256"] == hashlib.sha256(b"<x/>").hexdigest()
    assert request.content == b"<x/>"


def test_large_files_are_streamed_with_a_length(tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "SMALL_FILE_BYTES", 10)
    monkeypatch.setattr(client_module, "CHUNK_BYTES", 7)
    payload = bytes(range(256)) * 4
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append((request.read(), dict(request.headers)))
        return _registered(request)

    _client(handler).register(_source(tmp_path, "m_fractions.tiff", payload))
    body, headers = bodies[0]
    assert body == payload
    assert headers["content-length"] == str(len(payload))
    assert "transfer-encoding" not in headers and "x-content-sha256" not in headers


def test_a_file_that_shrinks_while_streamed_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "SMALL_FILE_BYTES", 10)
    source = _source(tmp_path, "m_fractions.tiff", b"x" * 100)
    source.path.write_bytes(b"x" * 50)  # shrank after it was found complete

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return _registered(request)

    with pytest.raises(SourceChanged):
        _client(handler).register(source)
    small = _source(tmp_path, "a.xml", b"abc")
    small.path.write_bytes(b"abcd")
    with pytest.raises(SourceChanged):
        _client(handler).register(small)
    small.path.unlink()
    with pytest.raises(FileNotFoundError):
        _client(handler).register(small)


def test_server_errors_and_lost_connections_are_retried_until_it_answers(tmp_path):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.read())
        if len(calls) <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) <= 5:
            return httpx.Response(503, json={"detail": "database is being upgraded"})
        return _registered(request)

    outcome = _client(handler).register(_source(tmp_path))
    assert outcome.status == "registered"
    assert len(calls) == 6 and all(body == b"<x/>" for body in calls)  # every retry resends


@pytest.mark.parametrize("status,expected", [(409, "conflict"), (422, "refused"),
                                             (413, "refused")])
def test_refusals_of_one_file_are_not_retried(tmp_path, status, expected):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"detail": "another file has this path"})

    outcome = _client(handler).register(_source(tmp_path))
    assert outcome.status == expected and not outcome.done
    assert "another file has this path" in outcome.problem and len(calls) == 1


@pytest.mark.parametrize("status,words", [(401, ["token", "--token"]),
                                          (403, ["permission", DATASET]),
                                          (404, [DATASET, "not found"])])
def test_refusals_of_the_watcher_are_fatal_with_a_message(tmp_path, status, words):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "nope"})

    with pytest.raises(ServerRefused) as caught:
        _client(handler).register(_source(tmp_path))
    assert caught.value.status == status
    for word in words:
        assert word in caught.value.message
    with pytest.raises(ServerRefused):
        _client(handler).list_registered()


def test_retry_limit_and_stop(tmp_path):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServerUnreachable, match="connection refused"):
        _client(down, retry_limit_s=0.02).register(_source(tmp_path))
    stop = threading.Event()
    calls = []

    def down_then_stop(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        return httpx.Response(502)

    with pytest.raises(Stopped):
        _client(down_then_stop, stop=stop).register(_source(tmp_path))
    assert len(calls) == 3


def test_listing_follows_the_cursor(tmp_path):
    pages = {None: ({"items": [{"path": "a", "source_size": 1, "source_mtime": 1.5}],
                     "next_cursor": "c1"}),
             "c1": ({"items": [{"path": "b", "source_size": 2, "source_mtime": 2.25}],
                     "next_cursor": None})}
    queries = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        queries.append(params)
        return httpx.Response(200, json=pages[params.get("cursor")])

    listing = _client(handler).list_registered()
    assert listing == [RegisteredFile("a", 1, 1.5), RegisteredFile("b", 2, 2.25)]
    assert all(q["session"] == "Supervisor_X_EPU" for q in queries)


def test_state_file_roundtrip_atomic_and_shared_between_sessions(tmp_path):
    path = tmp_path / "state" / "watch.json"
    one = WatchState(path, DATASET, "session-1")
    one.load()
    assert len(one) == 0
    one.mark_registered("EpuSession.dm", 100, 1700000000.123456)
    one.save()
    two = WatchState(path, DATASET, "session-2")
    two.load()
    assert len(two) == 0
    two.mark_registered("x.mdoc", 5, 1.0)
    two.save()
    again = WatchState(path, DATASET, "session-1")
    again.load()
    assert again.is_registered("EpuSession.dm", 100, 1700000000.123456)
    assert again.is_registered("EpuSession.dm", 100, 1700000000.1236)  # within 1 ms
    assert not again.is_registered("EpuSession.dm", 101, 1700000000.123456)
    assert not again.is_registered("EpuSession.dm", 100, 1700000001.0)
    document = json.loads(path.read_text())
    assert set(document["sessions"]) == {"session-1", "session-2"}
    assert [p.name for p in path.parent.iterdir()] == ["watch.json"]  # no temporary left


def test_state_file_corrupt_or_foreign_is_ignored(tmp_path, caplog):
    path = tmp_path / "watch.json"
    path.write_text("{not json")
    state = WatchState(path, DATASET, "s")
    state.load()
    assert len(state) == 0 and "not readable" in caplog.text
    path.write_text(json.dumps({"version": 1, "dataset": "other", "sessions": {
        "s": {"files": {"a": [1, 1.0]}}}}))
    state.load()
    assert len(state) == 0 and "another dataset" in caplog.text


def test_the_server_is_the_authority(tmp_path):
    state = WatchState(tmp_path / "w.json", DATASET, "s")
    state.mark_registered("a", 1, 1.0)
    state.mark_registered("b", 2, 2.0)
    held, missing = state.replace_with_server([RegisteredFile("a", 1, 1.0),
                                               RegisteredFile("c", 3, 3.0)])
    assert (held, missing) == (2, 1)
    assert state.is_registered("c", 3, 3.0) and not state.is_registered("b", 2, 2.0)


def test_default_state_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_path(DATASET) == tmp_path / "cryovault" / f"watch-{DATASET}.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path(DATASET) == (tmp_path / "home" / ".local" / "state" / "cryovault"
                                           / f"watch-{DATASET}.json")


def _sources(tmp_path, *contents: bytes) -> list[SourceFile]:
    sources = []
    for number, data in enumerate(contents):
        path = tmp_path / f"file{number}.xml"
        path.write_bytes(data)
        stat = path.stat()
        sources.append(SourceFile(f"Data/f{number}.xml", path, stat.st_size, stat.st_mtime_ns))
    return sources


def _split(body: bytes) -> list[tuple[dict, bytes]]:
    files, position = [], 0
    while position < len(body):
        end = body.index(b"\n", position)
        header = json.loads(body[position:end])
        files.append((header, body[end + 1:end + 1 + header["size"]]))
        position = end + 1 + header["size"]
    return files


def test_register_batch_frames_the_files_and_maps_the_answers(tmp_path):
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.headers["X-Session"] == "Supervisor_X_EPU"
        assert request.url.path == f"/api/v1/datasets/{DATASET}/ingest/batch"
        bodies.append(request.content)
        if len(bodies) == 1:
            return httpx.Response(503, json={"detail": "busy"})
        answers = {"Data/f0.xml": {"status": "registered", "file_id": "a", "problem": None,
                                   "item": {"kind": "micrograph", "id": "m", "name": "f0",
                                            "status": "in_progress"}, "detail": None},
                   "Data/f2.xml": {"status": "conflict", "file_id": None, "item": None,
                                   "problem": None, "detail": "another file"},
                   "Data/f3.xml": {"status": "refused", "file_id": None, "item": None,
                                   "problem": None, "detail": "bad path"}}
        return httpx.Response(200, json={"results": [
            {"path": h["path"], **answers[h["path"]]} for h, _ in _split(request.content)]})

    sources = _sources(tmp_path, b"<a/>", b"<b/>", b"<c/>", b"")
    client = _client(handler)
    original = client._http.post

    def post_then_delete(*args, **kwargs):  # f1 vanishes before the retry
        response = original(*args, **kwargs)
        sources[1].path.unlink(missing_ok=True)
        return response

    client._http.post = post_then_delete
    results = client.register_batch(sources)
    assert len(bodies) == 2
    first = _split(bodies[0])
    assert [h["path"] for h, _ in first] == [s.relative_path for s in sources]
    assert [data for _, data in first] == [b"<a/>", b"<b/>", b"<c/>", b""]
    assert first[0][0]["sha256"] == hashlib.sha256(b"<a/>").hexdigest()
    assert first[0][0]["mtime"] == sources[0].mtime and first[3][0]["size"] == 0
    assert [h["path"] for h, _ in _split(bodies[1])] == ["Data/f0.xml", "Data/f2.xml",
                                                          "Data/f3.xml"]
    assert results[0].status == "registered" and results[0].item.id == "m"
    assert isinstance(results[1], FileNotFoundError)
    assert results[2].status == "conflict" and results[2].problem == "another file"
    assert results[3].status == "refused" and "bad path" in results[3].problem


def test_register_batch_falls_back_to_single_files(tmp_path):
    calls: list[str] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST":
            return httpx.Response(404, json={"detail": "Not Found"})
        return _registered(request)

    client = _client(old_server)
    sources = _sources(tmp_path, b"<a/>", b"<b/>")
    assert [r.status for r in client.register_batch(sources)] == ["registered"] * 2
    assert client.register_batch(sources)  # no batch is tried again
    assert calls == ["POST", "PUT", "PUT", "PUT", "PUT"] and not client.batches_supported

    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"detail": "no"})

    with pytest.raises(ServerRefused):
        _client(forbidden).register_batch(sources)
