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
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.db.runs import RunFile
from cryovault.formats.images import UnreadableImage, probe_image, read_plane
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


def _plane_of(storages: StorageSet, run_file: RunFile) -> np.ndarray:
    storage = storages.get(run_file.storage)
    local = storage.local_path(run_file.key)
    if local is not None:
        info = probe_image(local)
        return read_plane(local, info, 0)
    suffix = Path(run_file.relative_path).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        for chunk in storage.read(run_file.key):
            copy.write(chunk)
        copy.flush()
        path = Path(copy.name)
        return read_plane(path, probe_image(path), 0)


def store_downscaled(db: Session, storages: StorageSet, run_file: RunFile,
                     factor: int) -> tuple[RunFile | None, str | None]:
    """The downscaled copy of an image file (made once); (None, reason) when unreadable."""
    path = f"{DOWNSCALED_PREFIX}{run_file.relative_path}.png"
    existing = db.scalar(select(RunFile).where(RunFile.dataset_id == run_file.dataset_id,
                                               RunFile.relative_path == path))
    if existing is not None:
        return existing, None
    try:
        plane = _plane_of(storages, run_file)
    except UnreadableImage as exc:
        return None, str(exc)
    data = to_png(binned(plane.astype(np.float32, copy=False), factor))
    storage = storages.primary
    staged = storage.stage()
    try:
        staged.write(data)
        copy = RunFile(dataset_id=run_file.dataset_id, session=run_file.session,
                       relative_path=path, role="downscaled", item_id=run_file.item_id,
                       storage=storage.name, key="", size_bytes=len(data),
                       sha256=hashlib.sha256(data).hexdigest(), media_type="image/png",
                       source_size=len(data), source_mtime=0.0)
        copy.id = uuid.uuid4()
        copy.key = run_file_key(run_file.dataset_id, copy.id, path)
        staged.commit(copy.key)
    except BaseException:
        staged.abort()
        raise
    try:
        with db.begin_nested():
            db.add(copy)
    except BaseException:
        storage.delete(copy.key)
        raise
    return copy, None
