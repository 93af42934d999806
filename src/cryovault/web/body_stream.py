"""Request bodies read as they arrive, never held whole: a raw body, or the `file` part of a
multipart/form-data body parsed incrementally with python-multipart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from cryovault.errors import Invalid

FLUSH_BYTES = 8 * 1024 * 1024  # hand bytes to the writer thread in blocks of this size


async def pump(chunks: AsyncIterator[bytes], write: Callable[[list[bytes]], Awaitable[None]],
               *, keep_partial: bool = False) -> None:
    """Pass the chunks to `write` in lists of about FLUSH_BYTES (fewer thread hops).

    One block is written while the next one arrives (at most one write in flight, so memory
    stays at two blocks), so the network and the disk work at the same time. With
    `keep_partial`, what arrived before the client went away is still written (a resumable
    upload keeps it); the disconnection is then raised."""
    pending: list[bytes] = []
    pending_bytes = 0
    in_flight: asyncio.Task[None] | None = None

    async def hand_over() -> None:
        nonlocal pending, pending_bytes, in_flight
        block, pending, pending_bytes = pending, [], 0
        if in_flight is not None:
            await in_flight
        in_flight = asyncio.ensure_future(write(block))

    try:
        try:
            async for chunk in chunks:
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= FLUSH_BYTES:
                    await hand_over()
        except ClientDisconnect:
            if keep_partial and pending:
                await hand_over()
            raise
        if pending:
            await hand_over()
    finally:
        if in_flight is not None:
            # Always wait for the write in flight: its error, if any, is the one to report.
            await in_flight


class FilePart:
    """The `file` field of a multipart body, streamed: `filename` is known after the part's
    headers; `chunks()` yields its bytes only."""

    def __init__(self, request: Request) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise Invalid("send the file as multipart/form-data with a field named 'file'")
        self._request = request
        self._pending: list[bytes] = []
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._file_seen = False
        self._done = False
        self.filename: str | None = None
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        })

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self._file_seen:
            self._in_file = True
            self._file_seen = True
            raw = options.get(b"filename", b"")
            self.filename = raw.decode("utf-8", "replace")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._done = True

    async def first_chunks(self) -> None:
        """Read until the file part's headers are parsed (so that `filename` is known)."""
        self._stream = self._request.stream()
        async for chunk in self._stream:
            self._parser.write(chunk)
            if self._file_seen:
                return
        raise Invalid("the multipart body has no field named 'file'")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._pending:
                pending, self._pending = self._pending, []
                for piece in pending:
                    yield piece
            if self._done:
                return
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                raise Invalid("the multipart body ended before the end of the file part "
                              "(was the upload interrupted?)") from None
            self._parser.write(chunk)
