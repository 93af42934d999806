"""Bodies of the files, uploads and storages endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from cryovault.db.files import StoredFile, Upload
from cryovault.storage.files import FileView
from cryovault.web.api.schemas import ElementOut, Strict


class StoredFileOut(BaseModel):
    size_bytes: int
    sha256: str
    media_type: str
    storage: str
    integrity: str = Field(description="ok | mismatch | missing")
    verified_at: datetime | None

    @classmethod
    def of(cls, stored: StoredFile) -> StoredFileOut:
        return cls(size_bytes=stored.size_bytes, sha256=stored.sha256,
                   media_type=stored.media_type, storage=stored.storage,
                   integrity=stored.integrity, verified_at=stored.verified_at)


class FileOut(ElementOut):
    file: StoredFileOut

    @classmethod
    def of_file(cls, view: FileView) -> FileOut:
        base = ElementOut.of(view.element)
        return cls(**base.model_dump(), file=StoredFileOut.of(view.stored))


class UploadIn(Strict):
    parent_id: uuid.UUID
    name: str = Field(max_length=10_000)
    size: int = Field(ge=0, description="total size in bytes")
    sha256: str | None = Field(default=None, description="checked when the last byte arrives")


class UploadOut(BaseModel):
    id: uuid.UUID
    parent_id: uuid.UUID
    name: str
    size: int
    offset: int
    created_at: datetime
    updated_at: datetime
    file: FileOut | None = None

    @classmethod
    def of(cls, upload: Upload, file: FileView | None = None) -> UploadOut:
        return cls(id=upload.id, parent_id=upload.parent_id, name=upload.name,
                   size=upload.size_bytes, offset=upload.offset_bytes,
                   created_at=upload.created_at, updated_at=upload.updated_at,
                   file=FileOut.of_file(file) if file else None)


class UploadList(BaseModel):
    items: list[UploadOut]


class StorageOut(BaseModel):
    name: str
    role: str
    kind: str
    location: str
    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None
    registered_files: int
    registered_bytes: int


class StorageList(BaseModel):
    items: list[StorageOut]
    refreshed_at: datetime
