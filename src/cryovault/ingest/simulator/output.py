"""Writing like an instrument: paced acquisitions, files that grow, a truth log.

- `Pacer` spaces acquisitions at a rate (per second; 0 = as fast as possible) from the start.
- `write_file` writes a small file in one call (EPU's XML, JPEG, .dm); `write_growing` writes a
  large one (a movie) in several chunks with pauses, so that a watcher sees it grow.
- `TruthLog` appends one JSON object per line to the ground-truth file and flushes it, so the
  file is valid at every moment of the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path


class Pacer:
    """Acquisition k is due `k / rate` seconds after the first; `wait(k)` sleeps until then."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self._start = time.monotonic()

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_per_s if self.rate_per_s > 0 else 0.0

    def wait(self, index: int) -> None:
        if self.rate_per_s <= 0:
            return
        delay = self._start + index * self.period_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def chunk_pause_s(self, chunks: int) -> float:
        """Pause between movie chunks: a small part of the period, at most 0.2 s."""
        return min(0.2, self.period_s / (3 * max(chunks, 1)))


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` in one call (parents created); replaces an earlier version in
    place, as EPU rewrites its .dm files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def write_growing(path: Path, source: Path, chunks: int, pause_s: float) -> int:
    """Copy `source` to `path` in `chunks` pieces, flushing and pausing between them.
    Returns the number of bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    total = source.stat().st_size
    piece = max(1, -(-total // max(chunks, 1)))
    written = 0
    with open(source, "rb") as reader, open(path, "wb") as writer:
        while True:
            data = reader.read(piece)
            if not data:
                break
            writer.write(data)
            writer.flush()
            if pause_s > 0:  # a watcher on another host (NFS/SMB) sees the growth
                os.fsync(writer.fileno())
            written += len(data)
            if pause_s > 0 and written < total:
                time.sleep(pause_s)
    return written


class TruthLog:
    """`ground_truth.jsonl`: one JSON object per line, each with a "kind"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def add(self, kind: str, record: Mapping[str, object]) -> None:
        line = json.dumps({"kind": kind, **record}, sort_keys=False)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, POSIX style."""
    return path.relative_to(root).as_posix()
