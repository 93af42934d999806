"""What the watcher needs to know about an instrument's folder, whatever the instrument.

A `SessionLayout` names the session, lists the folders to watch (they may grow: the EPU atlas
is found only once EpuSession.dm is there), gives each file a `FileRole` (its kind, its place in
the upload order, whether its structure must be checked before sending and whether the
instrument rewrites it), and the number of frames a movie must have, from the acquisition's
metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryovault.ingest.watcher.scanning import SourceRoot


@dataclass(frozen=True)
class FileRole:
    kind: str
    priority: int  # lower is sent first
    is_movie: bool = False
    check_structure: bool = False  # movies and integrated images: frame count / size checks
    rewritten: bool = False  # the instrument rewrites it: watched again after registration
    refused_reason: str | None = None  # the path cannot be sent at all (logged once)


class SessionLayout(Protocol):
    session_name: str
    item_kinds: frozenset[str]  # server item kinds that count as acquisitions

    def roots(self) -> list[SourceRoot]: ...

    def refresh(self) -> None: ...

    def role(self, relative_path: str) -> FileRole: ...

    def expected_frames(self, relative_path: str, path: Path) -> int | None: ...

    def forget(self, relative_path: str) -> None: ...
