"""Copies and moves of registered files between storages (SPEC OPS-3): the copy is checked
against the recorded SHA-256 before it counts, and a move deletes the source only after that.

A crash at any point leaves the source intact and at most an unregistered copy (or a staged
write), which the cleanup pass removes; running the move again completes it.
"""

from __future__ import annotations

from collections.abc import Callable

from cryovault.storage.backends import Storage
from cryovault.storage.checksums import ChecksumMismatch, HashingWriter

COPY_BLOCK_BYTES = 8 * 1024 * 1024


def copy_verified(source: Storage, source_key: str, target: Storage, target_key: str, *,
                  sha256: str, size_bytes: int,
                  progress: Callable[[int], None] | None = None) -> None:
    """Copy bytes from one storage to another; raise ChecksumMismatch (and leave nothing at
    the target) when what was read is not what was registered."""
    staged = target.stage()
    writer = HashingWriter(staged)
    try:
        pieces: list[bytes] = []
        pending = 0
        for chunk in source.read(source_key, chunk_bytes=COPY_BLOCK_BYTES):
            pieces.append(chunk)
            pending += len(chunk)
            if pending >= COPY_BLOCK_BYTES:
                writer.write(pieces)
                pieces, pending = [], 0
                if progress is not None:
                    progress(writer.size_bytes)
        if pieces:
            writer.write(pieces)
        if writer.size_bytes != size_bytes or writer.sha256 != sha256:
            raise ChecksumMismatch(
                f"{source.name}:{source_key} reads as {writer.size_bytes} bytes with SHA-256 "
                f"{writer.sha256}, but {size_bytes} bytes with {sha256} were registered; "
                "nothing was copied")
        staged.commit(target_key)
    except BaseException:
        staged.abort()
        raise
    if progress is not None:
        progress(writer.size_bytes)
