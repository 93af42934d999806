"""Resumable uploads (SPEC WS-10): bytes arrive in chunks at known offsets, possibly over
several connections and days, are staged in a local file, and become a File element only when
the last byte has arrived and the checksum is right.

The protocol follows tus (tus.io) in spirit: create with the total size, send chunks with the
offset they start at (`Upload-Offset` or `Content-Range`), ask for the offset after an
interruption, delete to cancel.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.base import utcnow
from cryovault.db.files import Upload
from cryovault.errors import Conflict, Invalid, NotFound, TooLarge
from cryovault.settings import Settings
from cryovault.storage.backends import write_pieces
from cryovault.storage.checksums import hash_alongside, sha256_of_file
from cryovault.storage.files import FileView, UploadTarget, check_file_target, register_file
from cryovault.storage.registry import StorageSet

SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class UploadState:
    upload: Upload
    file: FileView | None = None  # set once the upload is complete


def part_path(settings: Settings, upload_id: uuid.UUID) -> Path:
    return settings.uploads_dir / f"{upload_id}.part"


def _check_space(settings: Settings, storages: StorageSet, size_bytes: int) -> None:
    if size_bytes > settings.max_upload_bytes:
        raise TooLarge(f"the file is {size_bytes:,} bytes; uploads are limited to "
                       f"{settings.max_upload_bytes:,} bytes on this platform")
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.uploads_dir).free
    if size_bytes > free:
        raise TooLarge(f"the file is {size_bytes:,} bytes but the upload area has only "
                       f"{free:,} bytes free; ask an administrator to make room")
    primary = storages.primary.usage().free_bytes
    if primary is not None and size_bytes > primary:
        raise TooLarge(f"the file is {size_bytes:,} bytes but storage {storages.primary.name!r} "
                       f"has only {primary:,} bytes free")


def create_upload(db: Session, actor: Actor, settings: Settings, storages: StorageSet, *,
                  parent_id: uuid.UUID | None, name: str, size_bytes: int,
                  sha256: str | None = None) -> Upload:
    if size_bytes < 0:
        raise Invalid("size must not be negative")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or not set(sha256) <= SHA256_HEX:
            raise Invalid("sha256 must be 64 hexadecimal digits")
    if parent_id is None:
        raise Invalid("uploads go into a step or a dataset: give its parent_id")
    target = check_file_target(db, actor, parent_id, name)
    _check_space(settings, storages, size_bytes)
    upload = Upload(parent_id=target.parent_id, user_id=actor.user_id, name=target.name,
                    size_bytes=size_bytes, offset_bytes=0, expected_sha256=sha256)
    db.add(upload)
    db.flush()
    part_path(settings, upload.id).touch(exist_ok=False)
    return upload


def get_upload(db: Session, actor: Actor, upload_id: uuid.UUID) -> Upload:
    """An upload belongs to whoever started it; others are told it does not exist."""
    upload = db.get(Upload, upload_id)
    if upload is None or upload.user_id != actor.user_id:
        raise NotFound(f"no upload with id {upload_id} (it may have completed, been cancelled "
                       "or expired)")
    return upload


def list_uploads(db: Session, actor: Actor) -> list[Upload]:
    return list(db.scalars(select(Upload).where(Upload.user_id == actor.user_id)
                           .order_by(Upload.created_at)))


def cancel_upload(db: Session, actor: Actor, settings: Settings, upload_id: uuid.UUID) -> None:
    upload = get_upload(db, actor, upload_id)
    db.delete(upload)
    db.flush()
    part_path(settings, upload_id).unlink(missing_ok=True)
    _HASHES.pop(upload_id, None)


# Running SHA-256 of uploads whose chunks arrived in order in this process: the checksum is
# then ready when the last chunk lands. Another process, or a restart, re-reads the part.
_HASHES: dict[uuid.UUID, tuple[int, hashlib._Hash]] = {}
_HASHES_LOCK = threading.Lock()


class ChunkWriter:
    """Writes one chunk of an upload at its offset, holding an exclusive lock on the part file
    so that two requests for the same upload cannot interleave."""

    def __init__(self, settings: Settings, upload: Upload, offset: int) -> None:
        if offset != upload.offset_bytes:
            raise Conflict(f"the upload is at offset {upload.offset_bytes}, not {offset}; "
                           "resume from there (HEAD or GET the upload to ask)")
        self.upload_id = upload.id
        self.limit = upload.size_bytes - offset
        self.start = offset
        self.received = 0
        path = part_path(settings, upload.id)
        try:
            self._file: BinaryIO = open(path, "r+b", buffering=0)  # noqa: SIM115 (see close())
        except FileNotFoundError:
            raise Conflict("the staged bytes of this upload are gone; cancel it and start "
                           "again") from None
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise Conflict("another request is sending bytes to this upload; wait for it to "
                           "finish or fail, then resume") from None
        self._file.seek(offset)
        self._file.truncate()
        with _HASHES_LOCK:
            known = _HASHES.get(upload.id)
        if offset == 0:
            self._hash: hashlib._Hash | None = hashlib.sha256()
        elif known is not None and known[0] == offset:
            self._hash = known[1]
        else:
            self._hash = None

    def write(self, pieces: Sequence[bytes]) -> None:
        size = sum(map(len, pieces))
        if self.received + size > self.limit:
            raise TooLarge(f"more bytes than the {self.limit + self.start:,} announced when the "
                           "upload was created")
        fd = self._file.fileno()
        if self._hash is not None:
            hash_alongside(self._hash, pieces, lambda p: write_pieces(fd, p))
        else:
            write_pieces(fd, pieces)
        self.received += size

    def close(self) -> int:
        """Make what arrived durable; the new offset."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        offset = self.start + self.received
        with _HASHES_LOCK:
            if self._hash is not None:
                _HASHES[self.upload_id] = (offset, self._hash)
            else:
                _HASHES.pop(self.upload_id, None)
        return offset


