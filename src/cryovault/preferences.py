"""Platform preferences (SPEC ADM-5): stored as JSON by key, with defaults and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.preferences import PlatformPreference
from cryovault.errors import Forbidden, Invalid
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
    if not actor.is_customer_admin:
        raise Forbidden("only a customer-admin can change platform preferences")
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
