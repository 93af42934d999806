"""The full-text index stays exactly in step with the documents: deletions by cascade,
reindexing, and the engines' own integrity checks."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.search.index import reindex_all


def _fts_rows(db) -> int:
    if db.get_bind().dialect.name != "sqlite":
        return db.execute(text("SELECT count(*) FROM search_documents WHERE tsv IS NOT NULL")
                          ).scalar_one()
    # Rows the FTS index itself holds (not the content table's): the 'docsize' shadow table.
    return db.execute(text("SELECT count(*) FROM search_fts_docsize")).scalar_one()


def _integrity(db) -> None:
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("INSERT INTO search_fts(search_fts, rank) VALUES ('integrity-check', 1)"))


def test_cascade_deletion_and_reindex_leave_no_stale_entries(app, alice):
    folder = alice.create("folder", "Doomed aldolase")
    workflow = alice.create("workflow", "Doomed child", folder["id"])
    alice.post(f"/api/v1/elements/{workflow['id']}/notes", json={"body": "aldolase notes"})
    keep = alice.create("folder", "Kept aldolase")
    with app.state.sessions() as db:
        documents = db.execute(text("SELECT count(*) FROM search_documents")).scalar_one()
        assert documents == _fts_rows(db) == 3
        _integrity(db)
    job = alice.delete(f"/api/v1/elements/{folder['id']}").json()["job_id"]
    run_job(JobEnvironment(app.state.sessions), uuid.UUID(job))
    with app.state.sessions() as db:
        assert db.execute(text("SELECT count(*) FROM search_documents")).scalar_one() == 1
        assert _fts_rows(db) == 1  # the cascade fired the index's delete trigger
        _integrity(db)
        assert reindex_all(db) == 1
        assert _fts_rows(db) == 1
        _integrity(db)
    found = alice.get("/api/v1/search", params={"q": "aldolase"}).json()
    assert found["total"] == 1 and found["items"][0]["id"] == keep["id"]
    # The triggers are back after a reindex: new writes are indexed again.
    alice.create("folder", "After reindex aldolase")
    assert alice.get("/api/v1/search", params={"q": "aldolase"}).json()["total"] == 2
