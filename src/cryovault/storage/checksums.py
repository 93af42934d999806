"""SHA-256 of streams, computed while the bytes pass (SPEC OPS-3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryovault.storage.backends import READ_CHUNK_BYTES, StagedWrite

# Hashing and writing both release the GIL: done in two threads, they overlap.
HASH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cryovault-sha256")


def _update(digest: hashlib._Hash, pieces: Sequence[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)


def hash_alongside(digest: hashlib._Hash, pieces: Sequence[bytes],
                   write: Callable[[Sequence[bytes]], None]) -> None:
    """`write(pieces)` while `digest` takes the same bytes in another thread."""
    hashing = HASH_POOL.submit(_update, digest, pieces)
    try:
        write(pieces)
    finally:
        hashing.result()


class HashingWriter:
    """Writes to a staged write and hashes the same bytes; `sha256` when done."""

    def __init__(self, staged: StagedWrite) -> None:
        self.staged = staged
        self._hash = hashlib.sha256()

    def write(self, pieces: Sequence[bytes]) -> None:
        hash_alongside(self._hash, pieces, self.staged.write_all)

    @property
    def size_bytes(self) -> int:
        return self.staged.written_bytes

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def sha256_of_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_of_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


class ChecksumMismatch(Exception):
    """The bytes read differ from the checksum recorded when they were written."""


def verified(chunks: Iterable[bytes], expected_sha256: str, expected_size: int) -> Iterator[bytes]:
    """Pass the chunks through; raise ChecksumMismatch at the end if they are not the bytes
    that were registered (the consumer has then received a truncated, failing transfer)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != expected_size or digest.hexdigest() != expected_sha256:
        raise ChecksumMismatch(f"read {size} bytes with SHA-256 {digest.hexdigest()}, "
                               f"registered {expected_size} bytes with {expected_sha256}")


__all__ = ["READ_CHUNK_BYTES", "ChecksumMismatch", "HashingWriter", "hash_alongside",
           "sha256_of_chunks",
           "sha256_of_file", "verified"]
