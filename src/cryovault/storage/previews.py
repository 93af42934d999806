"""Viewers of stored files (SPEC WS-11): which viewer, image previews and tiles, tables, text.

The numerical work lives in `cryovault.formats`; this module finds the bytes (in place for a
local storage, a checked local copy for an object store), keeps the derived files beside them
(`derived/<id>/` in a local storage, the data directory's cache otherwise) and checks the
file's SHA-256 once before its first preview, so a corrupted file is flagged, never shown.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.errors import Conflict, Invalid, NotFound
from cryovault.formats import previews as pyramid
from cryovault.formats import tables
from cryovault.formats.filetypes import viewer_kind
from cryovault.formats.images import ImageInfo, SliceOutOfRange, UnreadableImage, probe_image
from cryovault.settings import Settings
from cryovault.storage.backends import LocalStorage, Storage
from cryovault.storage.checksums import sha256_of_file
from cryovault.storage.files import (
    INTEGRITY_MISMATCH,
    FileView,
    flag_file,
    open_file_for_reading,
    refuse_flagged,
)
from cryovault.storage.keys import derived_prefix
from cryovault.storage.registry import StorageSet

HEAD_BYTES = 8192
TABLE_ROWS = 500
CHECKED_MARKER = "checked.sha256"


@dataclass(frozen=True)
class LocalFile:
    """A stored file readable on this host, and where its derived files go."""

    file: FileView
    path: Path
    cache_dir: Path

    @property
    def name(self) -> str:
        return self.file.name


def _cache_dir(settings: Settings, storage: Storage, element_id: uuid.UUID) -> Path:
    if isinstance(storage, LocalStorage):
        return storage.path_of(derived_prefix(element_id))
    return settings.data_dir.resolve() / "cache" / derived_prefix(element_id)


def local_file(db: Session, actor: Actor, settings: Settings, storages: StorageSet,
               file_id: uuid.UUID) -> LocalFile:
    file, storage = open_file_for_reading(db, actor, storages, file_id)
    stored = file.stored
    cache_dir = _cache_dir(settings, storage, file.id)
    return LocalFile(file, local_copy(storage, stored.key, stored.size_bytes, cache_dir),
                     cache_dir)


def local_copy(storage: Storage, key: str, size_bytes: int, cache_dir: Path) -> Path:
    """A path to the bytes on this machine: the file itself in a local storage; for an object
    store, a copy fetched once and kept with the cache."""
    path = storage.local_path(key)
    if path is None:
        path = cache_dir / "source"
        if not path.is_file() or path.stat().st_size != size_bytes:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            with open(partial, "wb") as out:
                for chunk in storage.read(key):
                    out.write(chunk)
            os.replace(partial, path)
    return path


def check_once(db: Session, source: LocalFile) -> None:
    """Compare the bytes with the recorded SHA-256 before they are first shown."""
    marker = source.cache_dir / CHECKED_MARKER
    sha256 = source.file.stored.sha256
    try:
        if marker.read_text() == sha256:
            return
    except OSError:
        pass
    if sha256_of_file(source.path) != sha256:
        flag_file(db, source.file.id, INTEGRITY_MISMATCH)
        db.commit()  # the flag must stay although this request fails
        source.file.stored.integrity = INTEGRITY_MISMATCH
        refuse_flagged(source.file)
    source.cache_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(sha256)


def head_of(source: LocalFile) -> bytes:
    with open(source.path, "rb") as stream:
        return stream.read(HEAD_BYTES)


def kind_of(source: LocalFile) -> str:
    return viewer_kind(source.name, head_of(source))


def image_info(source: LocalFile) -> ImageInfo:
    try:
        return probe_image(source.path, None)
    except UnreadableImage as exc:
        raise Invalid(str(exc)) from None


def image_preview(db: Session, source: LocalFile, slice_index: int) -> pyramid.PreviewSet:
    """Build (or find) the preview of one slice: the first view, thumbnails and tiles."""
    cached = pyramid.load_preview(source.cache_dir, slice_index)
    if cached is not None and (source.cache_dir / CHECKED_MARKER).is_file():
        return cached
    check_once(db, source)
    info = image_info(source)
    try:
        return pyramid.build_preview(source.path, source.cache_dir, slice_index, info)
    except UnreadableImage as exc:
        raise Invalid(str(exc)) from None
    except SliceOutOfRange as exc:
        raise NotFound(exc.message) from None


def image_tile(db: Session, source: LocalFile, slice_index: int, level: int, col: int,
               row: int) -> bytes:
    try:
        return pyramid.tile_png(source.cache_dir, slice_index, level, col, row)
    except pyramid.PreviewNotBuilt:
        image_preview(db, source, slice_index)
    except pyramid.TileOutOfRange as exc:
        raise NotFound(exc.message) from None
    try:
        return pyramid.tile_png(source.cache_dir, slice_index, level, col, row)
    except pyramid.TileOutOfRange as exc:
        raise NotFound(exc.message) from None
    except pyramid.PreviewNotBuilt as exc:
        raise Conflict(exc.message) from None


def document_view(db: Session, source: LocalFile, kind: str
                  ) -> tables.TablePreview | tables.TextPreview | tables.JsonPreview:
    """A table (STAR, CSV, TSV), JSON or text file as the viewer shows it."""
    check_once(db, source)
    try:
        if kind == "table":
            return tables.read_table_preview(source.path, _table_format(source.name),
                                             max_rows=TABLE_ROWS)
        if kind == "json":
            return tables.read_json_preview(source.path)
        return tables.read_text_preview(source.path)
    except tables.UnreadableTable as exc:
        raise Invalid(exc.message) from None


def _table_format(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    return suffix if suffix in ("star", "tsv") else "csv"
