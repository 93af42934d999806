"""Finding an EPU session's atlas on the local mount.

EpuSession.dm names its atlas with the microscope PC's Windows path, e.g.
`Z:\\DoseFractions\\cm40593-1\\atlas\\Supervisor_20250108_101551_cm40593-1_Atlas\\Sample7\\Atlas\\
Atlas.dm`, and its storage root, `Z:\\DoseFractions\\cm40593-1` (the visit folder). The part of
the atlas path after the storage root is resolved against the local visit folder, the parent of
the session folder (matching names case-insensitively, as Windows does). When the storage root
does not prefix the atlas path, the path is cut after a component named like the local visit
folder. When that does not exist either, `<visit>/atlas` is searched for
`Sample*/Atlas/Atlas.dm`, preferring the same atlas session folder, then the same cassette slot.

The atlas's files are sent under the virtual prefix `Atlas/` + their path relative to the atlas
session folder (`Atlas/Sample7/Atlas/Atlas.dm`, `Atlas/Sample7/Atlas/Atlas_123.jpg`,
`Atlas/ScreeningSession.dm`): the files at the top of the atlas session folder and those of the
session's own sample folder, not the other cassette slots' atlases.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

log = logging.getLogger("cryovault.watch")

ATLAS_PREFIX = "Atlas/"


@dataclass(frozen=True)
class AtlasLocation:
    atlas_dm: Path  # the local Atlas.dm
    session_folder: Path  # the atlas session folder (Supervisor_…_Atlas)
    sample_folder: str  # e.g. "Sample7"

    @property
    def virtual_path(self) -> str:
        """Atlas.dm as the server knows it."""
        return f"{ATLAS_PREFIX}{self.sample_folder}/Atlas/{self.atlas_dm.name}"

    def accepts(self, inner_path: str) -> bool:
        """Whether a file (path inside the atlas session folder) belongs to this session."""
        return "/" not in inner_path or inner_path.startswith(self.sample_folder + "/")


def windows_parts(path: str) -> tuple[str, ...]:
    """The folder names of a Windows (or POSIX) path, without drive or UNC share."""
    pure = PureWindowsPath(path.strip())
    parts = pure.parts
    if parts and (pure.drive or pure.root) and parts[0] in (pure.anchor, pure.drive, pure.root):
        parts = parts[1:]
    return tuple(p for p in parts if p not in ("", "."))


def _child(directory: Path, name: str) -> Path | None:
    exact = directory / name
    if exact.exists():
        return exact
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.lower() == name.lower():
                    return Path(entry.path)
    except OSError:
        return None
    return None


def resolve_case_insensitive(base: Path, parts: tuple[str, ...]) -> Path | None:
    """base/parts[0]/parts[1]/…, each name matched case-insensitively; None if absent."""
    current = base
    for part in parts:
        if part == "..":
            return None
        found = _child(current, part)
        if found is None:
            return None
        current = found
    return current


def map_atlas_path(atlas_path: str, storage_root: str | None, session_dir: Path
                   ) -> tuple[str, ...] | None:
    """The atlas path's components below the visit folder (which is `session_dir`'s parent
    locally), from the storage root or, failing that, from a component named like the local
    visit folder. None when neither applies."""
    parts = windows_parts(atlas_path)
    if storage_root:
        root = windows_parts(storage_root)
        anchor_ok = PureWindowsPath(atlas_path).drive.lower() == \
            PureWindowsPath(storage_root).drive.lower()
        if anchor_ok and len(parts) > len(root) and \
                [p.lower() for p in parts[:len(root)]] == [p.lower() for p in root]:
            return parts[len(root):]
    visit = session_dir.parent.name.lower()
    lowered = [p.lower() for p in parts]
    if visit in lowered:
        index = len(lowered) - 1 - lowered[::-1].index(visit)
        if index + 1 < len(parts):
            return parts[index + 1:]
    return None


def _location(atlas_dm: Path) -> AtlasLocation | None:
    sample = atlas_dm.parent.parent
    if atlas_dm.parent.name.lower() != "atlas" or not sample.name.lower().startswith("sample"):
        return None
    return AtlasLocation(atlas_dm, sample.parent, sample.name)


def _search(visit_dir: Path, hint: tuple[str, ...]) -> Path | None:
    atlas_root = _child(visit_dir, "atlas")
    if atlas_root is None or not atlas_root.is_dir():
        return None
    candidates = sorted(p for pattern in ("Sample*/Atlas/Atlas.dm", "*/Sample*/Atlas/Atlas.dm")
                        for p in atlas_root.glob(pattern) if p.is_file())
    if not candidates:
        return None
    lowered_hint = [p.lower() for p in hint]
    sample_hint = next((p for p in reversed(lowered_hint) if p.startswith("sample")), None)
    session_hint = None
    if sample_hint is not None:
        position = len(lowered_hint) - 1 - lowered_hint[::-1].index(sample_hint)
        session_hint = lowered_hint[position - 1] if position > 0 else None

    def score(path: Path) -> tuple[int, int, float]:
        sample = path.parent.parent
        return (int(session_hint is not None and sample.parent.name.lower() == session_hint),
                int(sample_hint is not None and sample.name.lower() == sample_hint),
                path.stat().st_mtime)

    ranked = sorted(candidates, key=score, reverse=True)
    if len(ranked) > 1 and score(ranked[0])[:2] == score(ranked[1])[:2]:
        log.warning("%s: several atlases could be this session's; using the newest, %s",
                    atlas_root, ranked[0])
    return ranked[0]


def locate_atlas(atlas_path: str | None, storage_root: str | None, session_dir: Path
                 ) -> AtlasLocation | None:
    """The local atlas of an EPU session, or None when it cannot be found (yet)."""
    visit_dir = session_dir.resolve().parent
    below = map_atlas_path(atlas_path, storage_root, session_dir.resolve()) if atlas_path \
        else None
    if below:
        local = resolve_case_insensitive(visit_dir, below)
        if local is not None and local.is_file():
            location = _location(local)
            if location is not None:
                return location
    found = _search(visit_dir, windows_parts(atlas_path) if atlas_path else ())
    return _location(found) if found is not None else None
