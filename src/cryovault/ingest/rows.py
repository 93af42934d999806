"""Small helpers shared by the run interpreters: get-or-create under concurrency."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

Row = TypeVar("Row")


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
