"""Resumable uploads, and uploads cut off midway (SPEC WS-10: nothing partial is registered)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid

import pytest

from cryovault.db.files import Upload
from tests.helpers import assert_error
from tests.live_server import live_server
from tests.storage.test_files_api import dataset  # noqa: F401 (fixture)


def start(user, parent: str, name: str, size: int, **extra):
    response = user.post("/api/v1/uploads", json={"parent_id": parent, "name": name,
                                                  "size": size, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def send(user, upload_id: str, offset: int, data: bytes, **headers):
    return user.patch(f"/api/v1/uploads/{upload_id}", content=data,
                      headers={"Upload-Offset": str(offset), **headers})


def test_chunked_upload_completes_with_the_right_checksum(alice, dataset, app):  # noqa: F811
    data = os.urandom(5 * 1024 * 1024 + 3)
    upload = start(alice, dataset["id"], "TS_01.mrc", len(data),
                   sha256=hashlib.sha256(data).hexdigest())
    assert upload["offset"] == 0 and upload["file"] is None
    cut = [0, 1024 * 1024, 3 * 1024 * 1024, len(data)]
    for first, last in zip(cut, cut[1:], strict=False):
        response = send(alice, upload["id"], first, data[first:last])
        assert response.status_code == 200, response.text
        assert response.headers["upload-offset"] == str(last)
    body = response.json()
    assert body["offset"] == len(data)
    file = body["file"]
    assert file["name"] == "TS_01.mrc" and file["parent_id"] == dataset["id"]
    assert file["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert alice.get(f"/api/v1/files/{file['id']}/content").content == data
    # the upload is gone once complete, and so are its staged bytes
    assert_error(alice.get(f"/api/v1/uploads/{upload['id']}"), 404)
    assert list(app.state.settings.uploads_dir.iterdir()) == []


def test_content_range_and_resume_after_restart(alice, dataset, app):  # noqa: F811
    from cryovault.storage import uploads

    data = os.urandom(300_000)
    upload = start(alice, dataset["id"], "a.eer", len(data))
    response = alice.patch(f"/api/v1/uploads/{upload['id']}", content=data[:100_000],
                           headers={"Content-Range": f"bytes 0-99999/{len(data)}"})
    assert response.json()["offset"] == 100_000
    uploads._HASHES.clear()  # as after a restart: the checksum is computed from the staged part
    assert alice.get(f"/api/v1/uploads/{upload['id']}").json()["offset"] == 100_000
    listed = alice.get("/api/v1/uploads").json()["items"]
    assert [u["id"] for u in listed] == [upload["id"]]
    done = send(alice, upload["id"], 100_000, data[100_000:]).json()
    assert done["file"]["file"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_wrong_offsets_sizes_and_checksums(alice, bob, dataset, app):  # noqa: F811
    upload = start(alice, dataset["id"], "a.bin", 10)
    assert_error(send(alice, upload["id"], 5, b"xxxxx"), 409, "offset 0")
    assert_error(alice.patch(f"/api/v1/uploads/{upload['id']}", content=b"x"), 422,
                 "Upload-Offset")
    assert_error(send(alice, upload["id"], 0, b"x" * 11), 413, "announced")
    # someone else's upload does not exist for them
    assert_error(send(bob, upload["id"], 0, b"x"), 404)
    assert_error(bob.delete(f"/api/v1/uploads/{upload['id']}"), 404)
    # a checksum that does not match: discarded, nothing registered
    bad = start(alice, dataset["id"], "b.bin", 4, sha256="0" * 64)
    assert_error(send(alice, bad["id"], 0, b"abcd"), 422, "SHA-256")
    assert_error(alice.get(f"/api/v1/uploads/{bad['id']}"), 404)
    assert [c["name"] for c in alice.children(dataset["id"])] == []
    assert_error(alice.post("/api/v1/uploads", json={"parent_id": dataset["id"], "name": "c",
                                                     "size": 1, "sha256": "xyz"}), 422, "sha256")
    app.state.settings.max_upload_bytes = 100
    assert_error(alice.post("/api/v1/uploads", json={"parent_id": dataset["id"], "name": "c",
                                                     "size": 101}), 413, "limited")
    assert_error(alice.post("/api/v1/uploads", json={"parent_id": dataset["id"], "name": "c",
                                                     "size": -1}), 422)


def test_cancel_removes_staged_bytes(alice, dataset, app):  # noqa: F811
    upload = start(alice, dataset["id"], "a.bin", 10)
    send(alice, upload["id"], 0, b"12345")
    assert len(list(app.state.settings.uploads_dir.iterdir())) == 1
    assert alice.delete(f"/api/v1/uploads/{upload['id']}").status_code == 204
    assert list(app.state.settings.uploads_dir.iterdir()) == []
    assert_error(alice.get(f"/api/v1/uploads/{upload['id']}"), 404)


def test_empty_file_completes_at_once(alice, dataset):  # noqa: F811
    upload = start(alice, dataset["id"], "empty.txt", 0)
    assert upload["file"]["file"]["size_bytes"] == 0


def test_parent_deleted_during_upload(alice, dataset, app):  # noqa: F811
    upload = start(alice, dataset["id"], "a.bin", 4)
    workflow_id = alice.get(f"/api/v1/elements/{dataset['id']}/path").json()[0]["id"]
    alice.delete(f"/api/v1/elements/{workflow_id}")
    assert_error(alice.get(f"/api/v1/uploads/{upload['id']}"), 404)


# --- transfers cut off midway, on a real server -------------------------------------------


def _cut_off(url: str, token: str, path: str, headers: dict[str, str], announced: int,
             body: bytes, before_hanging_up=lambda: True) -> None:
    """Send the request head announcing `announced` bytes, then only `body`, then hang up
    (once `before_hanging_up()` is true: the server is in the middle of the transfer)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = [f"{path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}",
                f"Content-Length: {announced}", *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        _wait_for(before_hanging_up)


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_killed_upload_leaves_nothing(alice, dataset, app, form):  # noqa: F811
    storage = app.state.storages.primary
    with live_server(app) as url:
        if form == "raw":
            path = f"POST /api/v1/elements/{dataset['id']}/files?name=big.bin"
            headers = {"Content-Type": "application/octet-stream"}
            body = os.urandom(3 * 1024 * 1024)
        else:
            boundary = "cvboundary"
            path = f"POST /api/v1/elements/{dataset['id']}/files"
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    ).encode() + os.urandom(3 * 1024 * 1024)
        _cut_off(url, alice.token, path, headers, 20 * 1024 * 1024, body,
                 before_hanging_up=lambda: list(storage.walk("tmp")) != [])
        # the server notices the disconnection and drops the staged bytes
        _wait_for(lambda: list(storage.walk("tmp")) == [])
    assert alice.children(dataset["id"]) == []
    assert list(storage.walk("files")) == []


def test_killed_chunk_keeps_what_arrived_and_resumes(alice, dataset, app):  # noqa: F811
    data = os.urandom(2 * 1024 * 1024)
    upload = start(alice, dataset["id"], "movie.tiff", len(data))
    with live_server(app) as url:
        _cut_off(url, alice.token, f"PATCH /api/v1/uploads/{upload['id']}",
                 {"Upload-Offset": "0"}, len(data), data[:700_000])

        def arrived() -> bool:
            with app.state.sessions() as db:
                return db.get(Upload, uuid.UUID(upload["id"])).offset_bytes == 700_000

        _wait_for(arrived)
    assert alice.children(dataset["id"]) == []  # nothing registered yet
    offset = alice.get(f"/api/v1/uploads/{upload['id']}").json()["offset"]
    done = send(alice, upload["id"], offset, data[offset:]).json()
    assert done["file"]["file"]["sha256"] == hashlib.sha256(data).hexdigest()