def record_offset(db: Session, upload: Upload, start: int, offset: int) -> None:
    done = db.execute(update(Upload).where(Upload.id == upload.id, Upload.offset_bytes == start)
                      .values(offset_bytes=offset, updated_at=utcnow())
                      .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        db.expunge(upload)
        current = db.get(Upload, upload.id)
        if current is None:
            raise NotFound("the upload was cancelled while this chunk was arriving")
        raise Conflict(f"another request moved the upload to offset {current.offset_bytes} "
                       "meanwhile; resume from there")
    db.refresh(upload)


def finish_if_complete(db: Session, actor: Actor, settings: Settings, storages: StorageSet,
                       upload: Upload) -> UploadState:
    """When every byte is there: check the checksum and register the File element."""
    if upload.offset_bytes < upload.size_bytes:
        return UploadState(upload)
    path = part_path(settings, upload.id)
    with _HASHES_LOCK:
        known = _HASHES.pop(upload.id, None)
    sha256 = (known[1].hexdigest() if known is not None and known[0] == upload.size_bytes
              else sha256_of_file(path))
    if upload.expected_sha256 and sha256 != upload.expected_sha256:
        db.delete(upload)
        db.flush()
        path.unlink(missing_ok=True)
        db.commit()  # the bad upload is gone even though the request fails
        raise Invalid(f"the bytes received have SHA-256 {sha256}, not the {upload.expected_sha256}"
                      " announced; the upload was discarded, send the file again")
    target = UploadTarget(upload.parent_id, upload.name)
    file = register_file(db, actor, storages, target, path, sha256, upload.size_bytes)
    db.delete(upload)
    db.flush()
    return UploadState(upload, file)


def expired_uploads(db: Session, settings: Settings) -> list[Upload]:
    limit = utcnow() - timedelta(hours=settings.upload_expiry_hours)
    return list(db.scalars(select(Upload).where(Upload.updated_at < limit)))
