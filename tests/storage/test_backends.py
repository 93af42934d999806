"""The storage contract, on a local directory and on a real S3-compatible server."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cryovault.errors import Invalid
from cryovault.settings import Settings, StorageConfig
from cryovault.storage.backends import LocalStorage, open_storage
from cryovault.storage.cleanup import run_cleanup
from cryovault.web.app import create_app
from tests.conftest import add_user


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage("primary", StorageConfig(url=str(tmp_path / "store")))
    return open_storage("primary", request.getfixturevalue("s3_config"))


def test_staged_write_is_invisible_until_committed(storage):
    data = os.urandom(100_000)
    staged = storage.stage()
    staged.write(data[:50_000])
    staged.write(memoryview(data)[50_000:])
    assert storage.size("files/aa/x/a.bin") is None
    assert len(list(storage.walk("tmp"))) in (0, 1)  # S3: a multipart upload is not listed yet
    staged.commit("files/aa/x/a.bin")
    assert storage.size("files/aa/x/a.bin") == len(data)
    assert b"".join(storage.read("files/aa/x/a.bin")) == data
    assert b"".join(storage.read("files/aa/x/a.bin", 10, 20)) == data[10:30]
    assert b"".join(storage.read("files/aa/x/a.bin", 99_990)) == data[99_990:]
    assert list(storage.walk("tmp")) == []
    listed = list(storage.walk("files"))
    assert [(o.key, o.size_bytes) for o in listed] == [("files/aa/x/a.bin", len(data))]
    assert abs(listed[0].modified_at - datetime.now(UTC)) < timedelta(minutes=5)
    storage.delete("files/aa/x/a.bin")
    assert storage.size("files/aa/x/a.bin") is None
    storage.delete("files/aa/x/a.bin")  # deleting twice is harmless


def test_abort_leaves_nothing(storage):
    staged = storage.stage()
    staged.write(b"half")
    staged.abort()
    staged.abort()
    assert list(storage.walk("tmp")) == []


def test_put_local_file(storage, tmp_path):
    source = tmp_path / "upload.part"
    source.write_bytes(b"complete upload")
    storage.put_local_file(source, "files/bb/y/z.mrc")
    assert not source.exists()
    assert b"".join(storage.read("files/bb/y/z.mrc")) == b"complete upload"
    assert list(storage.walk("tmp")) == []


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "a/./b", "",
                                 "a\x00b", "a\\b"])
def test_keys_never_leave_the_root(storage, key):
    with pytest.raises(Invalid):
        storage.size(key)


def test_symlink_out_of_a_local_root_is_refused(tmp_path):
    storage = LocalStorage("primary", "primary", tmp_path / "root")
    (tmp_path / "outside").mkdir()
    (storage.root / "files").symlink_to(tmp_path / "outside")
    with pytest.raises(Invalid, match="outside"):
        storage.size("files/secret")


def test_usage(storage):
    usage = storage.usage()
    if isinstance(storage, LocalStorage):
        assert usage.total_bytes and usage.free_bytes is not None
    else:
        staged = storage.stage()
        staged.write(b"x" * 1234)
        staged.commit("files/cc/z/a")
        assert storage.usage().used_bytes == 1234
        assert usage.total_bytes is None


def test_upload_download_and_zip_through_the_api_on_s3(s3_config, database_url, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=database_url, auto_upgrade=False,
                        storages={"primary": s3_config})
    app = create_app(settings, resume_jobs=False)
    with TestClient(app) as client:
        alice = add_user(app.state.sessions, client, "alice")
        workflow = alice.create("workflow", "W", workflow_type="free")
        step = alice.create("step", "S", workflow["id"])
        data = os.urandom(6 * 1024 * 1024 + 5)
        response = alice.post(f"/api/v1/elements/{step['id']}/files",
                              files={"file": ("stack.mrcs", io.BytesIO(data))})
        assert response.status_code == 201, response.text
        file = response.json()
        assert file["file"]["storage"] == "primary"
        assert file["file"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert alice.get(f"/api/v1/files/{file['id']}/content").content == data
        ranged = alice.get(f"/api/v1/files/{file['id']}/content",
                           headers={"Range": "bytes=1000-1999"})
        assert ranged.status_code == 206 and ranged.content == data[1000:2000]
        # resumable upload into S3
        up = alice.post("/api/v1/uploads", json={"parent_id": step["id"], "name": "b.bin",
                                                 "size": 3}).json()
        done = alice.patch(f"/api/v1/uploads/{up['id']}", content=b"abc",
                           headers={"Upload-Offset": "0"}).json()
        assert alice.get(f"/api/v1/files/{done['file']['id']}/content").content == b"abc"
        archive = zipfile.ZipFile(io.BytesIO(
            alice.get("/api/v1/zip", params={"ids": step["id"]}).content))
        assert archive.read("S/stack.mrcs") == data and archive.read("S/b.bin") == b"abc"
        assert alice.post(f"/api/v1/files/{file['id']}/verify").json()["file"]["integrity"] == (
            "ok")
        # the viewer reads a local copy of an object, checked against the recorded checksum
        image = io.BytesIO()
        Image.fromarray(np.eye(64, dtype=np.uint8) * 255).save(image, format="PNG")
        png = alice.post(f"/api/v1/elements/{step['id']}/files", params={"name": "atlas.png"},
                         content=image.getvalue()).json()
        preview = alice.get(f"/api/v1/files/{png['id']}/preview")
        assert preview.status_code == 200 and preview.json()["width"] == 64
        storage = app.state.storages.primary
        assert list(storage.walk("tmp")) == []
        # deletion removes the bytes from the bucket
        alice.delete(f"/api/v1/elements/{workflow['id']}")
        assert list(storage.walk("files")) == []
        report = run_cleanup(app.state.sessions, settings, app.state.storages)
        assert report.orphans_removed == 0
    app.state.engine.dispose()
