"""Checked copies between storages (SPEC OPS-3): the kernel copy between local storages and
the streamed copy otherwise give the same bytes, and a copy whose bytes differ from the
registered SHA-256 leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cryovault.storage.backends import LocalStorage
from cryovault.storage.checksums import ChecksumMismatch
from cryovault.storage.transfer import COPY_BLOCK_BYTES, copy_verified


@pytest.fixture
def storages(tmp_path: Path) -> tuple[LocalStorage, LocalStorage]:
    return (LocalStorage("primary", "primary", tmp_path / "primary"),
            LocalStorage("export", "export", tmp_path / "export"))


def put(storage: LocalStorage, key: str, data: bytes) -> None:
    staged = storage.stage()
    staged.write(data)
    staged.commit(key)


@pytest.mark.parametrize("size", [0, 1, COPY_BLOCK_BYTES, 2 * COPY_BLOCK_BYTES + 12345])
def test_kernel_copy_between_local_storages(storages, size):
    source, target = storages
    data = os.urandom(size)
    put(source, "files/a", data)
    seen: list[int] = []
    copy_verified(source, "files/a", target, "out/a", sha256=hashlib.sha256(data).hexdigest(),
                  size_bytes=size, progress=seen.append)
    assert target.path_of("out/a").read_bytes() == data
    assert seen == sorted(seen) and (not seen or seen[-1] == size)


def test_streamed_copy_when_the_source_is_not_local(storages, monkeypatch):
    source, target = storages
    data = os.urandom(COPY_BLOCK_BYTES + 7)
    put(source, "files/a", data)
    monkeypatch.setattr(source, "local_path", lambda key: None)
    copy_verified(source, "files/a", target, "out/a", sha256=hashlib.sha256(data).hexdigest(),
                  size_bytes=len(data))
    assert target.path_of("out/a").read_bytes() == data


@pytest.mark.parametrize("local", [True, False])
def test_a_mismatch_leaves_nothing(storages, monkeypatch, local):
    source, target = storages
    data = os.urandom(3 * 1024 * 1024)
    put(source, "files/a", data)
    if not local:
        monkeypatch.setattr(source, "local_path", lambda key: None)
    # the last byte changed (never equal to the original: random data may end in any byte)
    registered = hashlib.sha256(data[:-1] + bytes([data[-1] ^ 0xFF])).hexdigest()
    with pytest.raises(ChecksumMismatch, match="nothing was copied"):
        copy_verified(source, "files/a", target, "out/a", sha256=registered,
                      size_bytes=len(data))
    with pytest.raises(ChecksumMismatch):
        copy_verified(source, "files/a", target, "out/b",
                      sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data) + 1)
    assert not [p for p in target.root.rglob("*") if p.is_file()]
