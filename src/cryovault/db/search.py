"""The search index's documents (SPEC PLT-2): one row per element, its words per field.

The words are normalised in Python (search/terms.py) so that both engines tokenise them the same
way. What the engines add lives outside the models, created by migration 0004:
- SQLite: the FTS5 table `search_fts` (external content = this table, rowid = `id`) and the
  triggers that keep it in step with this table;
- PostgreSQL: the generated column `tsv` (names weight A, metadata B, notes C) and its GIN index.
Who may find a document is part of the document: `principal_terms` holds a word per principal
whose grant lets them read the element ("u<user id hex>", "everybody") and "alive" unless the
element is being deleted. The permission filter of a search is then one more condition of the
full-text match itself, evaluated on the index's posting lists: its cost follows the matches a
user may see, not all matches. `kind_terms` ("kfolder" …) does the same for the kind filter.
A trigger on `elements` keeps `acl_id`, `deleting` and the principals current when an element
changes permission set or starts being deleted; search/index.py refreshes a permission set's
documents when its grants change (access/sharing.py calls it).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cryovault.db.base import Base

# Database objects of the engines, created by hand in migration 0004: schema comparisons
# (Alembic autogenerate, tests/db/test_migrations.py) leave them alone.
ENGINE_TABLES = frozenset({
    "search_fts", "search_fts_data", "search_fts_idx", "search_fts_content",
    "search_fts_docsize", "search_fts_config",
})
ENGINE_COLUMNS = frozenset({("search_documents", "tsv")})
ENGINE_INDEXES = frozenset({"ix_search_documents_tsv"})


class SearchDocument(Base):
    __tablename__ = "search_documents"
    # Integer key: the FTS5 rowid. Columns read by the permission filter come first.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    element_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("elements.id", ondelete="CASCADE"), unique=True
    )
    acl_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    kind_terms: Mapped[str] = mapped_column(String(32), default="")
    principal_terms: Mapped[str] = mapped_column(Text, default="")
    name_terms: Mapped[str] = mapped_column(Text, default="")
    metadata_terms: Mapped[str] = mapped_column(Text, default="")
    notes_terms: Mapped[str] = mapped_column(Text, default="")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic hook: the engines' own objects are not part of the models."""
    if type_ == "table" and name in ENGINE_TABLES:
        return False
    if type_ == "column" and (getattr(obj, "table", None) is not None
                              and (obj.table.name, name) in ENGINE_COLUMNS):
        return False
    return not (type_ == "index" and name in ENGINE_INDEXES)
