"""Platform preferences (SPEC ADM-5): stored as JSON by key, with defaults and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.roles import EDIT_PLATFORM_PREFERENCES, require
from cryovault.db.preferences import PlatformPreference
from cryovault.errors import Invalid
from cryovault.workspace.rules import DEFAULT_MAX_FOLDER_DEPTH, clamp_folder_depth

MAX_FOLDER_DEPTH = "max_folder_depth"
EXPORT_PUBLIC_PATH = "export_public_path"


@dataclass(frozen=True)
class PlatformPreferences:
    max_folder_depth: int
    export_public_path: str


def _load(db: Session, key: str, default: Any) -> Any:
    row = db.get(PlatformPreference, key)
    return default if row is None else json.loads(row.value_json)


def _store(db: Session, key: str, value: Any) -> None:
    row = db.get(PlatformPreference, key)
    if row is None:
        db.add(PlatformPreference(key=key, value_json=json.dumps(value)))
    else:
        row.value_json = json.dumps(value)


def max_folder_depth(db: Session) -> int:
    return clamp_folder_depth(_load(db, MAX_FOLDER_DEPTH, DEFAULT_MAX_FOLDER_DEPTH))


def platform_preferences(db: Session) -> PlatformPreferences:
    return PlatformPreferences(max_folder_depth(db), _load(db, EXPORT_PUBLIC_PATH, ""))


def update_platform_preferences(
    db: Session,
    actor: Actor,
    *,
    max_folder_depth: int | None = None,
    export_public_path: str | None = None,
) -> PlatformPreferences:
    require(actor.roles, EDIT_PLATFORM_PREFERENCES)
    if max_folder_depth is not None:
        # Out-of-range values are clamped (SPEC WS-1); existing folders are never touched.
        _store(db, MAX_FOLDER_DEPTH, clamp_folder_depth(max_folder_depth))
    if export_public_path is not None:
        if len(export_public_path) > 1000 or "\x00" in export_public_path:
            raise Invalid("the export folder's public path must be at most 1000 characters "
                          "without NUL characters")
        _store(db, EXPORT_PUBLIC_PATH, export_public_path.strip())
    db.flush()
    return platform_preferences(db)


# --- user preferences (SPEC ADM-5: language and other personal settings) -----------------------

LANGUAGE = "language"
DATE_FORMAT = "date_format"
# Languages with a translation catalog in web/ui/locale/<code>/LC_MESSAGES/messages.po.
LANGUAGES = {"en": "English", "fr": "Français", "de": "Deutsch"}
DEFAULT_LANGUAGE = "en"
# strftime patterns of the dates the portal shows; every time is UTC.
DATE_FORMATS = {
    "iso": ("%Y-%m-%d %H:%M", "2026-03-14 09:30 (ISO 8601)"),
    "dmy": ("%d/%m/%Y %H:%M", "14/03/2026 09:30"),
    "dmy-dot": ("%d.%m.%Y %H:%M", "14.03.2026 09:30"),
    "mdy": ("%m/%d/%Y %I:%M %p", "03/14/2026 09:30 AM"),
}
DEFAULT_DATE_FORMAT = "iso"


@dataclass(frozen=True)
class UserPreferences:
    language: str = DEFAULT_LANGUAGE
    date_format: str = DEFAULT_DATE_FORMAT

    @property
    def date_pattern(self) -> str:
        return DATE_FORMATS.get(self.date_format, DATE_FORMATS[DEFAULT_DATE_FORMAT])[0]


DEFAULT_USER_PREFERENCES = UserPreferences()


def user_preferences(db: Session, user_id) -> UserPreferences:
    from cryovault.db.preferences import UserPreference

    rows = {row.key: json.loads(row.value_json)
            for row in db.scalars(select(UserPreference).where(UserPreference.user_id == user_id))}
    language = rows.get(LANGUAGE, DEFAULT_LANGUAGE)
    date_format = rows.get(DATE_FORMAT, DEFAULT_DATE_FORMAT)
    return UserPreferences(language if language in LANGUAGES else DEFAULT_LANGUAGE,
                           date_format if date_format in DATE_FORMATS else DEFAULT_DATE_FORMAT)


def update_user_preferences(db: Session, actor: Actor, *, language: str | None = None,
                            date_format: str | None = None) -> UserPreferences:
    """Each user changes their own preferences only."""
    from cryovault.db.preferences import UserPreference

    def store(key: str, value: str) -> None:
        row = db.get(UserPreference, (actor.user_id, key))
        if row is None:
            db.add(UserPreference(user_id=actor.user_id, key=key, value_json=json.dumps(value)))
        else:
            row.value_json = json.dumps(value)

    if language is not None:
        if language not in LANGUAGES:
            raise Invalid(f"unknown language {language!r}: choose one of "
                          f"{', '.join(LANGUAGES)}")
        store(LANGUAGE, language)
    if date_format is not None:
        if date_format not in DATE_FORMATS:
            raise Invalid(f"unknown date format {date_format!r}: choose one of "
                          f"{', '.join(DATE_FORMATS)}")
        store(DATE_FORMAT, date_format)
    db.flush()
    return user_preferences(db, actor.user_id)
