"""Keys inside a storage: POSIX paths that never leave the storage's root."""

from __future__ import annotations

import unicodedata
import uuid
from pathlib import PurePosixPath

from cryovault.errors import Invalid

MAX_FILE_NAME_BYTES = 255
FILES_PREFIX = "files"
TMP_PREFIX = "tmp"
DERIVED_PREFIX = "derived"


def validate_key(key: str) -> str:
    """Refuse anything that could escape the root: absolute paths, '..', empty parts, NUL."""
    if not key or "\x00" in key or "\\" in key or key.startswith("/"):
        raise Invalid(f"invalid storage key {key!r}")
    parts = PurePosixPath(key).parts
    if any(part in ("", ".", "..") for part in parts) or "/".join(parts) != key:
        raise Invalid(f"invalid storage key {key!r}")
    return key


def clean_file_name(name: str) -> str:
    """The name a user gave a file, made safe: the last path component only (browsers and
    clients send `C:\\dir\\a.mrc` or `../../a.mrc`), no control characters, at most 255 bytes
    of UTF-8. Refuses what is empty afterwards."""
    name = (name or "").replace("\\", "/").split("/")[-1].strip()
    name = unicodedata.normalize("NFC", name)
    if "\x00" in name or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise Invalid("a file name must not contain control characters or NUL")
    if name in ("", ".", ".."):
        raise Invalid("the file has no usable name; give one that is not empty, '.' or '..'")
    if len(name.encode()) > MAX_FILE_NAME_BYTES:
        raise Invalid(f"a file name must not be longer than {MAX_FILE_NAME_BYTES} bytes of UTF-8")
    return name


def file_key(element_id: uuid.UUID, name: str) -> str:
    """Where a file's bytes live: under its element id (unique), with its name for humans."""
    safe = "".join(ch if ch.isalnum() or ch in "._-+" else "_" for ch in name)[:120] or "file"
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return f"{FILES_PREFIX}/{element_id.hex[:2]}/{element_id}/{safe}"


def tmp_key() -> str:
    return f"{TMP_PREFIX}/{uuid.uuid4()}.part"


def derived_prefix(element_id: uuid.UUID) -> str:
    """Previews and thumbnails computed from a file, kept beside it in the same storage."""
    return f"{DERIVED_PREFIX}/{element_id.hex[:2]}/{element_id}"


def element_id_of(key: str) -> uuid.UUID | None:
    """The element a `files/` or `derived/` key belongs to (None for anything else)."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in (FILES_PREFIX, DERIVED_PREFIX):
        try:
            return uuid.UUID(parts[2])
        except ValueError:
            return None
    return None


RUNS_PREFIX = "runs"


def run_file_key(dataset_id: uuid.UUID, file_id: uuid.UUID, relative_path: str) -> str:
    """Where a run's file lives: in its run's directory, named by its file id and, for humans,
    its name. One flat directory per run, so that one directory sync makes a batch of new
    files durable."""
    name = relative_path.rsplit("/", 1)[-1]
    safe = "".join(ch if ch.isalnum() or ch in "._-+" else "_" for ch in name)[:120] or "file"
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return f"{RUNS_PREFIX}/{dataset_id.hex[:2]}/{dataset_id}/{file_id}-{safe}"
