"""The watcher's side of the ingest API (one httpx.Client with keep-alive, shared by the
upload threads).

`PUT /api/v1/datasets/{dataset}/ingest/files/{relative_path}` sends one file, streamed from disk
(files up to `SMALL_FILE_BYTES` are read once, hashed and sent with `X-Content-SHA256`);
`POST /api/v1/datasets/{dataset}/ingest/batch` sends many small files in one request (per
file a JSON header line and the bytes; one answer per file; a server without this route,
404/405, gets single PUTs); `GET /api/v1/datasets/{dataset}/ingest/files?session=` lists what
the server already holds.

What the answers mean to the watcher:
* 201 registered, 200 already registered: done (`problem` set when the server kept the bytes
  but could not use them);
* 409 (another file was registered under this path), 400/413/415/422 (the server refuses this
  file): a `RegisterOutcome` with status "conflict"/"refused" — logged, not retried;
* 401, 403, 404, 405: `ServerRefused` — nothing can be registered, the watcher stops;
* 408, 429, 5xx, connection errors and timeouts: retried with exponential backoff (0.5 s
  doubling, capped at 30 s) until they succeed, the watcher stops (`Stopped`) or, when a retry
  limit is set (`--once`), it is reached (`ServerUnreachable`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from cryovault import __version__
from cryovault.ingest.watcher.backoff import Backoff

log = logging.getLogger("cryovault.watch")

SMALL_FILE_BYTES = 8 * 2**20
BATCH_MAX_FILES = 64  # the server takes up to 256 files and 64 MiB per batch
BATCH_MAX_BYTES = 16 * 2**20
CHUNK_BYTES = 2**20
PAGE_SIZE = 1000
FATAL_STATUSES = frozenset({401, 403, 404, 405})
REFUSED_STATUSES = frozenset({400, 413, 415, 422})
RETRIED_STATUSES = frozenset({408, 425, 429})


class ServerRefused(Exception):
    """The server refuses the watcher as a whole (bad token, no access, no such dataset)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServerUnreachable(Exception):
    """The server could not be reached (or kept failing) for longer than the retry limit."""


class Stopped(Exception):
    """The watcher is shutting down; the call was abandoned while waiting to retry."""


class SourceChanged(Exception):
    """The file changed (or shrank) while it was being read; it must settle again."""


class _NothingToSend(Exception):
    """No file of a batch could be read."""


@dataclass(frozen=True)
class SourceFile:
    """A file ready to be sent: its path on disk and the identity the server keys on."""

    relative_path: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class ItemRef:
    kind: str
    id: str
    name: str
    status: str | None


@dataclass(frozen=True)
class RegisterOutcome:
    status: str  # "registered" | "already_registered" | "conflict" | "refused"
    file_id: str | None = None
    item: ItemRef | None = None
    problem: str | None = None  # the server's word: unusable content, or why it refused

    @property
    def done(self) -> bool:
        return self.status in ("registered", "already_registered")


@dataclass(frozen=True)
class RegisteredFile:
    path: str
    source_size: int
    source_mtime: float


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return str(body)[:300]


def _item(value: object) -> ItemRef | None:
    if not isinstance(value, dict) or "id" not in value:
        return None
    return ItemRef(str(value.get("kind", "")), str(value["id"]), str(value.get("name", "")),
                   value.get("status"))


def describe_refusal(status: int, detail: str, server: str, dataset_id: str) -> str:
    """One line a person can act on for a fatal answer."""
    if status == 401:
        return (f"the server {server} refused the API token ({detail}); pass a valid one "
                "with --token or CRYOVAULT_TOKEN")
    if status == 403:
        return (f"no permission to add files to dataset {dataset_id} ({detail}); the token's "
                "user must be a collaborator of the dataset")
    if status == 404:
        return (f"dataset {dataset_id} was not found on {server} ({detail}); check --dataset "
                "and --server")
    if status == 405:
        return f"the server {server} does not offer the ingest API ({status}: {detail})"
    return f"the server {server} refused the watcher ({status}): {detail}"


