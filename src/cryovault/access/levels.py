"""Permission levels, ordered so that a higher number includes the rights of a lower one."""

from __future__ import annotations

from cryovault.errors import Invalid

CARD = 0  # a bare ancestor shown only to unfold a shared subtree
VIEWER = 1
COLLABORATOR = 2
OWNER = 3

LEVEL_NAMES = {CARD: "card", VIEWER: "viewer", COLLABORATOR: "collaborator", OWNER: "owner"}
GRANTABLE = {"viewer": VIEWER, "collaborator": COLLABORATOR, "owner": OWNER}
EVERYBODY_LEVELS = {"viewer": VIEWER, "collaborator": COLLABORATOR}


def level_name(level: int) -> str:
    return LEVEL_NAMES[level]


def parse_grant_level(name: str) -> int:
    try:
        return GRANTABLE[name]
    except KeyError:
        raise Invalid(
            f"unknown permission level {name!r}: use viewer, collaborator or owner"
        ) from None
