"""Storage backends: a local POSIX directory, or any fsspec filesystem (S3-compatible stores).

Writes are staged: bytes go to a temporary key under `tmp/` and are renamed into place by
`commit` only when complete, so a reader never sees half a file and a crash leaves only
`tmp/` leftovers, which the cleanup pass removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cryovault.errors import Invalid
from cryovault.settings import StorageConfig
from cryovault.storage.keys import TMP_PREFIX, tmp_key, validate_key

READ_CHUNK_BYTES = 1024 * 1024
SYNC_EVERY_BYTES = 128 * 1024 * 1024
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)


@dataclass(frozen=True)
class StorageUsage:
    """Space of the device or bucket holding a storage; None where the backend cannot tell."""

    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    modified_at: datetime


class StagedWrite(ABC):
    """Bytes being written under a temporary key; `commit` renames them into place."""

    def __init__(self) -> None:
        self.written_bytes = 0

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    def write_all(self, pieces: Sequence[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    @abstractmethod
    def commit(self, key: str, *, sync_directory: bool = True) -> None:
        """Make the bytes durable and visible at `key`; checks the size that arrived. With
        `sync_directory=False` the new directory entry is not yet durable: the caller commits
        several files into one directory and then calls `Storage.sync_directory_of` once."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the temporary bytes (safe to call twice, or after a failed commit)."""


class Storage(ABC):
    kind: str = "abstract"

    def __init__(self, name: str, role: str, location: str) -> None:
        self.name = name
        self.role = role
        # Shown on the storage page: never contains credentials.
        self.location = location

    @abstractmethod
    def stage(self) -> StagedWrite: ...

    def sync_directory_of(self, key: str) -> None:
        """Make the entries of the directory holding `key` durable (after commits made with
        `sync_directory=False`). Nothing to do for stores without directories."""
        return None

    @abstractmethod
    def put_local_file(self, path: Path, key: str) -> None:
        """Move a complete local file (a finished upload) into place at `key`."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO: ...

    def read(self, key: str, start: int = 0, length: int | None = None,
             chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of `key` from `start`, `length` of them (all when None), in chunks."""
        with self.open_read(key) as stream:
            if start:
                stream.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                want = chunk_bytes if remaining is None else min(chunk_bytes, remaining)
                chunk = stream.read(want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, None when the key does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one key; nothing happens when it is already gone."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def walk(self, prefix: str) -> Iterator[StoredObject]: ...

    @abstractmethod
    def usage(self) -> StorageUsage: ...

    def local_path(self, key: str) -> Path | None:
        """A path on this host where the bytes can be read directly, when there is one."""
        return None


# --- local directories ---------------------------------------------------------------------


class _LocalStagedWrite(StagedWrite):
    def __init__(self, storage: LocalStorage) -> None:
        super().__init__()
        self._storage = storage
        self._path = storage.path_of(tmp_key())
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: the pieces go to the file descriptor with writev.
        self._file: BinaryIO | None = open(self._path, "xb+", buffering=0)  # noqa: SIM115
        self._unsynced = 0

    def write(self, data: bytes | memoryview) -> None:
        self.write_all([bytes(data)])

    def write_all(self, pieces: Sequence[bytes]) -> None:
        assert self._file is not None, "write after commit or abort"
        written = write_pieces(self._file.fileno(), pieces)
        self.written_bytes += written
        self._unsynced += written
        if self._unsynced >= SYNC_EVERY_BYTES:
            # Flush to the disk as the bytes come rather than all at the commit: the disk then
            # works while the network delivers, and the final fsync is short.
            os.fdatasync(self._file.fileno())
            self._unsynced = 0

    def commit(self, key: str, *, sync_directory: bool = True) -> None:
        assert self._file is not None, "commit after commit or abort"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._path.stat().st_size != self.written_bytes:
            raise OSError(f"{self._path}: size on disk differs from the bytes written")
        target = self._storage.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, target)
        if sync_directory:
            _fsync_dir(target.parent)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)

    def copy_range_from(self, source_fd: int, length: int) -> int:
        """Append up to `length` bytes of `source_fd` (from its current offset) inside the
        kernel (copy_file_range, falling back to sendfile); the bytes copied (0 at its end)."""
        assert self._file is not None, "write after commit or abort"
        fd = self._file.fileno()
        try:
            done = os.copy_file_range(source_fd, fd, length)
        except OSError:  # other file system or kernel: sendfile copies in the kernel too
            done = os.sendfile(fd, source_fd, None, length)
        self.written_bytes += done
        self._unsynced += done
        return done

    def read_back(self, offset: int, length: int) -> bytes:
        """Bytes already written (from the page cache), e.g. to hash the copy itself."""
        assert self._file is not None, "read after commit or abort"
        return os.pread(self._file.fileno(), length, offset)


