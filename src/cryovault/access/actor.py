"""The signed-in user as the services see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cryovault.access.roles import CUSTOMER_ADMIN, WORKFLOW_ADMIN, effective_roles
from cryovault.db.users import User


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID
    username: str
    roles: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user.id, user.username, effective_roles(user.role_names))

    @property
    def is_workflow_admin(self) -> bool:
        """Full access to every workspace element (ADM-2)."""
        return WORKFLOW_ADMIN in self.roles

    @property
    def is_customer_admin(self) -> bool:
        return CUSTOMER_ADMIN in self.roles
