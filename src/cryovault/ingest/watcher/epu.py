"""`cryovault watch epu`: an EPU session folder, its movies' folder and its atlas.

Paths sent: relative to the session folder (`EpuSession.dm`, `Metadata/GridSquare_1.dm`,
`Images-Disc1/GridSquare_1/Data/FoilHole_…_Data_….xml`); movies under `--movies DIR` keep their
path relative to that root (the same subtree: only movies and gain references are taken from
there); the atlas's files go under `Atlas/` (see atlas.py).

Upload order (lower first): session file, atlas, grid-square targets, grid-square images,
foil-hole images, acquisition XML, its JPEG, integrated image, movie. A movie is complete when
its frame count equals the acquisition XML's NumberOffractions (`parse_image_xml`); without that
XML it must open cleanly and stay unchanged for the longer movie settle time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryovault.ingest.watcher.atlas import ATLAS_PREFIX, AtlasLocation, locate_atlas
from cryovault.ingest.watcher.layout import FileRole
from cryovault.ingest.watcher.scanning import SourceRoot

log = logging.getLogger("cryovault.watch")

SESSION_FILE = "EpuSession.dm"
PRIORITIES = {
    "session": 0, "screening_session": 1, "sample": 1, "atlas": 1, "atlas_image_xml": 2,
    "atlas_image": 2, "atlas_tile": 3, "gain": 3, "grid_square_metadata": 4,
    "grid_square_xml": 5, "grid_square_image": 5, "foil_hole_xml": 6, "foil_hole_image": 6,
    "acquisition_xml": 7, "acquisition_jpg": 8, "integrated": 9, "movie": 10, "other": 11,
}
REWRITTEN = frozenset({"session", "grid_square_metadata", "screening_session", "sample",
                       "atlas"})
MOVIE_ROOT_KINDS = frozenset({"movie", "gain"})


@dataclass
class _Parsed:
    size: int
    mtime_ns: int
    value: object


@dataclass
class EpuLayout:
    session_dir: Path
    movies_dir: Path | None = None
    item_kinds: frozenset[str] = frozenset({"micrograph"})
    atlas: AtlasLocation | None = None
    _session_seen: tuple[int, int] | None = field(default=None, repr=False)
    _atlas_missing: str | None = field(default=None, repr=False)
    _fractions: dict[str, _Parsed] = field(default_factory=dict, repr=False)
    _roles: dict[str, FileRole] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.session_dir = self.session_dir.resolve()
        if self.movies_dir is not None:
            self.movies_dir = self.movies_dir.resolve()
            if self.movies_dir == self.session_dir:
                self.movies_dir = None

    @property
    def session_name(self) -> str:
        return self.session_dir.name

    def roots(self) -> list[SourceRoot]:
        roots = [SourceRoot(self.session_dir, label="session")]
        if self.movies_dir is not None:
            roots.append(SourceRoot(self.movies_dir, accept=self._movie_root_accepts,
                                    label="movies"))
        if self.atlas is not None:
            roots.append(SourceRoot(self.atlas.session_folder, ATLAS_PREFIX,
                                    accept=self.atlas.accepts, label="atlas"))
        return roots

    def _movie_root_accepts(self, inner_path: str) -> bool:
        return self.role(inner_path).kind in MOVIE_ROOT_KINDS

    def refresh(self) -> None:
        """Find the atlas once EpuSession.dm names it (looked at again when the file changes
        until the atlas is found)."""
        if self.atlas is not None:
            return
        session_file = self.session_dir / SESSION_FILE
        try:
            stat = session_file.stat()
        except OSError:
            return
        if self._session_seen == (stat.st_size, stat.st_mtime_ns):
            return
        self._session_seen = (stat.st_size, stat.st_mtime_ns)
        from cryovault.ingest.epu.parsers import parse_epu_session
        from cryovault.ingest.errors import IngestFormatError

        try:
            record = parse_epu_session(session_file.read_bytes())
        except (OSError, IngestFormatError) as exc:
            log.debug("%s: not readable yet (%s)", session_file, exc)
            self._session_seen = None  # try again next scan
            return
        self.atlas = locate_atlas(record.atlas_path, record.storage_root, self.session_dir)
        if self.atlas is not None:
            log.info("atlas of %s: %s (sent as %s)", self.session_name, self.atlas.atlas_dm,
                     self.atlas.virtual_path)
        elif record.atlas_path and record.atlas_path != self._atlas_missing:
            self._atlas_missing = record.atlas_path
            log.warning("%s: atlas %s not found under %s (nor in its atlas folder); it will be "
                        "looked for again when the session file changes", session_file,
                        record.atlas_path, self.session_dir.parent)

    def role(self, relative_path: str) -> FileRole:
        cached = self._roles.get(relative_path)
        if cached is not None:
            return cached
        from cryovault.ingest.epu.layout import classify_epu_path
        from cryovault.ingest.errors import IngestFormatError

        try:
            kind = classify_epu_path(relative_path).kind
        except IngestFormatError as exc:
            role = FileRole("invalid", 99, refused_reason=exc.message)
        else:
            role = FileRole(kind, PRIORITIES.get(kind, PRIORITIES["other"]),
                            is_movie=kind == "movie",
                            check_structure=kind in ("movie", "integrated"),
                            rewritten=kind in REWRITTEN)
        if len(self._roles) < 1_000_000:
            self._roles[relative_path] = role
        return role

    def expected_frames(self, relative_path: str, path: Path) -> int | None:
        """NumberOffractions of the movie's acquisition XML (beside it in the session folder),
        or None while that XML is missing or unreadable."""
        from cryovault.ingest.epu.layout import acquisition_name_of

        directory, _, name = relative_path.rpartition("/")
        acquisition = acquisition_name_of(name)
        if acquisition is None:
            return None
        xml = self.session_dir / directory / f"{acquisition}.xml"
        return self._fractions_of(xml)

    def _fractions_of(self, xml: Path) -> int | None:
        from cryovault.ingest.epu.parsers import parse_image_xml
        from cryovault.ingest.errors import IngestFormatError

        try:
            stat = xml.stat()
        except OSError:
            return None
        key = str(xml)
        cached = self._fractions.get(key)
        if cached is not None and (cached.size, cached.mtime_ns) == (stat.st_size,
                                                                      stat.st_mtime_ns):
            return cached.value  # type: ignore[return-value]
        try:
            fractions = parse_image_xml(xml.read_bytes()).number_of_fractions
        except (OSError, IngestFormatError):
            fractions = None
        self._fractions[key] = _Parsed(stat.st_size, stat.st_mtime_ns, fractions)
        return fractions

    def forget(self, relative_path: str) -> None:
        """Drop what is cached about a file that was registered (bounded memory)."""
        self._roles.pop(relative_path, None)
        if relative_path.endswith(".xml"):
            self._fractions.pop(str(self.session_dir / relative_path), None)
