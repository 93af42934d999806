"""What the services return about an element: its row, the caller's access, names for display."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryovault.access.levels import CARD, level_name
from cryovault.db.elements import Element
from cryovault.workspace.rules import DELETING


@dataclass(frozen=True)
class ElementView:
    element: Element
    level: int
    creator: str | None

    @property
    def id(self) -> uuid.UUID:
        return self.element.id

    @property
    def is_card(self) -> bool:
        return self.level == CARD

    @property
    def access(self) -> str:
        return level_name(self.level)

    @property
    def status(self) -> str | None:
        if self.element.deleting:
            return DELETING
        return None if self.is_card else self.element.status


@dataclass(frozen=True)
class PathEntry:
    id: uuid.UUID
    kind: str
    name: str


@dataclass(frozen=True)
class Page:
    items: list[ElementView]
    next_cursor: str | None

