"""Resumable uploads for large files (SPEC WS-10), in the manner of tus:

1. `POST /uploads {"parent_id", "name", "size", "sha256"?}` → 201 with `id` and `offset` 0;
2. `PATCH /uploads/{id}` with `Upload-Offset: <offset>` (or `Content-Range: bytes a-b/size`)
   and the next bytes as the raw body → the new `offset`; after an interruption,
   `GET`/`HEAD /uploads/{id}` tells where to resume;
3. the chunk that brings `offset` to `size` completes the upload: the answer carries `file`,
   the new File element. `DELETE /uploads/{id}` cancels.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from cryovault.access.actor import Actor
from cryovault.errors import Invalid
from cryovault.storage import uploads as service
from cryovault.web.api.file_schemas import UploadIn, UploadList, UploadOut
from cryovault.web.api.schemas import parse_id
from cryovault.web.body_stream import pump
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["uploads"])
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _offset_of(request: Request) -> int:
    offset = request.headers.get("upload-offset")
    if offset is not None:
        if not offset.strip().isdigit():
            raise Invalid("Upload-Offset must be a non-negative whole number of bytes")
        return int(offset)
    content_range = request.headers.get("content-range")
    if content_range is not None:
        match = _CONTENT_RANGE.match(content_range.strip())
        if match is None:
            raise Invalid("Content-Range must read 'bytes <first>-<last>/<size>'")
        return int(match.group(1))
    raise Invalid("say where this chunk starts: Upload-Offset: <offset> (or Content-Range)")


def _answer(state: service.UploadState, status: int = 200) -> JSONResponse:
    body = UploadOut.of(state.upload, state.file)
    return JSONResponse(body.model_dump(mode="json"), status_code=status,
                        headers={"Upload-Offset": str(state.upload.offset_bytes),
                                 "Upload-Length": str(state.upload.size_bytes)})


@router.post("/uploads", response_model=UploadOut, status_code=201)
def create_upload(body: UploadIn, request: Request, actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    upload = service.create_upload(
        db, actor, request.app.state.settings, request.app.state.storages,
        parent_id=body.parent_id, name=body.name, size_bytes=body.size, sha256=body.sha256)
    if upload.size_bytes == 0:  # nothing to send: complete at once
        state = service.finish_if_complete(db, actor, request.app.state.settings,
                                           request.app.state.storages, upload)
        return _answer(state, 201)
    return _answer(service.UploadState(upload), 201)


@router.get("/uploads", response_model=UploadList, summary="Your unfinished uploads")
def list_uploads(actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    return UploadList(items=[UploadOut.of(u) for u in service.list_uploads(db, actor)])


@router.api_route("/uploads/{upload_id}", methods=["GET", "HEAD"], response_model=UploadOut)
def get_upload(upload_id: str, actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    upload = service.get_upload(db, actor, parse_id(upload_id, "upload"))
    return _answer(service.UploadState(upload))


@router.patch("/uploads/{upload_id}", response_model=UploadOut,
              summary="Send the next bytes (raw body) from Upload-Offset")
async def send_chunk(upload_id: str, request: Request, actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    settings = request.app.state.settings
    offset = _offset_of(request)
    upload = await run_in_threadpool(service.get_upload, db, actor, parse_id(upload_id, "upload"))
    writer = await run_in_threadpool(service.ChunkWriter, settings, upload, offset)
    await run_in_threadpool(db.commit)  # no transaction stays open while the bytes travel
    disconnected = False
    try:
        await pump(request.stream(), lambda block: run_in_threadpool(writer.write, block),
                   keep_partial=True)
    except ClientDisconnect:
        disconnected = True  # keep what arrived: the client resumes from the new offset
    finally:
        new_offset = await run_in_threadpool(writer.close)
        await run_in_threadpool(service.record_offset, db, upload, offset, new_offset)
        await run_in_threadpool(db.commit)
    if disconnected:
        return Response(status_code=400)
    state = await run_in_threadpool(service.finish_if_complete, db, actor, settings,
                                    request.app.state.storages, upload)
    return _answer(state)


@router.delete("/uploads/{upload_id}", status_code=204, summary="Cancel an upload")
def cancel_upload(upload_id: str, request: Request, actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    service.cancel_upload(db, actor, request.app.state.settings, parse_id(upload_id, "upload"))
    return Response(status_code=204)