class IngestClient:
    """Calls the ingest API of one dataset for one acquisition session."""

    def __init__(self, server: str, token: str, dataset_id: str, session: str, *,
                 backoff: Backoff = Backoff(), stop: threading.Event | None = None,
                 retry_limit_s: float | None = None, pool_size: int = 4,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        self.dataset_id = dataset_id
        self.session = session
        self.backoff = backoff
        self.stop = stop or threading.Event()
        self.retry_limit_s = retry_limit_s
        limits = httpx.Limits(max_connections=pool_size + 2,
                              max_keepalive_connections=pool_size + 2)
        self._http = httpx.Client(
            base_url=self.server, transport=transport, limits=limits,
            timeout=httpx.Timeout(connect=10.0, read=600.0, write=120.0, pool=None),
            headers={"Authorization": f"Bearer {token}",
                     "User-Agent": f"cryovault-watch/{__version__}"})
        dataset = f"/api/v1/datasets/{urllib.parse.quote(dataset_id, safe='')}"
        self._prefix = f"{dataset}/ingest/files"
        self._batch_url = f"{dataset}/ingest/batch"
        self.batches_supported = True  # until the server answers 404/405 to a batch

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- retries ---------------------------------------------------------------------------

    def _with_retries(self, what: str, attempt, retry_limit_s: float | None = None):
        """Run `attempt()` (which returns a response) until it is not a transient failure,
        for at most `retry_limit_s` (default: the client's limit; None: no limit)."""
        limit = self.retry_limit_s if retry_limit_s is None else retry_limit_s
        delays = self.backoff.delays()
        started = time.monotonic()
        failures = 0
        while True:
            if self.stop.is_set():
                raise Stopped(what)
            try:
                response = attempt()
                if response.status_code < 500 and response.status_code not in RETRIED_STATUSES:
                    if failures:
                        log.info("%s: the server answers again", what)
                    return response
                reason = f"{response.status_code} {_detail(response)}"
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failures += 1
            delay = next(delays)
            if limit is not None and time.monotonic() - started + delay > limit:
                raise ServerUnreachable(f"{self.server}: {reason}")
            if failures == 1 or failures % 5 == 0:
                log.warning("%s: server not available (%s); retrying in %.1f s (attempt %d)",
                            what, reason, delay, failures + 1)
            if self.stop.wait(delay):
                raise Stopped(what)

    def _fatal(self, response: httpx.Response) -> ServerRefused:
        detail = _detail(response)
        return ServerRefused(response.status_code, describe_refusal(
            response.status_code, detail, self.server, self.dataset_id))

    # -- listing ---------------------------------------------------------------------------

    def list_registered(self, retry_limit_s: float | None = None) -> list[RegisteredFile]:
        """Every file of this session the server holds (all pages)."""
        return list(self._pages(retry_limit_s))

    def _pages(self, retry_limit_s: float | None) -> Iterator[RegisteredFile]:
        cursor: str | None = None
        while True:
            params = {"session": self.session, "limit": str(PAGE_SIZE)}
            if cursor:
                params["cursor"] = cursor
            response = self._with_retries(
                "listing registered files",
                lambda p=params: self._http.get(self._prefix, params=p), retry_limit_s)
            if response.status_code in FATAL_STATUSES or response.status_code >= 400:
                raise self._fatal(response)
            body = response.json()
            for item in body.get("items", []):
                yield RegisteredFile(str(item["path"]), int(item["source_size"]),
                                     float(item["source_mtime"]))
            cursor = body.get("next_cursor")
            if not cursor:
                return

    # -- registration ----------------------------------------------------------------------

    def _body(self, source: SourceFile) -> tuple[bytes | Iterator[bytes], dict[str, str]]:
        headers = {"X-Source-Size": str(source.size), "X-Source-Mtime": repr(source.mtime),
                   "X-Session": self.session, "Content-Length": str(source.size),
                   "Content-Type": "application/octet-stream"}
        if source.size <= SMALL_FILE_BYTES:
            data = _read_whole(source)
            headers["X-Content-SHA256"] = hashlib.sha256(data).hexdigest()
            return data, headers
        fh = source.path.open("rb")  # opened here so a vanished file raises before sending
        return _stream(fh, source), headers

    def register(self, source: SourceFile) -> RegisterOutcome:
        """Send one file. Raises FileNotFoundError (the file vanished), SourceChanged,
        ServerRefused, ServerUnreachable or Stopped."""
        url = f"{self._prefix}/{urllib.parse.quote(source.relative_path, safe='/')}"

        def attempt() -> httpx.Response:
            body, headers = self._body(source)
            return self._http.put(url, content=body, headers=headers)

        response = self._with_retries(source.relative_path, attempt)
        status = response.status_code
        if status in (200, 201):
            return _registered(response.json())
        if status == 409:
            return RegisterOutcome("conflict", problem=_detail(response))
        if status in REFUSED_STATUSES:
            return RegisterOutcome("refused", problem=f"{status}: {_detail(response)}")
        if status in FATAL_STATUSES:
            raise self._fatal(response)
        return RegisterOutcome("refused", problem=f"unexpected answer {status}: "
                               f"{_detail(response)}")


    def register_batch(self, sources: Sequence[SourceFile]) -> list[RegisterOutcome | Exception]:
        """Send small files (each at most SMALL_FILE_BYTES) in one request; per file, in
        order, its RegisterOutcome or why it could not be read (FileNotFoundError,
        SourceChanged, OSError). The files are read again at each retry. Raises ServerRefused,
        ServerUnreachable or Stopped for the whole batch. A server without the batch route
        (404/405) and a batch refused as a whole get single PUTs."""
        if not self.batches_supported or len(sources) == 1:
            return [self._register_one(source) for source in sources]
        results: list[RegisterOutcome | Exception | None] = [None] * len(sources)
        sent: list[int] = []

        def attempt() -> httpx.Response:
            body = bytearray()
            sent.clear()
            for index, source in enumerate(sources):
                try:
                    data = _read_whole(source)
                except (OSError, SourceChanged) as exc:
                    results[index] = exc
                    continue
                results[index] = None
                header = {"path": source.relative_path, "size": len(data),
                          "mtime": source.mtime, "sha256": hashlib.sha256(data).hexdigest()}
                body += json.dumps(header).encode() + b"\n"
                body += data
                sent.append(index)
            if not sent:
                raise _NothingToSend
            return self._http.post(self._batch_url, content=bytes(body), headers={
                "X-Session": self.session, "Content-Type": "application/octet-stream"})

        what = f"a batch of {len(sources)} files ({sources[0].relative_path} …)"
        try:
            response = self._with_retries(what, attempt)
        except _NothingToSend:
            return [result for result in results if result is not None]
        status = response.status_code
        if status == 200:
            answers = response.json().get("results", [])
            if len(answers) != len(sent):
                raise ValueError(f"the server answered {len(answers)} results for "
                                 f"{len(sent)} files")
            for index, answer in zip(sent, answers, strict=True):
                results[index] = _batch_outcome(answer)
        elif status in (404, 405):
            # An older server without the route (a missing dataset: the PUT says so).
            log.info("the server %s takes no batches (%d); sending files one by one",
                     self.server, status)
            self.batches_supported = False
            return [self._register_one(source) for source in sources]
        elif status in FATAL_STATUSES:
            raise self._fatal(response)
        elif status in REFUSED_STATUSES:
            log.warning("%s refused as a whole (%d: %s); sending its files one by one", what,
                        status, _detail(response))
            return [self._register_one(source) for source in sources]
        else:
            problem = f"unexpected answer {status}: {_detail(response)}"
            for index in sent:
                results[index] = RegisterOutcome("refused", problem=problem)
        return [result for result in results if result is not None]

    def _register_one(self, source: SourceFile) -> RegisterOutcome | Exception:
        try:
            return self.register(source)
        except (OSError, SourceChanged) as exc:
            return exc


def _registered(body: dict) -> RegisterOutcome:
    return RegisterOutcome(str(body.get("status", "registered")),
                           str(body["file_id"]) if body.get("file_id") else None,
                           _item(body.get("item")), body.get("problem"))


def _batch_outcome(answer: dict) -> RegisterOutcome:
    status = str(answer.get("status"))
    if status in ("registered", "already_registered"):
        return _registered(answer)
    detail = str(answer.get("detail") or "")
    if status == "conflict":
        return RegisterOutcome("conflict", problem=detail)
    return RegisterOutcome("refused", problem=detail or f"the server answered {status!r}")


def _read_whole(source: SourceFile) -> bytes:
    with source.path.open("rb") as fh:
        data = fh.read(source.size + 1)
        _check_unchanged(fh, source)
    if len(data) != source.size:
        raise SourceChanged(f"{len(data)} bytes read, {source.size} expected")
    return data


def _check_unchanged(fh, source: SourceFile) -> None:
    stat = os.fstat(fh.fileno())
    if stat.st_size != source.size or stat.st_mtime_ns != source.mtime_ns:
        raise SourceChanged(f"the file changed while it was read (now {stat.st_size} bytes)")


def _stream(fh, source: SourceFile) -> Iterator[bytes]:
    """Exactly source.size bytes from an open file, in CHUNK_BYTES pieces."""
    with fh:
        left = source.size
        while left > 0:
            chunk = fh.read(min(CHUNK_BYTES, left))
            if not chunk:
                raise SourceChanged(f"the file shrank while it was read ({source.size - left} "
                                    f"of {source.size} bytes)")
            left -= len(chunk)
            yield chunk
        _check_unchanged(fh, source)
