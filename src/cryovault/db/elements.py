"""The workspace hierarchy: elements, their ancestor closure, and permission sets (ACLs).

Visibility is computed in SQL from three tables:
- `elements.acl_id` points at the permission set an element uses (its own or an inherited one);
- `acl_grants` holds (acl, principal, level); principal NULL is the special principal Everybody;
- `element_ancestors` is the closure of the tree (self at depth 0), so subtrees and paths are one
  indexed lookup.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base, UTCDateTime, new_id, utcnow


class Element(Base):
    __tablename__ = "elements"
    __table_args__ = (
        Index("ix_elements_parent_name", "parent_id", "name_key", "id"),
        Index("ix_elements_parent_created", "parent_id", "created_at", "id"),
        Index("ix_elements_parent_position", "parent_id", "position", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE")
    )
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str | None] = mapped_column(String(20))
    workflow_type: Mapped[str | None] = mapped_column(String(32))
    dataset_type: Mapped[str | None] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer, default=0)
    depth: Mapped[int] = mapped_column(SmallInteger, default=0)
    creator_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    acl_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ElementAncestor(Base):
    __tablename__ = "element_ancestors"
    __table_args__ = (Index("ix_element_ancestors_ancestor", "ancestor_id", "depth"),)

    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), primary_key=True
    )
    ancestor_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), primary_key=True
    )
    depth: Mapped[int] = mapped_column(SmallInteger)


class Acl(Base):
    """A permission set, defined on one element and referenced by its inheriting subtree."""

    __tablename__ = "acls"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), unique=True
    )


class AclGrant(Base):
    __tablename__ = "acl_grants"
    __table_args__ = (Index("ix_acl_grants_acl_user", "acl_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    acl_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("acls.id", ondelete="CASCADE"))
    # NULL: the principal Everybody (any signed-in user).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[int] = mapped_column(SmallInteger)


class RecentVisit(Base):
    """When a user last opened an element: the dashboard's "recently used" (PLT-1)."""

    __tablename__ = "recent_visits"
    __table_args__ = (Index("ix_recent_visits_user_time", "user_id", "visited_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), primary_key=True
    )
    visited_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
