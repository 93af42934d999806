"""`cryovault watch tomo`: a Tomography 5 (or SerialEM) acquisition folder.

Paths sent are relative to the folder. Order: .mdoc files first (they are rewritten as tilts
are acquired and sent again each time they settle), gain references, then tilt movies. A tilt
movie is complete when its frame count equals its section's NumSubFrames in the position's
.mdoc (`<position>.mdoc` beside the movie, one folder up, or at the top of the folder; EER
movies, for which Tomography 5 writes NumSubFrames = 1, are checked against their own
numberOfFrames), otherwise when it opens cleanly and stays unchanged for the movie settle time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryovault.ingest.watcher.layout import FileRole
from cryovault.ingest.watcher.scanning import SourceRoot

log = logging.getLogger("cryovault.watch")

PRIORITIES = {"mdoc": 0, "gain": 1, "tilt_movie": 5}


@dataclass
class _Mdoc:
    size: int
    mtime_ns: int
    frames_by_movie: dict[str, int]


@dataclass
class TomoLayout:
    directory: Path
    item_kinds: frozenset[str] = frozenset({"tilt_series"})
    _mdocs: dict[str, _Mdoc] = field(default_factory=dict, repr=False)
    _roles: dict[str, FileRole] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()

    @property
    def session_name(self) -> str:
        return self.directory.name

    def roots(self) -> list[SourceRoot]:
        return [SourceRoot(self.directory, label="session")]

    def refresh(self) -> None:
        return None

    def role(self, relative_path: str) -> FileRole:
        cached = self._roles.get(relative_path)
        if cached is not None:
            return cached
        from cryovault.ingest.errors import IngestFormatError
        from cryovault.ingest.tomo.layout import classify_tomo_path

        try:
            kind = classify_tomo_path(relative_path).kind
        except IngestFormatError as exc:
            role = FileRole("invalid", 99, refused_reason=exc.message)
        else:
            if kind == "other":  # e.g. notes, logs, a simulator's ground truth beside the data
                role = FileRole("other", 99, refused_reason="not part of a tilt series (only "
                                ".mdoc files, tilt movies and gain references are sent)")
                self._roles[relative_path] = role
                return role
            role = FileRole(kind, PRIORITIES.get(kind, 2),
                            is_movie=kind == "tilt_movie", check_structure=kind == "tilt_movie",
                            rewritten=kind == "mdoc")
        if len(self._roles) < 1_000_000:
            self._roles[relative_path] = role
        return role

    def expected_frames(self, relative_path: str, path: Path) -> int | None:
        from cryovault.ingest.tomo.layout import position_of_movie

        directory, _, name = relative_path.rpartition("/")
        position = position_of_movie(name)
        if position is None:
            return None
        folder = self.directory / directory if directory else self.directory
        for candidate in (folder / f"{position}.mdoc", folder.parent / f"{position}.mdoc",
                          self.directory / f"{position}.mdoc"):
            frames = self._frames_in(candidate, position)
            if frames is not None and name in frames:
                value = frames[name]
                return value if value > 1 else None  # EER: Tomography 5 writes 1
        return None

    def _frames_in(self, mdoc: Path, position: str) -> dict[str, int] | None:
        from cryovault.ingest.errors import IngestFormatError
        from cryovault.ingest.tomo.parsers import parse_tilt_series_mdoc

        try:
            stat = mdoc.stat()
        except OSError:
            return None
        key = str(mdoc)
        cached = self._mdocs.get(key)
        if cached is not None and (cached.size, cached.mtime_ns) == (stat.st_size,
                                                                      stat.st_mtime_ns):
            return cached.frames_by_movie
        try:
            record = parse_tilt_series_mdoc(mdoc.read_bytes(), position)
        except (OSError, IngestFormatError):
            return None
        frames = {tilt.sub_frame_path: tilt.number_of_frames for tilt in record.tilts
                  if tilt.sub_frame_path and tilt.number_of_frames is not None}
        self._mdocs[key] = _Mdoc(stat.st_size, stat.st_mtime_ns, frames)
        return frames

    def forget(self, relative_path: str) -> None:
        self._roles.pop(relative_path, None)
