"""Rules of the hierarchy (SPEC WS-1, WS-3): names, containment, statuses, folder depth."""

from __future__ import annotations

import unicodedata

from cryovault.errors import Invalid

KINDS = ("folder", "workflow", "step", "dataset", "file", "sample")
MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 20_000

# parent kind (None: root) -> kinds it may hold
CHILD_KINDS: dict[str | None, tuple[str, ...]] = {
    # Samples (WS-9) are registered at the root and listed on their own page, not in the tree.
    None: ("folder", "workflow", "file", "sample"),
    "folder": ("folder", "workflow"),
    "workflow": ("step",),
    "step": ("dataset", "file"),
    "dataset": ("file",),
    "file": (),
    "sample": (),
}

STATUSES = ("not_started", "in_progress", "completed", "suspended", "warning")
KINDS_WITH_STATUS = frozenset({"step", "dataset"})
DELETING = "deleting"

DEFAULT_MAX_FOLDER_DEPTH = 2
MIN_FOLDER_DEPTH, MAX_FOLDER_DEPTH = 0, 10


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid("a name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"a name must not be longer than {MAX_NAME_LENGTH} characters")
    if "/" in name:
        raise Invalid("a name must not contain '/'")
    if name in (".", ".."):
        raise Invalid("'.' and '..' are not valid names")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise Invalid("a name must not contain control characters (tabs, line breaks …)")
    return name


def validate_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise Invalid(f"a description must not be longer than {MAX_DESCRIPTION_LENGTH} characters")
    if "\x00" in description:
        raise Invalid("a description must not contain NUL characters")
    return description


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise Invalid(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def check_containment(parent_kind: str | None, kind: str) -> None:
    allowed = CHILD_KINDS[parent_kind]
    if kind not in allowed:
        where = "at the root" if parent_kind is None else f"inside a {parent_kind}"
        can = ", ".join(f"{k}s" for k in allowed) if allowed else "nothing"
        raise Invalid(f"a {kind} cannot be created {where}; {where} you can create {can}")


def validate_status(kind: str, status: str) -> str:
    if kind not in KINDS_WITH_STATUS:
        raise Invalid(f"a {kind} has no status; only steps and datasets do")
    if status not in STATUSES:
        raise Invalid(f"unknown status {status!r}: choose one of {', '.join(STATUSES)}")
    return status


def clamp_folder_depth(value: int) -> int:
    return max(MIN_FOLDER_DEPTH, min(MAX_FOLDER_DEPTH, int(value)))
