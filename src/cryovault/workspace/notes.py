"""Notes on elements (SPEC WS-8): markdown, author and time, edited by collaborators.

Markdown is rendered with raw HTML disabled and only http(s), mailto and local links allowed,
so a note can never carry a script into the page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.db.base import utcnow
from cryovault.db.notes import Note
from cryovault.db.users import User
from cryovault.errors import Invalid, NotFound
from cryovault.search.index import reindex_element

MAX_NOTE = 50_000
SAFE_SCHEMES = ("http:", "https:", "mailto:")


def _safe_link(url: str) -> bool:
    target = url.strip().lower()
    if target.startswith(("/", "#", "?")) and not target.startswith("//"):
        return True  # a page of this portal
    return target.startswith(SAFE_SCHEMES)


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable(["table", "strikethrough"])
_markdown.validateLink = _safe_link


def _link_open(renderer, tokens, idx, options, env):
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return renderer.renderToken(tokens, idx, options, env)


_markdown.add_render_rule("link_open", _link_open)


def render_markdown(body: str) -> Markup:
    """Safe HTML of a note: markup in the text is shown as text, unsafe links as plain text."""
    return Markup(_markdown.render(body))


@dataclass(frozen=True)
class NoteView:
    note: Note
    author: str | None
    can_edit: bool

    @property
    def id(self) -> uuid.UUID:
        return self.note.id

    @property
    def html(self) -> Markup:
        return render_markdown(self.note.body)

    @property
    def created_at(self) -> datetime:
        return self.note.created_at

    @property
    def updated_at(self) -> datetime:
        return self.note.updated_at


def _validate_body(body: str) -> str:
    if not isinstance(body, str) or not body.strip():
        raise Invalid("a note must not be empty")
    if len(body) > MAX_NOTE:
        raise Invalid(f"a note must not be longer than {MAX_NOTE} characters")
    if "\x00" in body or any(0xD800 <= ord(ch) <= 0xDFFF for ch in body):
        raise Invalid("a note must be valid text (no NUL characters)")
    return body


def list_notes(db: Session, actor: Actor, element_id: uuid.UUID) -> list[NoteView]:
    _, level = require_access(db, actor, element_id, VIEWER, "read the notes of")
    rows = db.execute(
        select(Note, User.username).outerjoin(User, User.id == Note.author_id)
        .where(Note.element_id == element_id).order_by(Note.created_at, Note.id)
    ).all()
    return [NoteView(note, author, level >= COLLABORATOR) for note, author in rows]


def add_note(db: Session, actor: Actor, element_id: uuid.UUID, body: str) -> NoteView:
    require_access(db, actor, element_id, COLLABORATOR, "write notes on")
    now = utcnow()
    note = Note(element_id=element_id, author_id=actor.user_id, body=_validate_body(body),
                created_at=now, updated_at=now)
    db.add(note)
    db.flush()
    reindex_element(db, element_id)
    return NoteView(note, actor.username, True)


def _get(db: Session, element_id: uuid.UUID, note_id: uuid.UUID) -> Note:
    note = db.get(Note, note_id)
    if note is None or note.element_id != element_id:
        raise NotFound(f"no note with id {note_id} on this element")
    return note


def update_note(db: Session, actor: Actor, element_id: uuid.UUID, note_id: uuid.UUID,
                body: str) -> NoteView:
    require_access(db, actor, element_id, COLLABORATOR, "edit notes on")
    note = _get(db, element_id, note_id)
    note.body = _validate_body(body)
    note.updated_at = utcnow()
    db.flush()
    reindex_element(db, element_id)
    author = None
    if note.author_id is not None:
        author = db.scalar(select(User.username).where(User.id == note.author_id))
    return NoteView(note, author, True)


def delete_note(db: Session, actor: Actor, element_id: uuid.UUID, note_id: uuid.UUID) -> None:
    require_access(db, actor, element_id, COLLABORATOR, "delete notes on")
    db.delete(_get(db, element_id, note_id))
    db.flush()
    reindex_element(db, element_id)
