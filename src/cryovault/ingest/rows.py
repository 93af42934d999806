"""Small helpers shared by the run interpreters: get-or-create under concurrency, one row at a
time (savepoint) or many at once (INSERT … ON CONFLICT DO NOTHING)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

Row = TypeVar("Row")
IN_CHUNK = 500  # values per IN (…) list: well under SQLite's limit on bound parameters


def get_or_create(db: Session, model: type[Row], lookup: dict, **defaults) -> Row:
    """The row matching `lookup` (a unique key), created with `defaults` when missing. Two
    requests creating the same row at once: the loser's insert is rolled back to a savepoint
    and it reads the winner's row."""
    query = select(model).filter_by(**lookup)
    row = db.scalar(query)
    if row is not None:
        return row
    row = model(**lookup, **defaults)
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:
        row = db.scalar(query)
        if row is None:
            raise
    return row


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def ensure_rows(db: Session, model: type[Row], scope: tuple[str, Any], key: str,
                wanted: dict[Any, dict[str, Any]]) -> dict[Any, Row]:
    """The rows of `model` whose unique key is (scope column = scope value, `key` column = each
    key of `wanted`), the missing ones created with their values in `wanted` — with one SELECT
    and, when some are missing, one INSERT … ON CONFLICT DO NOTHING and one more SELECT,
    whatever their number. A row that a concurrent transaction creates at the same time is
    not an error: that transaction's row is read (PostgreSQL waits for it to commit).

    `(scope column, key column)` must be a unique constraint of the table. The new rows are
    inserted in the order of `wanted` (e.g. the order the files came in). Returns the rows by
    key (ORM objects of this session)."""
    scope_column, scope_value = scope
    scope_attr, key_attr = getattr(model, scope_column), getattr(model, key)
    names = list(wanted)
    found: dict[Any, Row] = {}

    def read(some: Sequence[Any]) -> None:
        for part in chunks(some):
            for row in db.scalars(select(model).where(scope_attr == scope_value,
                                                      key_attr.in_(part))):
                found[getattr(row, key)] = row

    read(names)
    missing = [name for name in names if name not in found]
    if not missing:
        return found
    table = model.__table__  # type: ignore[attr-defined]
    dialect = db.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # Column defaults (ids, timestamps) are applied by the insert; every row has the same
    # columns so that it runs as one executemany.
    rows = [{scope_column: scope_value, key: name, **wanted[name]} for name in missing]
    statement = insert(table).on_conflict_do_nothing(index_elements=[scope_column, key])
    db.execute(statement, rows)
    read(missing)
    lost = [name for name in missing if name not in found]
    if lost:  # cannot happen unless the unique constraint differs from (scope, key)
        raise RuntimeError(f"{table.name}: rows {lost[:3]} neither created nor found")
    return found
