"""The wire format of a batch of run files (POST …/ingest/batch): JSON header lines, each
followed by the file's raw bytes, and the batch's limits. Parsing needs no database."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from cryovault.errors import Invalid, TooLarge

MAX_BATCH_FILES = 256
MAX_BATCH_BYTES = 64 * 2**20  # the files' bytes, without their header lines
MAX_BATCH_HEADER_BYTES = 4096  # one header line: the path is at most 1024 bytes
MAX_BATCH_BODY_BYTES = MAX_BATCH_BYTES + MAX_BATCH_FILES * MAX_BATCH_HEADER_BYTES
BATCH_FRAMING = (
    "For each file, one line of JSON `{\"path\": str, \"size\": int, \"mtime\": float, "
    "\"sha256\": str|null}` ending in a newline (`\\n`), followed by exactly `size` raw bytes "
    "(the file's content); the next file's line follows at once. The session is given once, "
    f"in the X-Session header. At most {MAX_BATCH_FILES} files and {MAX_BATCH_BYTES // 2**20} "
    "MiB of file bytes per batch (413 otherwise). Malformed framing registers nothing (422).")


@dataclass(frozen=True)
class BatchEntry:
    """One file of a batch as it arrived: its identity and its bytes."""

    relative_path: str
    source_size: int
    source_mtime: float
    sha256: str | None  # announced by the sender; checked against the bytes
    content: bytes | memoryview


def parse_batch(body: bytes) -> list[BatchEntry]:
    """Split a batch body (see BATCH_FRAMING). Raises Invalid for malformed framing and
    TooLarge beyond the limits; nothing of a malformed batch is registered."""
    entries: list[BatchEntry] = []
    view = memoryview(body)
    position, total_bytes = 0, 0
    while position < len(body):
        number = len(entries) + 1
        if number > MAX_BATCH_FILES:
            raise TooLarge(f"a batch holds at most {MAX_BATCH_FILES} files; send the others "
                           "in another batch")
        end = body.find(b"\n", position, position + MAX_BATCH_HEADER_BYTES)
        if end < 0:
            raise Invalid(f"batch framing: file {number}: expected a JSON header line ending in "
                          f"a newline (at most {MAX_BATCH_HEADER_BYTES} bytes)")
        header = _batch_header(body[position:end], number)
        path, size = header["path"], header["size"]
        total_bytes += size
        if total_bytes > MAX_BATCH_BYTES:
            raise TooLarge(f"a batch holds at most {MAX_BATCH_BYTES:,} bytes of files; send "
                           f"{path!r} and the files after it in another batch")
        start = end + 1
        if start + size > len(body):
            raise Invalid(f"batch framing: file {number} ({path!r}) announces {size:,} bytes "
                          f"but only {len(body) - start:,} follow")
        entries.append(BatchEntry(path, size, header["mtime"], header["sha256"],
                                  view[start:start + size]))
        position = start + size
    if not entries:
        raise Invalid("the batch is empty; send at least one file")
    return entries


def _batch_header(line: bytes, number: int) -> dict:
    def bad(why: str) -> Invalid:
        return Invalid(f"batch framing: file {number}: {why}")

    try:
        header = json.loads(line)
    except ValueError:
        raise bad("the header line is not JSON") from None
    if not isinstance(header, dict):
        raise bad('the header line must be a JSON object {"path", "size", "mtime", "sha256"}')
    path, size = header.get("path"), header.get("size")
    mtime, sha256 = header.get("mtime"), header.get("sha256")
    if not isinstance(path, str) or not path:
        raise bad('"path" must be the file\'s path relative to the session folder')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad(f'{path!r}: "size" must be the file\'s size in bytes (0 or more)')
    if not isinstance(mtime, int | float) or isinstance(mtime, bool) \
            or not math.isfinite(mtime):
        raise bad(f'{path!r}: "mtime" must be the modification time in seconds')
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise bad(f'{path!r}: "sha256" must be 64 hexadecimal digits or null')
    return {"path": path, "size": size, "mtime": float(mtime),
            "sha256": sha256.lower() if sha256 else None}
