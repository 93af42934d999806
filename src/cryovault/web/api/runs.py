"""Acquisition runs (SPEC SPA-1, SPA-2, ET-1): instruments register files; scripts and the
portal read micrographs, tilt series and their files."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cryovault.access.actor import Actor
from cryovault.errors import Invalid, TooLarge
from cryovault.ingest import batch_framing, batch_registry, registry
from cryovault.ingest import items as service
from cryovault.storage.checksums import HashingWriter
from cryovault.storage.ranges import RangeNotSatisfiable, parse_range
from cryovault.web.api.files import INLINE_SAFE, content_disposition
from cryovault.web.api.run_schemas import (
    IngestBatchFileOut,
    IngestBatchOut,
    IngestOut,
    MicrographDetail,
    MicrographOut,
    MicrographPage,
    RunFileOut,
    RunFilePage,
    TiltOut,
    TiltSeriesDetail,
    TiltSeriesOut,
    TiltSeriesPage,
)
from cryovault.web.api.schemas import parse_id
from cryovault.web.body_stream import pump
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["runs"])


def _header_number(request: Request, name: str, kind: type) -> float | int:
    raw = request.headers.get(name)
    if raw is None:
        raise Invalid(f"give the {name} header (the file's "
                      f"{'size in bytes' if kind is int else 'modification time in seconds'})")
    try:
        value = kind(raw)
    except ValueError:
        raise Invalid(f"{name} must be a number, not {raw[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"{name} must be a finite number")
    return value


@router.put("/datasets/{dataset_id}/ingest/files/{relative_path:path}", response_model=IngestOut,
            status_code=201, summary="Register one file of an EPU or tomography session",
            responses={200: {"model": IngestOut, "description": "already registered"}})
async def ingest_file(dataset_id: str, relative_path: str, request: Request,
                      actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    settings, storages = request.app.state.settings, request.app.state.storages
    source_size = int(_header_number(request, "X-Source-Size", int))
    source_mtime = float(_header_number(request, "X-Source-Mtime", float))
    if source_size > settings.max_upload_bytes:
        raise TooLarge(f"the file is {source_size:,} bytes; uploads are limited to "
                       f"{settings.max_upload_bytes:,} bytes on this platform")
    target = await run_in_threadpool(
        registry.check_ingest_target, db, actor, parse_id(dataset_id, "dataset"),
        request.headers.get("X-Session", ""), relative_path, source_size, source_mtime)
    await run_in_threadpool(db.commit)  # no transaction stays open while the bytes travel
    if isinstance(target, registry.IngestResult):
        return JSONResponse(IngestOut.of(target).model_dump(mode="json"), status_code=200)
    staged = await run_in_threadpool(storages.primary.stage)
    writer = HashingWriter(staged)

    def write(pieces: list[bytes]) -> None:
        if writer.size_bytes + sum(map(len, pieces)) > source_size:
            raise Invalid(f"{relative_path}: more bytes arrived than X-Source-Size "
                          f"({source_size:,}) announced; the file changed while it was sent")
        writer.write(pieces)

    try:
        await pump(request.stream(), lambda block: run_in_threadpool(write, block))
        if writer.size_bytes != source_size:
            raise Invalid(f"{relative_path}: {writer.size_bytes:,} bytes arrived but "
                          f"X-Source-Size announced {source_size:,}; send the file again")
        announced = request.headers.get("X-Content-SHA256")
        if announced and announced.lower() != writer.sha256:
            raise Invalid(f"{relative_path}: the bytes that arrived do not match "
                          "X-Content-SHA256; send the file again")
        result = await run_in_threadpool(registry.register_run_file, db, actor, storages,
                                         target, staged, writer.sha256, writer.size_bytes)
        await run_in_threadpool(db.commit)
    except BaseException:
        await run_in_threadpool(staged.abort)
        raise
    body = IngestOut.of(result).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if result.status == "registered" else 200)


@router.post("/datasets/{dataset_id}/ingest/batch", response_model=IngestBatchOut,
             summary="Register many small files of an EPU or tomography session at once",
             description="Each file is registered as by the PUT of one file, on its own: a "
                         "conflict or a refusal of one file (results' `status` conflict | "
                         "refused, with `detail`) does not fail the others. 401/403/404 for the "
                         "dataset fail the whole request. Body (application/octet-stream): "
                         + batch_framing.BATCH_FRAMING)
async def ingest_batch(dataset_id: str, request: Request,
                       actor: Actor = Depends(current_actor),
                       db: Session = Depends(get_db, scope="function")):
    storages = request.app.state.storages
    batch = await run_in_threadpool(batch_registry.open_batch, db, actor,
                                    parse_id(dataset_id, "dataset"),
                                    request.headers.get("X-Session", ""))
    await run_in_threadpool(db.commit)  # no transaction stays open while the bytes travel
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > batch_framing.MAX_BATCH_BODY_BYTES:
        raise TooLarge(f"the batch is {int(declared):,} bytes; a batch is limited to "
                       f"{batch_framing.MAX_BATCH_BODY_BYTES:,} bytes with its header lines")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > batch_framing.MAX_BATCH_BODY_BYTES:
            raise TooLarge(f"a batch is limited to {batch_framing.MAX_BATCH_BODY_BYTES:,} bytes "
                           "with its header lines")
    entries = batch_framing.parse_batch(bytes(body))
    outcomes = await run_in_threadpool(batch_registry.register_batch, db, storages, batch, entries)
    return IngestBatchOut(results=[IngestBatchFileOut.of(outcome) for outcome in outcomes])


@router.get("/datasets/{dataset_id}/ingest/files", response_model=RunFilePage,
            summary="Files registered in a run (what a restarted watcher may skip)")
def list_ingest_files(dataset_id: str, session: str | None = Query(default=None),
                      limit: int = Query(default=1000), cursor: str | None = None,
                      actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    rows, next_cursor = service.list_run_files(db, actor, parse_id(dataset_id, "dataset"),
                                               session=session, limit=limit, cursor=cursor)
    return RunFilePage(items=[RunFileOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/datasets/{dataset_id}/micrographs", response_model=MicrographPage,
            summary="Micrographs of an EPU run, in acquisition order, with counts by status")
def list_micrographs(dataset_id: str, status: str | None = Query(default=None),
                     limit: int = Query(default=100), cursor: str | None = None,
                     actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    page = service.list_micrographs(db, actor, parse_id(dataset_id, "dataset"), status=status,
                                    limit=limit, cursor=cursor)
    return MicrographPage(items=[MicrographOut.of(row) for row in page.items], total=page.total,
                          counts=page.counts, next_cursor=page.next_cursor)


@router.get("/datasets/{dataset_id}/micrographs/{micrograph_id}",
            response_model=MicrographDetail)
def get_micrograph(dataset_id: str, micrograph_id: str, actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    micrograph, files = service.get_micrograph(db, actor, parse_id(dataset_id, "dataset"),
                                               parse_id(micrograph_id, "micrograph"))
    return MicrographDetail(**MicrographOut.of(micrograph).model_dump(),
                            files=[RunFileOut.of(row) for row in files])


@router.get("/datasets/{dataset_id}/tilt-series", response_model=TiltSeriesPage,
            summary="Tilt series of a Tomo run, in acquisition order, with counts by status")
def list_tilt_series(dataset_id: str, status: str | None = Query(default=None),
                     limit: int = Query(default=100), cursor: str | None = None,
                     actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    page = service.list_tilt_series(db, actor, parse_id(dataset_id, "dataset"), status=status,
                                    limit=limit, cursor=cursor)
    return TiltSeriesPage(items=[TiltSeriesOut.of(row) for row in page.items], total=page.total,
                          counts=page.counts, next_cursor=page.next_cursor)


@router.get("/datasets/{dataset_id}/tilt-series/{series_id}", response_model=TiltSeriesDetail)
def get_tilt_series(dataset_id: str, series_id: str, actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    series, tilts, files = service.get_tilt_series(db, actor, parse_id(dataset_id, "dataset"),
                                                   parse_id(series_id, "tilt series"))
    return TiltSeriesDetail(**TiltSeriesOut.of(series).model_dump(),
                            tilts=[TiltOut.of(tilt) for tilt in tilts],
                            files=[RunFileOut.of(row) for row in files])


@router.get("/run-files/{file_id}", response_model=RunFileOut)
def get_run_file(file_id: str, actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    return RunFileOut.of(service.get_run_file(db, actor, parse_id(file_id, "file")).file)


@router.get("/run-files/{file_id}/content", summary="The bytes of a run's file (Range supported)")
def run_file_content(file_id: str, request: Request, inline: bool = Query(default=False),
                     actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    view, storage = service.open_run_file(db, actor, request.app.state.storages,
                                          parse_id(file_id, "file"))
    row = view.file
    media_type, disposition = row.media_type, "attachment"
    if inline and media_type in INLINE_SAFE:
        disposition = "inline"
    elif inline:
        media_type = "application/octet-stream"
    etag = f'"{row.sha256}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "private, no-cache",
               "X-Content-Type-Options": "nosniff",
               "Content-Disposition": content_disposition(
                   disposition, row.relative_path.rsplit("/", 1)[-1])}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        wanted = parse_range(request.headers.get("range"), row.size_bytes)
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={**headers,
                                                  "Content-Range": f"bytes */{exc.size}"})
    if wanted is None:
        return StreamingResponse(storage.read(row.key), media_type=media_type,
                                 headers={**headers, "Content-Length": str(row.size_bytes)})
    return StreamingResponse(
        storage.read(row.key, wanted.start, wanted.length), status_code=206,
        media_type=media_type, headers={
            **headers, "Content-Length": str(wanted.length),
            "Content-Range": f"bytes {wanted.start}-{wanted.end}/{row.size_bytes}"})
