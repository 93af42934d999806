"""The watcher's local memory of what it registered, so that a restart does not resend a
session (the server's listing, asked at start, remains the authority).

One JSON file per dataset by default (`$XDG_STATE_HOME/cryovault/watch-<dataset>.json`, or
`~/.local/state/cryovault/…`), holding each session's registered files as
`{"version": 1, "dataset": id, "sessions": {name: {"files": {path: [size, mtime]}}}}`.
Writes are atomic (temporary file in the same folder, fsync, rename) and merge the other
sessions already in the file, so watchers of two sessions of one dataset can share it. A
corrupt or unreadable file is reported and ignored: the server's listing refills it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from cryovault.ingest.watcher.client import RegisteredFile

log = logging.getLogger("cryovault.watch")

STATE_VERSION = 1
# the server stores mtimes as floats; equal within this many seconds means the same file
MTIME_TOLERANCE_S = 1e-3


def default_state_path(dataset_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "cryovault" / f"watch-{dataset_id}.json"


def same_mtime(a: float, b: float) -> bool:
    return abs(a - b) <= MTIME_TOLERANCE_S


class WatchState:
    """Registered files of one session: relative path → (size, mtime in seconds)."""

    def __init__(self, path: Path, dataset_id: str, session: str) -> None:
        self.path = path
        self.dataset_id = dataset_id
        self.session = session
        self.files: dict[str, tuple[int, float]] = {}
        self._dirty = False
        self._saved_at = time.monotonic()

    # -- queries and updates ---------------------------------------------------------------

    def is_registered(self, relative_path: str, size: int, mtime: float) -> bool:
        known = self.files.get(relative_path)
        return known is not None and known[0] == size and same_mtime(known[1], mtime)

    def mark_registered(self, relative_path: str, size: int, mtime: float) -> None:
        self.files[relative_path] = (size, mtime)
        self._dirty = True

    def replace_with_server(self, listing: Iterable[RegisteredFile]) -> tuple[int, int]:
        """Adopt the server's listing (the authority). Returns (files the server holds,
        files the local state had that the server does not)."""
        server = {item.path: (item.source_size, item.source_mtime) for item in listing}
        missing = sum(1 for path, (size, mtime) in self.files.items()
                      if path not in server or server[path][0] != size
                      or not same_mtime(server[path][1], mtime))
        self.files = server
        self._dirty = True
        return len(server), missing

    def __len__(self) -> int:
        return len(self.files)

    # -- file ------------------------------------------------------------------------------

    def _read_document(self) -> dict:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s: state file not readable (%s); starting from the server's listing",
                        self.path, exc)
            return {}
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            log.warning("%s: unknown state file format; starting from the server's listing",
                        self.path)
            return {}
        return document

    def load(self) -> None:
        document = self._read_document()
        if document and document.get("dataset") not in (None, self.dataset_id):
            log.warning("%s: state file of another dataset (%s); not used", self.path,
                        document.get("dataset"))
            return
        files = (document.get("sessions", {}).get(self.session, {}) or {}).get("files", {})
        loaded: dict[str, tuple[int, float]] = {}
        for path, value in files.items():
            try:
                size, mtime = value
                loaded[str(path)] = (int(size), float(mtime))
            except (TypeError, ValueError):
                continue
        self.files = loaded
        self._dirty = False

    def save(self) -> None:
        """Write atomically, keeping the other sessions of the file."""
        document = self._read_document()
        if document.get("dataset") not in (None, self.dataset_id):
            document = {}
        sessions = document.get("sessions") if isinstance(document.get("sessions"), dict) else {}
        sessions[self.session] = {"files": {p: [s, m] for p, (s, m) in self.files.items()}}
        document = {"version": STATE_VERSION, "dataset": self.dataset_id, "sessions": sessions}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._dirty = False
        self._saved_at = time.monotonic()

    def save_if_due(self, every_s: float) -> bool:
        if self._dirty and time.monotonic() - self._saved_at >= every_s:
            self.save()
            return True
        return False

    @property
    def dirty(self) -> bool:
        return self._dirty
