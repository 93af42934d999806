"""The watcher's loop: scan, wait until files are complete, send them in order, remember.

Each cycle (every `interval_s`): the layout may add folders (the EPU atlas); the scanners report
new and removed files; every file not yet registered is stat'ed and observed; files stable for
`settle_s` (and, for movies, holding all their frames) are queued by priority and sent by a pool
of upload threads sharing one keep-alive HTTP client; small files queued together go in one
batch request (big ones one by one). Results come back to this thread, which alone updates the
state, the counters and the log.

A file is registered once: the idempotency key is session + relative path + size + mtime, held
by the server (asked at start) and mirrored in the local state file. Files the instrument
rewrites (EpuSession.dm, a grid square's .dm, an .mdoc) stay watched after registration and are
sent again when they change and settle. An empty file is taken for one just created and is
sent only if it stays empty for the movie settle time. Refused files (409/422) are logged and
not retried until they change. A file deleted while waiting or while being read is logged and
forgotten.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cryovault.ingest.watcher.backoff import Backoff
from cryovault.ingest.watcher.client import (
    BATCH_MAX_BYTES,
    BATCH_MAX_FILES,
    SMALL_FILE_BYTES,
    IngestClient,
    RegisterOutcome,
    ServerRefused,
    ServerUnreachable,
    SourceChanged,
    SourceFile,
    Stopped,
)
from cryovault.ingest.watcher.frames import check_movie
from cryovault.ingest.watcher.layout import FileRole, SessionLayout
from cryovault.ingest.watcher.scanning import FoundFile, TreeScanner
from cryovault.ingest.watcher.stability import StabilityTracker
from cryovault.ingest.watcher.state import WatchState

log = logging.getLogger("cryovault.watch")

STARTUP_LISTING_LIMIT_S = 15.0  # then go on with the local state and ask again later
LISTING_RETRY_EVERY_S = 60.0
SHUTDOWN_GRACE_S = 15.0


@dataclass(frozen=True)
class WatchOptions:
    server: str
    token: str
    dataset_id: str
    state_path: Path
    once: bool = False
    interval_s: float = 2.0
    settle_s: float = 1.0
    movie_settle_s: float = 10.0  # movies whose acquisition metadata is not there yet
    workers: int = 4
    progress_every_s: float = 30.0
    state_save_every_s: float = 10.0
    retry_limit_s: float | None = None  # None: retry for ever (watch mode)
    stuck_after_s: float = 60.0  # warn once about a stable file that stays incomplete


@dataclass
class WatchReport:
    registered: int = 0  # files the server registered during this run
    already_registered: int = 0
    acquisitions: int = 0  # distinct items (micrographs, tilt series) they made or touched
    problems: int = 0  # files stored but not usable (the server's `problem`)
    refused: int = 0  # 409 / 422 and unreadable files
    waiting: int = 0  # files not complete when the run ended
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.fatal else 0


@dataclass
class _Result:
    source: SourceFile
    kind: str  # outcome | vanished | changed | unreadable | fatal | unreachable | stopped
    outcome: RegisterOutcome | None = None
    message: str = ""


@dataclass
class Watcher:
    layout: SessionLayout
    options: WatchOptions
    stop: threading.Event = field(default_factory=threading.Event)
    transport: httpx.BaseTransport | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        self.report = WatchReport()
        self.state = WatchState(self.options.state_path, self.options.dataset_id,
                                self.layout.session_name)
        self.tracker = StabilityTracker(self.options.settle_s)
        self.client = IngestClient(self.options.server, self.options.token,
                                   self.options.dataset_id, self.layout.session_name,
                                   backoff=self.backoff, stop=self.stop,
                                   retry_limit_s=self.options.retry_limit_s,
                                   pool_size=self.options.workers, transport=self.transport)
        self._scanners: dict[Path, TreeScanner] = {}
        self._owner: dict[str, TreeScanner] = {}
        self._known: dict[str, Path] = {}
        self._pending: dict[str, Path] = {}
        self._in_flight: set[str] = set()
        self._rewritten: dict[str, Path] = {}
        self._refused: dict[str, tuple[Path, int, int]] = {}
        self._waiting_reason: dict[str, str] = {}
        self._warned: set[str] = set()
        self._acquisitions: set[str] = set()
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._results: queue.Queue[_Result] = queue.Queue()
        self._sequence = itertools.count()
        self._threads: list[threading.Thread] = []
        self._listing_due: float | None = None
        self._last_progress = time.monotonic()
        self._last_progress_line = ""

    # -- public ----------------------------------------------------------------------------

    def run(self) -> WatchReport:
        """Watch until stopped (or, with `once`, until what is complete now is sent)."""
        for number in range(self.options.workers):
            thread = threading.Thread(target=self._upload_loop, name=f"upload-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            if self._start():
                if self.options.once:
                    self._run_once()
                else:
                    self._run_forever()
        except KeyboardInterrupt:
            log.info("interrupted; finishing the transfers in progress")
        finally:
            self._shutdown()
        return self.report

    # -- start and loops -------------------------------------------------------------------

    def _start(self) -> bool:
        self.state.load()
        limit = self.options.retry_limit_s if self.options.once else STARTUP_LISTING_LIMIT_S
        try:
            self._adopt_server_listing(limit)
        except ServerRefused as exc:
            self.report.fatal = exc.message
            return False
        except ServerUnreachable as exc:
            if self.options.once:
                self.report.fatal = f"cannot reach the server ({exc})"
                return False
            log.warning("the server does not answer (%s); going on with the local state (%d "
                        "files registered) and asking again later", exc, len(self.state))
            self._listing_due = time.monotonic() + LISTING_RETRY_EVERY_S
        except Stopped:
            return False
        log.info("watching %s for dataset %s on %s (session %s)",
                 ", ".join(f"{r.label} {r.directory}" for r in self.layout.roots()),
                 self.options.dataset_id, self.options.server, self.layout.session_name)
        return True

    def _adopt_server_listing(self, retry_limit_s: float | None) -> None:
        listing = self.client.list_registered(retry_limit_s=retry_limit_s)
        held, missing = self.state.replace_with_server(listing)
        self._listing_due = None
        log.info("the server holds %d files of session %s%s", held, self.layout.session_name,
                 f" ({missing} in the local state are not there: they will be sent again)"
                 if missing else "")
        # files known here but not registered there go back to the queue
        for relative_path, path in self._known.items():
            if relative_path in self._pending or relative_path in self._in_flight \
                    or relative_path in self._refused \
                    or self.layout.role(relative_path).refused_reason:
                continue
            self._rewritten.pop(relative_path, None)
            self._pending[relative_path] = path

    def _run_forever(self) -> None:
        while not self.stop.is_set():
            self._cycle()
            self._drain_results()
            self._progress(force=False)
            self.state.save_if_due(self.options.state_save_every_s)
            if self._listing_due is not None and time.monotonic() >= self._listing_due:
                self._retry_listing()
            self.stop.wait(self.options.interval_s)

    def _run_once(self) -> None:
        self._cycle(send=False)
        if self.stop.wait(self.options.settle_s):
            return
        self._cycle()
        while self._in_flight and not self.stop.is_set():
            self._drain_results(block_s=0.2)
        self._drain_results()
        for relative_path in sorted(self._pending):
            reason = self._waiting_reason.get(relative_path, "still changing")
            log.warning("%s: not complete yet (%s); left for the next run", relative_path,
                        reason)

    def _retry_listing(self) -> None:
        try:
            self._adopt_server_listing(retry_limit_s=0.0)
        except ServerUnreachable:
            self._listing_due = time.monotonic() + LISTING_RETRY_EVERY_S
        except ServerRefused as exc:
            self._fail(exc.message)
        except Stopped:
            pass

    def _fail(self, message: str) -> None:
        if self.report.fatal is None:
            self.report.fatal = message
        self.stop.set()

    # -- one cycle -------------------------------------------------------------------------

    def _cycle(self, send: bool = True) -> None:
        self.layout.refresh()
        for root in self.layout.roots():
            if root.directory not in self._scanners:
                self._scanners[root.directory] = TreeScanner(root)
        for scanner in list(self._scanners.values()):
            result = scanner.scan()
            for found in result.added:
                self._discovered(found, scanner)
            for relative_path in result.removed:
                if self._owner.get(relative_path) is scanner:
                    self._drop(relative_path)
        self._recheck_done_files()
        ready = self._evaluate_pending()
        if send:
            for priority, relative_path, source in sorted(ready, key=lambda r: r[:2]):
                del self._pending[relative_path]
                self._in_flight.add(relative_path)
                self._queue.put((priority, next(self._sequence), source))

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _discovered(self, found: FoundFile, scanner: TreeScanner) -> None:
        relative_path = found.relative_path
        known = self._known.get(relative_path)
        if known is not None and known != found.path:
            self._warn_once(f"dup:{relative_path}", "%s: also found at %s; sending only %s",
                            relative_path, found.path, known)
            return
        self._known[relative_path] = found.path
        self._owner[relative_path] = scanner
        role = self.layout.role(relative_path)
        if role.refused_reason:
            self._warn_once(relative_path, "%s: not sent: %s", found.path, role.refused_reason)
            return
        try:
            stat = os.stat(found.path)
        except OSError:
            self._drop(relative_path)
            return
        if self.state.is_registered(relative_path, stat.st_size, stat.st_mtime_ns / 1e9):
            if role.rewritten:
                self._rewritten[relative_path] = found.path
            return
        if relative_path not in self._in_flight:
            self._pending[relative_path] = found.path

    def _drop(self, relative_path: str) -> None:
        """The file is gone from its folder."""
        self._known.pop(relative_path, None)
        self._owner.pop(relative_path, None)
        self._rewritten.pop(relative_path, None)
        self._refused.pop(relative_path, None)
        self._waiting_reason.pop(relative_path, None)
        if self._pending.pop(relative_path, None) is not None:
            log.info("%s: deleted before it was complete; forgotten", relative_path)
        self.tracker.forget(relative_path)

    def _recheck_done_files(self) -> None:
        for relative_path, path in list(self._rewritten.items()):
            try:
                stat = os.stat(path)
            except OSError:
                continue  # the next listing says whether it is gone
            if not self.state.is_registered(relative_path, stat.st_size, stat.st_mtime_ns / 1e9):
                del self._rewritten[relative_path]
                self._pending[relative_path] = path
        for relative_path, (path, size, mtime_ns) in list(self._refused.items()):
            try:
                stat = os.stat(path)
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                del self._refused[relative_path]
                self._pending[relative_path] = path

    def _evaluate_pending(self) -> list[tuple[int, str, SourceFile]]:
        ready: list[tuple[int, str, SourceFile]] = []
        for relative_path, path in list(self._pending.items()):
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                self._drop(relative_path)
                continue
            except OSError as exc:
                self._warn_once(f"stat:{relative_path}", "%s: cannot read (%s)", path,
                                exc.strerror)
                continue
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
            role = self.layout.role(relative_path)
            if self.state.is_registered(relative_path, size, mtime_ns / 1e9):
                del self._pending[relative_path]
                if role.rewritten:
                    self._rewritten[relative_path] = path
                continue
            self.tracker.observe(relative_path, size, mtime_ns)
            if not self.tracker.is_stable(relative_path):
                self._waiting_reason[relative_path] = "still being written"
                continue
            if size == 0 and (self.tracker.unchanged_for_s(relative_path) or 0.0) < \
                    self.options.movie_settle_s:
                # created but not written yet, most likely; sent if it stays empty
                self._waiting_reason[relative_path] = "empty"
                continue
            if role.check_structure and not self._complete(relative_path, path, role):
                continue
            self._waiting_reason.pop(relative_path, None)
            ready.append((role.priority, relative_path,
                          SourceFile(relative_path, path, size, mtime_ns)))
        return ready

    def _complete(self, relative_path: str, path: Path, role: FileRole) -> bool:
        expected = self.layout.expected_frames(relative_path, path) if role.is_movie else None
        if role.is_movie and expected is None:
            unchanged = self.tracker.unchanged_for_s(relative_path) or 0.0
            if unchanged < self.options.movie_settle_s:
                self._waiting_reason[relative_path] = (
                    "its acquisition metadata is not there yet and it changed less than "
                    f"{self.options.movie_settle_s:g} s ago")
                return False
        try:
            check = check_movie(path, expected)
        except FileNotFoundError:
            return False
        except OSError as exc:
            check_reason = f"cannot read ({exc.strerror})"
        else:
            if check.complete:
                return True
            check_reason = check.reason
        self._waiting_reason[relative_path] = check_reason
        stable_for = self.tracker.stable_for_s(relative_path) or 0.0
        if stable_for >= self.options.stuck_after_s:
            self._warn_once(f"stuck:{relative_path}", "%s: unchanged for %.0f s but not "
                            "complete: %s; still waiting", path, stable_for, check_reason)
        return False

    # -- uploads ---------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            if self.stop.is_set():
                for source in batch:
                    self._results.put(_Result(source, "stopped"))
                continue
            if len(batch) == 1:
                self._send_one(batch[0])
            else:
                self._send_batch(batch)

    def _next_batch(self) -> list[SourceFile]:
        """The next file from the queue and, when it is small, the small files queued behind
        it (without waiting), up to BATCH_MAX_FILES / BATCH_MAX_BYTES; empty at shutdown."""
        entry = self._queue.get()
        source = entry[2]
        if source is None:
            return []
        batch, total = [source], source.size
        if source.size > SMALL_FILE_BYTES or not self.client.batches_supported:
            return batch
        while len(batch) < BATCH_MAX_FILES:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            following = entry[2]
            if following is None or following.size > SMALL_FILE_BYTES \
                    or total + following.size > BATCH_MAX_BYTES:
                self._queue.put(entry)  # its turn comes next (same priority and sequence)
                break
            batch.append(following)
            total += following.size
        return batch

    def _send_one(self, source: SourceFile) -> None:
        try:
            outcome = self.client.register(source)
        except Exception as exc:  # noqa: BLE001 (each kind is reported below)
            self._results.put(self._failure(source, exc))
        else:
            self._results.put(_Result(source, "outcome", outcome))

    def _send_batch(self, batch: list[SourceFile]) -> None:
        try:
            answers = self.client.register_batch(batch)
        except Exception as exc:  # noqa: BLE001 (the whole batch failed: each file says so)
            for source in batch:
                self._results.put(self._failure(source, exc))
            return
        for source, answer in zip(batch, answers, strict=True):
            if isinstance(answer, RegisterOutcome):
                self._results.put(_Result(source, "outcome", answer))
            else:
                self._results.put(self._failure(source, answer))

    @staticmethod
    def _failure(source: SourceFile, exc: Exception) -> _Result:
        if isinstance(exc, FileNotFoundError):
            return _Result(source, "vanished")
        if isinstance(exc, SourceChanged):
            return _Result(source, "changed", message=str(exc))
        if isinstance(exc, ServerRefused):
            return _Result(source, "fatal", message=exc.message)
        if isinstance(exc, ServerUnreachable):
            return _Result(source, "unreachable", message=str(exc))
        if isinstance(exc, Stopped):
            return _Result(source, "stopped")
        if isinstance(exc, OSError):
            return _Result(source, "unreadable", message=exc.strerror or str(exc))
        # a bug or an unexpected answer: log it, keep going
        return _Result(source, "unreadable", message=repr(exc))

    def _drain_results(self, block_s: float = 0.0) -> None:
        while True:
            try:
                result = self._results.get(timeout=block_s) if block_s else \
                    self._results.get_nowait()
            except queue.Empty:
                return
            block_s = 0.0
            self._handle(result)

    def _handle(self, result: _Result) -> None:
        source = result.source
        relative_path = source.relative_path
        self._in_flight.discard(relative_path)
        if result.kind == "outcome":
            assert result.outcome is not None
            self._handle_outcome(source, result.outcome)
        elif result.kind == "vanished":
            log.warning("%s: deleted while it was being sent; forgotten", source.path)
            self.tracker.forget(relative_path)
            owner = self._owner.get(relative_path)
            self._drop(relative_path)
            if owner is not None:
                owner.forget(relative_path)  # found again if it comes back
        elif result.kind in ("changed", "stopped"):
            if result.kind == "changed":
                log.info("%s: %s; waiting for it to settle again", relative_path,
                         result.message)
            self.tracker.forget(relative_path)
            if relative_path in self._known:
                self._pending[relative_path] = self._known[relative_path]
        elif result.kind == "unreadable":
            log.warning("%s: not sent: %s", source.path, result.message)
            self.report.refused += 1
            self._refused[relative_path] = (source.path, source.size, source.mtime_ns)
        elif result.kind == "fatal":
            self._pending[relative_path] = source.path
            self._fail(result.message)
        elif result.kind == "unreachable":
            self._pending[relative_path] = source.path
            self._fail(f"cannot reach the server ({result.message})")

    def _handle_outcome(self, source: SourceFile, outcome: RegisterOutcome) -> None:
        relative_path = source.relative_path
        role = self.layout.role(relative_path)
        if outcome.done:
            self.state.mark_registered(relative_path, source.size, source.mtime)
            self.tracker.forget(relative_path)
            log.debug("%s: %s%s", relative_path, outcome.status.replace("_", " "),
                      f" ({outcome.item.kind} {outcome.item.name})" if outcome.item else "")
            if outcome.status == "registered":
                self.report.registered += 1
            else:
                self.report.already_registered += 1
            if outcome.problem:
                self.report.problems += 1
                log.warning("%s: stored, but the server could not use it: %s", source.path,
                            outcome.problem)
            if outcome.item is not None and outcome.item.kind in self.layout.item_kinds:
                self._acquisitions.add(outcome.item.id)
                self.report.acquisitions = len(self._acquisitions)
            if role.rewritten:
                self._rewritten[relative_path] = source.path
            else:
                self.layout.forget(relative_path)
            return
        self.report.refused += 1
        self._refused[relative_path] = (source.path, source.size, source.mtime_ns)
        if outcome.status == "conflict":
            log.warning("%s: refused: another file was registered under this path (%s)",
                        source.path, outcome.problem)
        else:
            log.warning("%s: refused by the server: %s", source.path, outcome.problem)

    # -- progress and shutdown -------------------------------------------------------------

    def progress_line(self) -> str:
        r = self.report
        line = (f"registered {r.registered} files ({r.acquisitions} acquisitions)"
                f", {r.already_registered} already there; queue {len(self._in_flight)}, "
                f"waiting to settle {len(self._pending)}")
        if r.refused or r.problems:
            line += f"; refused {r.refused}, unusable {r.problems}"
        return line

    def _progress(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < self.options.progress_every_s:
            return
        line = self.progress_line()
        if force or line != self._last_progress_line:
            log.info("progress: %s", line)
            self._last_progress_line = line
        self._last_progress = now

    def _shutdown(self) -> None:
        if not self.options.once:
            self.stop.set()
        for _ in self._threads:
            self._queue.put((1 << 30, next(self._sequence), None))
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._drain_results()
        self.report.waiting = len(self._pending) + len(self._in_flight)
        try:
            self.state.save()
        except OSError as exc:
            log.warning("%s: cannot write the state file (%s)", self.state.path, exc.strerror)
        self.client.close()
        log.info("%s: %s", "stopped" if self.report.fatal else "done", self.progress_line())
