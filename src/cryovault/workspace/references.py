"""References from an element to another element or to an external resource (SPEC WS-8).

A reference to an element the reader cannot see is shown as "Private entity", without its id;
the list of what refers to an element (a sample's page) shows only referrers the reader sees.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.access.visibility import readable_clause
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.notes import ElementReference
from cryovault.errors import Invalid, NotFound
from cryovault.jobs.records import PRIVATE_ENTITY

MAX_URL = 2048
MAX_LABEL = 255
# External resources: web and storage addresses, or paths on a facility's file systems.
URL_SCHEMES = ("http://", "https://", "ftp://", "sftp://", "s3://", "smb://", "file://")
_WINDOWS_PATH = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


@dataclass(frozen=True)
class ReferenceView:
    reference: ElementReference
    target_kind: str | None
    target_name: str | None  # None: the target exists but the reader may not see it

    @property
    def id(self) -> uuid.UUID:
        return self.reference.id

    @property
    def is_external(self) -> bool:
        return self.reference.url is not None

    @property
    def is_web_link(self) -> bool:
        url = self.reference.url or ""
        return url.lower().startswith(("http://", "https://"))

    @property
    def target_id(self) -> uuid.UUID | None:
        return self.reference.target_id if self.target_name is not None else None

    @property
    def title(self) -> str:
        if self.reference.label:
            return self.reference.label
        if self.is_external:
            return self.reference.url or ""
        return self.target_name if self.target_name is not None else PRIVATE_ENTITY

    @property
    def created_at(self) -> datetime:
        return self.reference.created_at


@dataclass(frozen=True)
class Referrer:
    element: Element
    label: str


def validate_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise Invalid("give the URL or path of the external resource")
    if len(url) > MAX_URL:
        raise Invalid(f"a URL or path must not be longer than {MAX_URL} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in url):
        raise Invalid("a URL or path must not contain control characters")
    lowered = url.lower()
    if lowered.startswith(URL_SCHEMES) or url.startswith(("/", "~/")) or _WINDOWS_PATH.match(url):
        return url
    raise Invalid("an external reference is a URL (http, https, ftp, sftp, s3, smb, file) or an "
                  "absolute path such as /data/session1 or \\\\server\\share")


def _validate_label(label: str | None) -> str:
    label = (label or "").strip()
    if len(label) > MAX_LABEL:
        raise Invalid(f"a label must not be longer than {MAX_LABEL} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in label):
        raise Invalid("a label must not contain control characters")
    return label


def list_references(db: Session, actor: Actor, element_id: uuid.UUID) -> list[ReferenceView]:
    require_access(db, actor, element_id, VIEWER, "read the references of")
    target = aliased(Element)
    visible = readable_clause(actor, target.acl_id)
    rows = db.execute(
        select(ElementReference, target.kind, target.name, visible)
        .outerjoin(target, target.id == ElementReference.target_id)
        .where(ElementReference.source_id == element_id)
        .order_by(ElementReference.created_at, ElementReference.id)
    ).all()
    views = []
    for reference, kind, name, can_see in rows:
        if reference.target_id is None:
            views.append(ReferenceView(reference, None, None))
        else:
            views.append(ReferenceView(reference, kind if can_see else None,
                                       name if can_see else None))
    return views


def add_reference(db: Session, actor: Actor, element_id: uuid.UUID, *,
                  target_id: uuid.UUID | None = None, url: str | None = None,
                  label: str | None = None) -> ReferenceView:
    source, _ = require_access(db, actor, element_id, COLLABORATOR, "add references to")
    label = _validate_label(label)
    if (target_id is None) == (url is None or not url.strip()):
        raise Invalid("a reference points either to an element (target_id) or to an external "
                      "resource (url), not both and not neither")
    if target_id is not None:
        if target_id == element_id:
            raise Invalid("an element cannot refer to itself")
        target, _ = require_access(db, actor, target_id, VIEWER, "refer to")
        duplicate = db.scalar(select(ElementReference.id).where(
            ElementReference.source_id == element_id, ElementReference.target_id == target_id))
        if duplicate is not None:
            raise Invalid(f"{source.name!r} already refers to {target.kind} {target.name!r}")
        reference = ElementReference(source_id=element_id, target_id=target_id, label=label,
                                     creator_id=actor.user_id, created_at=utcnow())
        db.add(reference)
        db.flush()
        return ReferenceView(reference, target.kind, target.name)
    reference = ElementReference(source_id=element_id, url=validate_url(url or ""), label=label,
                                 creator_id=actor.user_id, created_at=utcnow())
    db.add(reference)
    db.flush()
    return ReferenceView(reference, None, None)


def delete_reference(db: Session, actor: Actor, element_id: uuid.UUID,
                     reference_id: uuid.UUID) -> None:
    require_access(db, actor, element_id, COLLABORATOR, "remove references from")
    reference = db.get(ElementReference, reference_id)
    if reference is None or reference.source_id != element_id:
        raise NotFound(f"no reference with id {reference_id} on this element")
    db.delete(reference)
    db.flush()


def referrers(db: Session, actor: Actor, target_id: uuid.UUID,
              limit: int = 500) -> list[Referrer]:
    """Elements that refer to the target and that the actor may read (a sample's page)."""
    require_access(db, actor, target_id, VIEWER, "open")
    rows = db.execute(
        select(Element, ElementReference.label)
        .join(ElementReference, ElementReference.source_id == Element.id)
        .where(ElementReference.target_id == target_id, Element.deleting.is_(False),
               readable_clause(actor, Element.acl_id))
        .order_by(Element.kind, Element.name_key, Element.id)
        .limit(limit)
    ).all()
    return [Referrer(element, label) for element, label in rows]
