"""Registrations into one run take turns (SPEC SPA-1, ET-1): the run's lock for their short
transactions, and on SQLite a process-wide turn for batches before the database's write lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.db.elements import Element

_sqlite_turns = threading.Lock()


@contextmanager
def take_turn(db: Session) -> Iterator[None]:
    """On SQLite the batches of this process take turns on a lock of their own before they
    ask for the database's write lock: a waiting batch starts as soon as the one before it
    commits, not when SQLite's busy handler next looks (it sleeps up to 100 ms between
    looks). Other processes and single-file registrations still meet at SQLite's lock."""
    if db.get_bind().dialect.name != "sqlite":
        yield
        return
    with _sqlite_turns:
        yield


def lock_run(db: Session, dataset_id: uuid.UUID) -> None:
    """Registrations into one run take turns for their (short) transactions: what they read
    stays true until they commit. SQLite: the database's write lock, taken at once (BEGIN
    IMMEDIATE) rather than at the first write, so that the reads before it are in the same
    transaction. PostgreSQL: the run's row (FOR NO KEY UPDATE: rows that refer to it can
    still be inserted by others)."""
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        if not connection.connection.driver_connection.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    db.execute(select(Element.id).where(Element.id == dataset_id)
               .with_for_update(key_share=True))
