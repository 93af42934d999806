"""Copies and moves of registered files between storages (SPEC OPS-3): the copy is checked
against the recorded SHA-256 before it counts, and a move deletes the source only after that.

A crash at any point leaves the source intact and at most an unregistered copy (or a staged
write), which the cleanup pass removes; running the move again completes it.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import wait

from cryovault.storage.backends import Storage
from cryovault.storage.checksums import HASH_POOL, ChecksumMismatch, HashingWriter

COPY_BLOCK_BYTES = 8 * 1024 * 1024
READ_AHEAD_BLOCKS = 2
_END = object()


def read_ahead(chunks: Iterator[bytes], depth: int = READ_AHEAD_BLOCKS) -> Iterator[bytes]:
    """The chunks, read by a helper thread up to `depth` chunks ahead of the consumer, so that
    reading the source overlaps hashing and writing the copy (serially, a checked copy ran at
    about a third of `cp`; see benchmarks/lifecycle_export.py). The source's exceptions are
    raised in the consumer; when the consumer stops early, the thread stops and closes the
    source."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    return
            hand_over(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="cryovault-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def copy_verified(source: Storage, source_key: str, target: Storage, target_key: str, *,
                  sha256: str, size_bytes: int,
                  progress: Callable[[int], None] | None = None) -> None:
    """Copy bytes from one storage to another; raise ChecksumMismatch (and leave nothing at
    the target) when what was read is not what was registered."""
    staged = target.stage()
    source_path = source.local_path(source_key)
    if source_path is not None and hasattr(staged, "copy_range_from"):
        _copy_in_kernel(source, source_key, source_path, staged, target_key, sha256=sha256,
                        size_bytes=size_bytes, progress=progress)
        return
    writer = HashingWriter(staged)
    chunks = read_ahead(source.read(source_key, chunk_bytes=COPY_BLOCK_BYTES))
    try:
        pieces: list[bytes] = []
        pending = 0
        for chunk in chunks:
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
    finally:
        chunks.close()  # stops the read-ahead thread at once, whatever happened
    if progress is not None:
        progress(writer.size_bytes)


def _copy_in_kernel(source: Storage, source_key: str, source_path, staged, target_key: str, *,
                    sha256: str, size_bytes: int,
                    progress: Callable[[int], None] | None) -> None:
    """Local to local: the kernel copies each block (as `cp` does, no trip through Python)
    while another thread hashes the block copied before, read back from the copy itself — so
    what is checked against the registered SHA-256 is the copy, not only the source."""
    digest = hashlib.sha256()
    offset = 0
    hashing = None
    try:
        with open(source_path, "rb", buffering=0) as handle:
            while True:
                done = staged.copy_range_from(handle.fileno(), COPY_BLOCK_BYTES)
                if hashing is not None:
                    hashing.result()
                if not done:
                    break
                hashing = HASH_POOL.submit(_hash_back, digest, staged, offset, done)
                offset += done
                if progress is not None:
                    progress(offset)
        if hashing is not None:
            hashing.result()
        if offset != size_bytes or digest.hexdigest() != sha256:
            raise ChecksumMismatch(
                f"{source.name}:{source_key} reads as {offset} bytes with SHA-256 "
                f"{digest.hexdigest()}, but {size_bytes} bytes with {sha256} were registered; "
                "nothing was copied")
        staged.commit(target_key)
    except BaseException:
        if hashing is not None:
            wait([hashing])  # it reads the copy: let it finish before the copy goes
        staged.abort()
        raise


def _hash_back(digest, staged, offset: int, length: int) -> None:
    while length > 0:
        block = staged.read_back(offset, min(length, COPY_BLOCK_BYTES))
        if not block:
            raise ChecksumMismatch("the copy is shorter than the bytes written to it")
        digest.update(block)
        offset += len(block)
        length -= len(block)
