"""Search (SPEC PLT-2): one interface (service.py), two engines chosen by the database:
SQLite FTS5 (fts5.py) and PostgreSQL full-text search (postgres.py). The index (index.py) is
kept current on every write and can be rebuilt by a reindex job."""
