"""Files (SPEC WS-10, OPS-3): streamed upload, download with ranges, zips, checksum checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cryovault.access.actor import Actor
from cryovault.errors import Invalid, TooLarge
from cryovault.storage import files as service
from cryovault.storage.checksums import ChecksumMismatch, HashingWriter, verified
from cryovault.storage.ranges import RangeNotSatisfiable, parse_range
from cryovault.storage.zips import zip_stream
from cryovault.web.api.file_schemas import FileOut
from cryovault.web.api.schemas import parse_id
from cryovault.web.body_stream import FilePart, pump
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["files"])

# Served inline (in the browser) only when asked and only for types that cannot run script.
INLINE_SAFE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff",
                         "application/pdf", "text/plain", "text/csv", "application/json"})


def content_disposition(kind: str, name: str) -> str:
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.post("/elements/{element_id}/files", response_model=FileOut, status_code=201,
             summary="Upload a file (multipart field 'file', or a raw body with ?name=)")
async def upload_file(element_id: str, request: Request,
                      name: str | None = Query(default=None, max_length=10_000,
                                               description="file name (raw bodies)"),
                      actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    parent_id = parse_id(element_id)
    settings = request.app.state.settings
    storages = request.app.state.storages
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 65536:
        raise TooLarge(f"the body is {int(declared):,} bytes; uploads are limited to "
                       f"{settings.max_upload_bytes:,} bytes on this platform")
    if request.headers.get("content-type", "").startswith("multipart/"):
        part = FilePart(request)
        await part.first_chunks()
        filename, chunks = name or part.filename, part.chunks()
    else:
        if not name:
            raise Invalid("give the file's name: ?name=<file name>, or send multipart/form-data "
                          "with a field named 'file'")
        filename, chunks = name, request.stream()
    target = await run_in_threadpool(service.check_file_target, db, actor, parent_id,
                                     filename or "")
    await run_in_threadpool(db.commit)  # no transaction stays open while the bytes travel
    staged = await run_in_threadpool(storages.primary.stage)
    writer = HashingWriter(staged)

    def write(pieces: list[bytes]) -> None:
        if writer.size_bytes + sum(map(len, pieces)) > settings.max_upload_bytes:
            raise TooLarge(f"uploads are limited to {settings.max_upload_bytes:,} bytes")
        writer.write(pieces)

    try:
        await pump(chunks, lambda block: run_in_threadpool(write, block))
        file = await run_in_threadpool(service.register_file, db, actor, storages, target,
                                       staged, writer.sha256, writer.size_bytes)
    except BaseException:
        # A client that went away, a rule broken meanwhile, a full disk: nothing is registered
        # and the staged bytes go.
        await run_in_threadpool(staged.abort)
        raise
    return FileOut.of_file(file)


@router.get("/files/{file_id}", response_model=FileOut)
def get_file(file_id: str, actor: Actor = Depends(current_actor),
             db: Session = Depends(get_db, scope="function")):
    return FileOut.of_file(service.get_file(db, actor, parse_id(file_id, "file")))


def _flagger(request: Request, element_id: uuid.UUID):
    def flag() -> None:
        with request.app.state.sessions() as db:
            service.flag_file(db, element_id, service.INTEGRITY_MISMATCH)
            db.commit()
    return flag


def _checked(chunks: Iterator[bytes], sha256: str, size: int, on_mismatch) -> Iterator[bytes]:
    try:
        yield from verified(chunks, sha256, size)
    except ChecksumMismatch:
        on_mismatch()
        raise


@router.get("/files/{file_id}/content",
            summary="The bytes of a file (Range: bytes=… answers 206 Partial Content)")
def file_content(file_id: str, request: Request,
                 inline: bool = Query(default=False, description="show in the browser"),
                 actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    storages = request.app.state.storages
    file, storage = service.open_file_for_reading(db, actor, storages, parse_id(file_id, "file"))
    stored = file.stored
    etag = f'"{stored.sha256}"'
    media_type = stored.media_type
    disposition = "attachment"
    if inline and media_type in INLINE_SAFE:
        disposition = "inline"
    elif inline:
        media_type = "application/octet-stream"
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "private, no-cache",
               "X-Content-Type-Options": "nosniff",
               "Content-Disposition": content_disposition(disposition, file.name)}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:
        range_header = None
    try:
        wanted = parse_range(range_header, stored.size_bytes)
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={**headers,
                                                  "Content-Range": f"bytes */{exc.size}"})
    if wanted is None:
        body = _checked(storage.read(stored.key), stored.sha256, stored.size_bytes,
                        _flagger(request, file.id))
        return StreamingResponse(body, media_type=media_type, headers={
            **headers, "Content-Length": str(stored.size_bytes)})
    return StreamingResponse(
        storage.read(stored.key, wanted.start, wanted.length), status_code=206,
        media_type=media_type, headers={
            **headers, "Content-Length": str(wanted.length),
            "Content-Range": f"bytes {wanted.start}-{wanted.end}/{stored.size_bytes}"})


@router.post("/files/{file_id}/verify", response_model=FileOut,
             summary="Read the whole file and compare with the SHA-256 recorded at upload")
def verify_file(file_id: str, request: Request, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    file = service.verify_file(db, actor, request.app.state.storages,
                               parse_id(file_id, "file"))
    return FileOut.of_file(file)


@router.get("/zip", summary="Several files, or everything below datasets/steps, as one zip")
def download_zip(request: Request,
                 ids: list[str] = Query(description="element ids (repeat, or comma-separated)"),
                 actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    element_ids = [parse_id(part.strip()) for value in ids for part in value.split(",")
                   if part.strip()]
    if len(element_ids) > 10_000:
        raise Invalid("choose at most 10,000 elements per download")
    entries = service.files_for_download(db, actor, element_ids)
    tops = {entry.path.split("/", 1)[0] for entry in entries}
    name = f"{next(iter(tops))}.zip" if len(tops) == 1 else f"cryovault-{len(tops)}-items.zip"
    return StreamingResponse(
        zip_stream(entries, request.app.state.storages), media_type="application/zip",
        headers={"Content-Disposition": content_disposition("attachment", name),
                 "X-Content-Type-Options": "nosniff"})