def write_pieces(fd: int, pieces: Sequence[bytes]) -> int:
    """Write the pieces in order with writev (no joining copy); the number of bytes."""
    total = 0
    for start in range(0, len(pieces), _IOV_MAX):
        batch = [memoryview(piece) for piece in pieces[start:start + _IOV_MAX]]
        while batch:
            done = os.writev(fd, batch)
            total += done
            while batch and done >= len(batch[0]):  # drop what was written whole …
                done -= len(batch[0])
                batch.pop(0)
            if batch and done:  # … and the written part of a piece cut short
                batch[0] = batch[0][done:]
    return total


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    kind = "local"

    def __init__(self, name: str, role: str, root: Path) -> None:
        super().__init__(name, role, str(root))
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # validate_key refuses '..' and absolute keys; a symlink planted inside the root must
        # not lead out of it either.
        if not path.resolve().is_relative_to(self.root):
            raise Invalid(f"storage key {key!r} leads outside the storage")
        return path

    def stage(self) -> StagedWrite:
        return _LocalStagedWrite(self)

    def sync_directory_of(self, key: str) -> None:
        _fsync_dir(self.path_of(key).parent)

    def put_local_file(self, path: Path, key: str) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        try:
            os.replace(path, target)  # same file system: a rename, no copy
        except OSError:
            staged = self.stage()
            try:
                with open(path, "rb") as source:
                    while chunk := source.read(8 * READ_CHUNK_BYTES):
                        staged.write(chunk)
                staged.commit(key)
            except BaseException:
                staged.abort()
                raise
            path.unlink()
        if target.stat().st_size != size:
            raise OSError(f"{target}: size differs from the uploaded file")
        _fsync_dir(target.parent)

    def open_read(self, key: str) -> BinaryIO:
        return open(self.path_of(key), "rb")  # noqa: SIM115 (the caller closes it)

    def size(self, key: str) -> int | None:
        try:
            return self.path_of(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        # Remove directories left empty, up to the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def delete_prefix(self, prefix: str) -> None:
        path = self.path_of(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        base = self.path_of(prefix)
        if not base.exists():
            return
        for directory, _, files in os.walk(base):
            for name in files:
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                yield StoredObject(path.relative_to(self.root).as_posix(), stat.st_size,
                                   datetime.fromtimestamp(stat.st_mtime, UTC))

    def usage(self) -> StorageUsage:
        total, used, free = shutil.disk_usage(self.root)
        return StorageUsage(total, used, free)

    def local_path(self, key: str) -> Path | None:
        return self.path_of(key)


# --- fsspec (S3-compatible object stores and others) ----------------------------------------


class _FsspecStagedWrite(StagedWrite):
    def __init__(self, storage: FsspecStorage) -> None:
        super().__init__()
        self._storage = storage
        self._key = tmp_key()
        self._file = storage.fs.open(storage.full_path(self._key), "wb",
                                     block_size=storage.block_bytes)
        self._open = True

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self.written_bytes += len(data)

    def commit(self, key: str, *, sync_directory: bool = True) -> None:
        self._file.close()
        self._open = False
        size = self._storage.size(self._key)
        if size != self.written_bytes:
            raise OSError(f"{self._key}: the store holds {size} bytes, {self.written_bytes} "
                          "were written")
        self._storage.fs.mv(self._storage.full_path(self._key), self._storage.full_path(key))
        self._storage.fs.invalidate_cache()

    def abort(self) -> None:
        if self._open:
            self._open = False
            discard = getattr(self._file, "discard", None)
            if discard is not None:
                discard()  # abandons a multipart upload without completing it
                self._file.closed = True  # so that no later close() tries to complete it
            else:
                self._file.close()
        self._storage.delete(self._key)


class FsspecStorage(Storage):
    kind = "fsspec"
    block_bytes = 16 * 1024 * 1024

    def __init__(self, name: str, role: str, config: StorageConfig) -> None:
        import fsspec

        protocol, _, root = config.url.partition("://")
        options: dict[str, object] = {"skip_instance_cache": True}
        if protocol in ("s3", "s3a"):
            protocol = "s3"
            client: dict[str, str] = {}
            if config.endpoint_url:
                client["endpoint_url"] = config.endpoint_url
            if config.region:
                client["region_name"] = config.region
            options.update(key=config.key, secret=config.secret, client_kwargs=client)
        super().__init__(name, role, f"{protocol}://{root}"
                         + (f" at {config.endpoint_url}" if config.endpoint_url else ""))
        self.kind = protocol
        self.fs = fsspec.filesystem(protocol, **options)
        self.root = root.strip("/")

    def full_path(self, key: str) -> str:
        return f"{self.root}/{validate_key(key)}" if self.root else validate_key(key)

    def stage(self) -> StagedWrite:
        return _FsspecStagedWrite(self)

    def put_local_file(self, path: Path, key: str) -> None:
        temporary = tmp_key()
        try:
            self.fs.put_file(str(path), self.full_path(temporary))
            if self.size(temporary) != path.stat().st_size:
                raise OSError(f"{temporary}: size differs from the uploaded file")
            self.fs.mv(self.full_path(temporary), self.full_path(key))
        except BaseException:
            self.delete(temporary)
            raise
        finally:
            self.fs.invalidate_cache()
        path.unlink()

    def open_read(self, key: str) -> BinaryIO:
        return self.fs.open(self.full_path(key), "rb", block_size=self.block_bytes)

    def size(self, key: str) -> int | None:
        path = self.full_path(key)
        self.fs.invalidate_cache(path)
        try:
            return int(self.fs.info(path)["size"])
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.full_path(key))
        self.fs.invalidate_cache()

    def delete_prefix(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.full_path(prefix), recursive=True)
        self.fs.invalidate_cache()

    def walk(self, prefix: str) -> Iterator[StoredObject]:
        base = self.full_path(prefix)
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("created")
            if isinstance(modified, int | float):
                modified = datetime.fromtimestamp(modified, UTC)
            elif not isinstance(modified, datetime):
                modified = datetime.now(UTC)
            key = path[len(self.root) + 1:] if self.root else path
            yield StoredObject(key, int(info.get("size") or 0), modified)

    def usage(self) -> StorageUsage:
        # An object store has no fixed capacity: what it holds under the root is the usage.
        try:
            used = int(self.fs.du(self.root or "/", total=True))
        except FileNotFoundError:
            used = 0
        return StorageUsage(None, used, None)


def open_storage(name: str, config: StorageConfig) -> Storage:
    url = config.url
    if url.startswith("file://"):
        return LocalStorage(name, config.role, Path(url.removeprefix("file://")))
    if "://" not in url:
        return LocalStorage(name, config.role, Path(url))
    return FsspecStorage(name, config.role, config)


__all__ = ["TMP_PREFIX", "FsspecStorage", "LocalStorage", "StagedWrite", "Storage",
           "StorageUsage", "StoredObject", "open_storage"]
