"""File elements and their bytes (SPEC WS-10, OPS-3): register, read with checks, flag.

A file is registered in two phases so that no database transaction stays open while bytes
travel: `check_file_target` before the transfer, `register_file` after it, which checks the
target again (it may have been deleted or unshared meanwhile) before anything is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.db.base import utcnow
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StoredFile
from cryovault.errors import Conflict, Invalid, NotFound
from cryovault.formats.filetypes import media_type
from cryovault.storage.backends import StagedWrite, Storage
from cryovault.storage.checksums import sha256_of_chunks
from cryovault.storage.keys import clean_file_name, file_key
from cryovault.storage.registry import StorageSet
from cryovault.workspace.elements import create_element, get_element
from cryovault.workspace.rules import check_containment
from cryovault.workspace.templates import MANAGED_DATASET_TYPES
from cryovault.workspace.views import ElementView

INTEGRITY_OK, INTEGRITY_MISMATCH, INTEGRITY_MISSING = "ok", "mismatch", "missing"

@dataclass(frozen=True)
class UploadTarget:
    parent_id: uuid.UUID | None
    name: str


@dataclass(frozen=True)
class FileView:
    element: ElementView
    stored: StoredFile

    @property
    def id(self) -> uuid.UUID:
        return self.element.id

    @property
    def name(self) -> str:
        return self.element.element.name


def check_file_target(db: Session, actor: Actor, parent_id: uuid.UUID | None,
                      name: str) -> UploadTarget:
    """May the actor put a file named `name` into `parent_id` (None: the root)?"""
    name = clean_file_name(name)
    if parent_id is None:
        check_containment(None, "file")
        return UploadTarget(None, name)
    parent, _ = require_access(db, actor, parent_id, COLLABORATOR, "upload files into")
    check_containment(parent.kind, "file")
    if parent.kind == "dataset" and parent.dataset_type in MANAGED_DATASET_TYPES:
        raise Invalid(f"dataset {parent.name!r} is a {parent.dataset_type} filled by the "
                      "platform; files cannot be uploaded into it")
    return UploadTarget(parent_id, name)


def register_file(db: Session, actor: Actor, storages: StorageSet, target: UploadTarget,
                  content: StagedWrite | Path, sha256: str, size_bytes: int,
                  description: str = "") -> FileView:
    """Create the File element and move its complete, checked bytes into the primary storage.

    If anything fails before the caller commits, the bytes are removed again (or, after a
    crash, found unregistered and removed by the cleanup pass)."""
    target = check_file_target(db, actor, target.parent_id, target.name)
    view = create_element(db, actor, kind="file", name=target.name, parent_id=target.parent_id,
                          description=description)
    storage = storages.primary
    key = file_key(view.id, target.name)
    if isinstance(content, StagedWrite):
        content.commit(key)
    else:
        storage.put_local_file(content, key)
    try:
        stored = StoredFile(element_id=view.id, storage=storage.name, key=key,
                            size_bytes=size_bytes, sha256=sha256,
                            media_type=media_type(target.name), integrity=INTEGRITY_OK,
                            verified_at=utcnow())
        db.add(stored)
        db.flush()
    except BaseException:
        storage.delete(key)
        raise
    return FileView(view, stored)


def create_empty_file(db: Session, actor: Actor, storages: StorageSet, *,
                      parent_id: uuid.UUID | None, name: str, description: str = "") -> FileView:
    """A File element created without content (POST /elements kind=file): zero bytes, stored
    and checksummed like any other, so every file has its bytes."""
    target = check_file_target(db, actor, parent_id, name)
    staged = storages.primary.stage()
    try:
        sha256, _ = sha256_of_chunks([])
        return register_file(db, actor, storages, target, staged, sha256, 0, description)
    except BaseException:
        staged.abort()
        raise


def stored_file_of(db: Session, element: Element) -> StoredFile:
    if element.kind != "file":
        raise Invalid(f"{element.kind} {element.name!r} is not a file")
    stored = db.get(StoredFile, element.id)
    if stored is None:
        raise NotFound(f"file {element.name!r} has no content")
    return stored


def get_file(db: Session, actor: Actor, file_id: uuid.UUID) -> FileView:
    view = get_element(db, actor, file_id)
    if view.is_card:
        require_access(db, actor, file_id, VIEWER, "read")
    return FileView(view, stored_file_of(db, view.element))


def flag_file(db: Session, element_id: uuid.UUID, integrity: str) -> None:
    stored = db.get(StoredFile, element_id)
    if stored is not None:
        stored.integrity = integrity
        stored.verified_at = utcnow()


def open_file_for_reading(db: Session, actor: Actor, storages: StorageSet,
                          file_id: uuid.UUID) -> tuple[FileView, Storage]:
    """The file and its storage, after checking that the bytes are there and whole by size.

    A file found missing or of the wrong size is flagged at once (committed even though the
    request then fails, so that the flag is seen by everyone) and never served."""
    file = get_file(db, actor, file_id)
    stored = file.stored
    refuse_flagged(file)
    storage = storages.get(stored.storage)
    size = storage.size(stored.key)
    if size != stored.size_bytes:
        flag_file(db, stored.element_id, INTEGRITY_MISSING if size is None
                  else INTEGRITY_MISMATCH)
        db.commit()
        refuse_flagged(file)
    return file, storage


def refuse_flagged(file: FileView) -> None:
    stored = file.stored
    if stored.integrity == INTEGRITY_MISSING:
        raise Conflict(f"the bytes of file {file.name!r} are missing from storage "
                       f"{stored.storage!r}; it was flagged, ask an administrator to restore it")
    if stored.integrity != INTEGRITY_OK:
        raise Conflict(f"file {file.name!r} failed its checksum check (its bytes differ from the "
                       "SHA-256 recorded at upload); it was flagged and is not served, ask an "
                       "administrator to restore it")


@dataclass(frozen=True)
class ZipEntry:
    path: str
    storage: str
    key: str
    size_bytes: int
    sha256: str


def files_for_download(db: Session, actor: Actor, element_ids: list[uuid.UUID]) -> list[ZipEntry]:
    """Every readable file in the given elements (a file itself, or the files below a dataset,
    step, workflow or folder), with paths relative to the chosen elements. Names that repeat
    get ` (2)`, ` (3)` … so that no entry hides another."""
    if not element_ids:
        raise Invalid("choose at least one file or element to download")
    entries: list[ZipEntry] = []
    flagged: list[str] = []
    used: set[str] = set()
    for element_id in dict.fromkeys(element_ids):
        top, _ = require_access(db, actor, element_id, VIEWER, "download")
        for relative, stored in _files_below(db, top):
            if stored.integrity != INTEGRITY_OK:
                flagged.append(relative)
                continue
            path = _unique(relative, used)
            entries.append(ZipEntry(path, stored.storage, stored.key, stored.size_bytes,
                                    stored.sha256))
    if flagged:
        raise Conflict(f"{len(flagged)} of the files failed their integrity check and are not "
                       f"served: {', '.join(flagged[:5])}{' …' if len(flagged) > 5 else ''}; "
                       "ask an administrator to restore them")
    if not entries:
        raise Invalid("there are no files to download in what you chose")
    return entries


def _files_below(db: Session, top: Element) -> Iterator[tuple[str, StoredFile]]:
    if top.kind == "file":
        stored = db.get(StoredFile, top.id)
        if stored is not None:
            yield top.name, stored
        return
    # Every descendant shares the top element's visibility or is more visible (sharing only
    # ever adds access below), so whoever reads `top` reads its subtree.
    rows = db.execute(
        select(Element.id, Element.parent_id, Element.name, Element.kind, Element.deleting)
        .join(ElementAncestor, ElementAncestor.element_id == Element.id)
        .where(ElementAncestor.ancestor_id == top.id, ElementAncestor.depth > 0)
    ).all()
    names = {row.id: (row.parent_id, row.name) for row in rows}
    stored_rows = db.scalars(
        select(StoredFile)
        .join(ElementAncestor, ElementAncestor.element_id == StoredFile.element_id)
        .where(ElementAncestor.ancestor_id == top.id)
    ).all()
    deleting = {row.id for row in rows if row.deleting}
    for stored in sorted(stored_rows, key=lambda s: (s.created_at, s.key)):
        if stored.element_id in deleting:
            continue
        parts: list[str] = []
        node: uuid.UUID | None = stored.element_id
        while node is not None and node != top.id and node in names:
            parent_id, name = names[node]
            parts.append(name)
            node = parent_id
        yield "/".join([top.name, *reversed(parts)]), stored


def _unique(path: str, used: set[str]) -> str:
    candidate, n = path, 1
    stem, dot, suffix = path.rpartition(".")
    if not dot or "/" in suffix:
        stem, suffix = path, ""
    while candidate.casefold() in used:
        n += 1
        candidate = f"{stem} ({n}).{suffix}" if suffix else f"{stem} ({n})"
    used.add(candidate.casefold())
    return candidate


def verify_file(db: Session, actor: Actor, storages: StorageSet,
                file_id: uuid.UUID) -> FileView:
    """Read the whole file and compare with its recorded size and SHA-256; the outcome is
    recorded (a file that reads right again is cleared of an earlier flag)."""
    file = get_file(db, actor, file_id)
    flag_file(db, file.id, check_bytes(storages, file.stored))
    db.flush()
    return file


def check_bytes(storages: StorageSet, stored: StoredFile) -> str:
    """Read the bytes and say whether they are intact: "ok", "mismatch" or "missing"."""
    storage = storages.get(stored.storage)
    if storage.size(stored.key) is None:
        return INTEGRITY_MISSING
    sha256, size = sha256_of_chunks(storage.read(stored.key))
    ok = sha256 == stored.sha256 and size == stored.size_bytes
    return INTEGRITY_OK if ok else INTEGRITY_MISMATCH


def verify_all(sessions: sessionmaker[Session], storages: StorageSet,
               progress: Callable[[int, StoredFile, str], None] | None = None) -> list[StoredFile]:
    """Check every registered file (an administrator's audit); the damaged ones, now flagged."""
    damaged: list[StoredFile] = []
    checked = 0
    last: uuid.UUID | None = None
    while True:
        with sessions() as db:
            query = select(StoredFile).order_by(StoredFile.element_id).limit(500)
            if last is not None:
                query = query.where(StoredFile.element_id > last)
            batch = db.scalars(query).all()
            if not batch:
                return damaged
            for stored in batch:
                integrity = check_bytes(storages, stored)
                flag_file(db, stored.element_id, integrity)
                checked += 1
                if integrity != INTEGRITY_OK:
                    damaged.append(stored)
                if progress is not None:
                    progress(checked, stored, integrity)
            db.commit()
            last = batch[-1].element_id
