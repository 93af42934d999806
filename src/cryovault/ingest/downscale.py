"""Downscaled copies of a run's images (SPEC SPA-8): kept so that the atlas, grid squares and
micrographs stay viewable after the session's raw files are cleaned up.

A copy is an 8-bit PNG binned by an integer factor (atlas 1, grid square 2, micrograph 4),
contrast set from the 0.5–99.5 percentiles, registered as a run file with role "downscaled"
under the reserved path prefix `.cryovault/downscaled/`.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.db.runs import RunFile
from cryovault.formats.images import UnreadableImage, probe_image, read_plane
from cryovault.storage.backends import StagedWrite, Storage
from cryovault.storage.keys import run_file_key
from cryovault.storage.registry import StorageSet

DOWNSCALED_PREFIX = ".cryovault/downscaled/"


def binned(plane: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return plane
    height, width = (plane.shape[0] // factor) * factor, (plane.shape[1] // factor) * factor
    cropped = plane[:height, :width]
    return cropped.reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))


def to_png(plane: np.ndarray) -> bytes:
    finite = plane[np.isfinite(plane)]
    low, high = (np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0))
    scale = 255.0 / (high - low) if high > low else 0.0
    pixels = np.clip((np.nan_to_num(plane) - low) * scale, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _plane_of(storage: Storage, key: str, relative_path: str) -> np.ndarray:
    local = storage.local_path(key)
    if local is not None:
        info = probe_image(local)
        return read_plane(local, info, 0)
    suffix = Path(relative_path).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        for chunk in storage.read(key):
            copy.write(chunk)
        copy.flush()
        path = Path(copy.name)
        return read_plane(path, probe_image(path), 0)


def downscaled_path(relative_path: str) -> str:
    """The reserved run-file path of an image's downscaled copy."""
    return f"{DOWNSCALED_PREFIX}{relative_path}.png"


@dataclass(frozen=True)
class DownscaledCopy:
    """A downscaled copy whose bytes are durable at `key` (the PNG of the image registered at
    `source_path`), not yet recorded as a run file."""

    file_id: uuid.UUID
    source_path: str
    storage: str
    key: str
    size_bytes: int
    sha256: str

    @property
    def path(self) -> str:
        return downscaled_path(self.source_path)


def stage_downscaled(storages: StorageSet, storage_name: str, key: str,
                     dataset_id: uuid.UUID, relative_path: str,
                     factor: int) -> tuple[DownscaledCopy, StagedWrite]:
    """Read the image stored at `key`, bin it by `factor` and write the PNG in the primary
    storage, not yet committed: the caller commits the staged write at `copy.key` (or aborts
    it). Needs no database: a batch makes its copies before its transaction. Raises
    UnreadableImage."""
    plane = _plane_of(storages.get(storage_name), key, relative_path)
    data = to_png(binned(plane.astype(np.float32, copy=False), factor))
    storage = storages.primary
    file_id = uuid.uuid4()
    copy = DownscaledCopy(file_id, relative_path, storage.name,
                          run_file_key(dataset_id, file_id, downscaled_path(relative_path)),
                          len(data), hashlib.sha256(data).hexdigest())
    staged = storage.stage()
    try:
        staged.write(data)
    except BaseException:
        staged.abort()
        raise
    return copy, staged


def make_downscaled(storages: StorageSet, storage_name: str, key: str, dataset_id: uuid.UUID,
                    relative_path: str, factor: int) -> DownscaledCopy:
    """As `stage_downscaled`, the copy committed (durable)."""
    copy, staged = stage_downscaled(storages, storage_name, key, dataset_id, relative_path,
                                    factor)
    try:
        staged.commit(copy.key)
    except BaseException:
        staged.abort()
        raise
    return copy


def record_downscaled(db: Session, run_file: RunFile, copy: DownscaledCopy) -> RunFile:
    """The run-file row of a copy made by `make_downscaled` (added to the session)."""
    row = RunFile(id=copy.file_id, dataset_id=run_file.dataset_id, session=run_file.session,
                  relative_path=copy.path, role="downscaled", item_id=run_file.item_id,
                  storage=copy.storage, key=copy.key,
                  size_bytes=copy.size_bytes, sha256=copy.sha256, media_type="image/png",
                  source_size=copy.size_bytes, source_mtime=0.0)
    db.add(row)
    return row


def store_downscaled(db: Session, storages: StorageSet, run_file: RunFile,
                     factor: int) -> tuple[RunFile | None, str | None]:
    """The downscaled copy of an image file (made once); (None, reason) when unreadable."""
    path = downscaled_path(run_file.relative_path)
    existing = db.scalar(select(RunFile).where(RunFile.dataset_id == run_file.dataset_id,
                                               RunFile.relative_path == path))
    if existing is not None:
        return existing, None
    try:
        copy = make_downscaled(storages, run_file.storage, run_file.key, run_file.dataset_id,
                               run_file.relative_path, factor)
    except UnreadableImage as exc:
        return None, str(exc)
    try:
        with db.begin_nested():
            row = record_downscaled(db, run_file, copy)
    except BaseException:
        storages.get(copy.storage).delete(copy.key)
        raise
    return row, None
