"""Incremental scans of the watched folders with os.scandir.

A folder is listed again only when its mtime changed (a file was created, renamed or removed in
it) or when it changed so recently at the last listing that a file created in the same clock tick
could have been missed; other folders reuse their last listing and only their subfolders are
visited. Growing files are re-checked by the caller (it stats what is not registered yet), so a
scan costs one stat per folder plus one listing per changed folder.

What is never sent: hidden entries (`.name`), temporary files (`~name`, `name~`, `*.tmp`,
`*.part`, `*.partial`, `*.swp`, `*.crdownload`, Office `~$` locks), Windows' `Thumbs.db` and
`desktop.ini`, and symbolic links that lead out of the watched root (links to folders are never
followed, links to files only when the target lies inside the root).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("cryovault.watch")

TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".swp", ".crdownload", "~")
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
# a folder that changed less than this before it was listed is listed again next time
FRESH_LISTING_NS = 2_000_000_000


def is_ignored_name(name: str) -> bool:
    """Hidden, temporary or system files the instruments' software leaves around."""
    lower = name.lower()
    return (name.startswith((".", "~")) or lower.endswith(TEMPORARY_SUFFIXES)
            or lower in SYSTEM_FILES)


@dataclass(frozen=True)
class SourceRoot:
    """A watched folder. Its files are sent as `prefix` + their path inside `directory`;
    `accept` (given that inner POSIX path) filters which files belong to the session."""

    directory: Path
    prefix: str = ""
    accept: Callable[[str], bool] | None = None
    label: str = "session"


@dataclass(frozen=True)
class FoundFile:
    relative_path: str  # as the server knows it: the root's prefix + the path inside the root
    path: Path


@dataclass(frozen=True)
class ScanResult:
    added: list[FoundFile]
    removed: list[str]


@dataclass
class _Listing:
    mtime_ns: int
    fresh: bool
    subdirs: list[str]
    files: dict[str, str]  # file name -> relative path (with prefix)


@dataclass
class TreeScanner:
    """Remembers the listing of every folder under one root between scans."""

    root: SourceRoot
    _listings: dict[str, _Listing] = field(default_factory=dict, repr=False)
    _warned: set[str] = field(default_factory=set, repr=False)
    _root_real: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self._root_real = os.path.realpath(self.root.directory)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _inside_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self._root_real or real.startswith(self._root_real + os.sep)

    def _relative(self, inner: str) -> str:
        return self.root.prefix + inner

    def scan(self) -> ScanResult:
        added: list[FoundFile] = []
        removed: list[str] = []
        visited: set[str] = set()
        stack = [""]
        while stack:
            inner_dir = stack.pop()
            visited.add(inner_dir)
            directory = os.path.join(self.root.directory, inner_dir) if inner_dir else str(
                self.root.directory)
            cached = self._listings.get(inner_dir)
            try:
                mtime_ns = os.stat(directory).st_mtime_ns
            except FileNotFoundError:
                continue  # gone: cleaned up below with everything not visited
            except OSError as exc:
                self._warn_once(directory, f"{directory}: cannot read the folder ({exc.strerror})")
                continue
            if cached is not None and cached.mtime_ns == mtime_ns and not cached.fresh:
                stack.extend(cached.subdirs)
                continue
            listing = self._list(directory, inner_dir, mtime_ns)
            if listing is None:
                continue
            previous = cached.files if cached is not None else {}
            for name, relative in listing.files.items():
                if name not in previous:
                    added.append(FoundFile(relative, Path(directory) / name))
            removed.extend(relative for name, relative in previous.items()
                           if name not in listing.files)
            self._listings[inner_dir] = listing
            stack.extend(listing.subdirs)
        for inner_dir in [d for d in self._listings if d not in visited]:
            removed.extend(self._listings.pop(inner_dir).files.values())
        return ScanResult(added, removed)

    def forget(self, relative_path: str) -> None:
        """Let the next listing of the file's folder report it again (e.g. it vanished while
        being sent, and may come back)."""
        inner = relative_path[len(self.root.prefix):]
        inner_dir, _, name = inner.rpartition("/")
        listing = self._listings.get(inner_dir)
        if listing is not None and listing.files.pop(name, None) is not None:
            listing.fresh = True

    def _list(self, directory: str, inner_dir: str, mtime_ns: int) -> _Listing | None:
        subdirs: list[str] = []
        files: dict[str, str] = {}
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn_once(directory, f"{directory}: cannot list the folder ({exc.strerror})")
            return None
        for entry in entries:
            name = entry.name
            if is_ignored_name(name):
                continue
            inner = f"{inner_dir}/{name}" if inner_dir else name
            try:
                if entry.is_symlink():
                    if entry.is_dir():
                        self._warn_once(entry.path, f"{entry.path}: symbolic link to a folder, "
                                        "not followed")
                        continue
                    if not self._inside_root(entry.path):
                        self._warn_once(entry.path, f"{entry.path}: symbolic link out of the "
                                        f"watched folder {self.root.directory}, skipped")
                        continue
                    if not entry.is_file():
                        continue
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(inner)
                    continue
                elif not entry.is_file(follow_symlinks=False):
                    continue  # sockets, fifos, devices
            except OSError:
                continue
            if self.root.accept is not None and not self.root.accept(inner):
                continue
            files[name] = self._relative(inner)
        fresh = time.time_ns() - mtime_ns < FRESH_LISTING_NS
        return _Listing(mtime_ns, fresh, subdirs, files)
