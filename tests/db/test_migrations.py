"""The Alembic revisions build exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cryovault.db.migrate import upgrade
from cryovault.db.models import Base
from cryovault.db.search import include_object


def test_migrations_match_models(engine):
    upgrade(engine)  # already at head: a no-op that must not fail
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": include_object})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_sqlite_pragmas(engine):
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
