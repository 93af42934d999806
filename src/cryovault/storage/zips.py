"""Several files as one streamed zip: stored (no compression — micrographs do not compress),
ZIP64 for large members, written with the standard library to a stream that is never
seeked, so memory stays flat whatever the sizes."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime

from cryovault.storage.checksums import verified
from cryovault.storage.files import ZipEntry
from cryovault.storage.registry import StorageSet


class _Sink:
    """A write-only, unseekable file object collecting what zipfile writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_stream(entries: Iterable[ZipEntry], storages: StorageSet,
               modified: datetime | None = None) -> Iterator[bytes]:
    sink = _Sink()
    stamp = (modified or datetime.now()).timetuple()[:6]
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED,  # type: ignore[arg-type]
                         allowZip64=True) as archive:
        for entry in entries:
            info = zipfile.ZipInfo(entry.path, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = entry.size_bytes
            storage = storages.get(entry.storage)
            with archive.open(info, mode="w", force_zip64=entry.size_bytes >= 2**31) as member:
                for chunk in verified(storage.read(entry.key), entry.sha256, entry.size_bytes):
                    member.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data
