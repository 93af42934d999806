"""metadata, notes, references and search

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:34:59.542016
"""
import sqlalchemy as sa
from alembic import op

import cryovault.db.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


# Hand-written: the full-text engines, which autogenerate cannot see (db/search.py). The same
# statements are kept in search/fts5.py and search/postgres.py, which a reindex re-applies.
SQLITE_PRINCIPALS = """(SELECT 'alive' || coalesce(' ' || group_concat(
            CASE WHEN g.user_id IS NULL THEN 'everybody' ELSE 'u' || lower(g.user_id) END, ' '), '')
        FROM acl_grants AS g WHERE g.acl_id = new.acl_id)"""
SQLITE_UP = [
    """CREATE VIRTUAL TABLE search_fts USING fts5(
        name_terms, metadata_terms, notes_terms, kind_terms, principal_terms,
        content='search_documents', content_rowid='id', tokenize='unicode61')""",
    """CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN
        INSERT INTO search_fts(rowid, name_terms, metadata_terms, notes_terms, kind_terms,
                               principal_terms)
        VALUES (new.id, new.name_terms, new.metadata_terms, new.notes_terms, new.kind_terms,
                new.principal_terms);
    END""",
    """CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN
        INSERT INTO search_fts(search_fts, rowid, name_terms, metadata_terms, notes_terms,
                               kind_terms, principal_terms)
        VALUES ('delete', old.id, old.name_terms, old.metadata_terms, old.notes_terms,
                old.kind_terms, old.principal_terms);
    END""",
    """CREATE TRIGGER search_documents_au AFTER UPDATE OF name_terms, metadata_terms, notes_terms,
        kind_terms, principal_terms ON search_documents BEGIN
        INSERT INTO search_fts(search_fts, rowid, name_terms, metadata_terms, notes_terms,
                               kind_terms, principal_terms)
        VALUES ('delete', old.id, old.name_terms, old.metadata_terms, old.notes_terms,
                old.kind_terms, old.principal_terms);
        INSERT INTO search_fts(rowid, name_terms, metadata_terms, notes_terms, kind_terms,
                               principal_terms)
        VALUES (new.id, new.name_terms, new.metadata_terms, new.notes_terms, new.kind_terms,
                new.principal_terms);
    END""",
    f"""CREATE TRIGGER elements_search_access AFTER UPDATE OF acl_id, deleting ON elements
    WHEN old.acl_id IS NOT new.acl_id OR old.deleting IS NOT new.deleting
    BEGIN
        UPDATE search_documents SET acl_id = new.acl_id, deleting = new.deleting,
            principal_terms = CASE WHEN new.deleting THEN '' ELSE {SQLITE_PRINCIPALS} END
        WHERE element_id = new.id;
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS elements_search_access",
    "DROP TRIGGER IF EXISTS search_documents_au",
    "DROP TRIGGER IF EXISTS search_documents_ad",
    "DROP TRIGGER IF EXISTS search_documents_ai",
    "DROP TABLE IF EXISTS search_fts",
]
POSTGRES_UP = [
    """ALTER TABLE search_documents ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, name_terms), 'A')
        || setweight(to_tsvector('simple'::regconfig, metadata_terms), 'B')
        || setweight(to_tsvector('simple'::regconfig, notes_terms), 'C')
        || setweight(to_tsvector('simple'::regconfig, kind_terms || ' ' || principal_terms),
                     'D')) STORED""",
    "CREATE INDEX ix_search_documents_tsv ON search_documents USING gin (tsv)",
    """CREATE FUNCTION search_documents_sync_access() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE search_documents SET acl_id = NEW.acl_id, deleting = NEW.deleting,
            principal_terms = CASE WHEN NEW.deleting THEN '' ELSE (
                SELECT 'alive' || coalesce(' ' || string_agg(CASE WHEN g.user_id IS NULL
                    THEN 'everybody' ELSE 'u' || replace(g.user_id::text, '-', '') END, ' '), '')
                FROM acl_grants AS g WHERE g.acl_id = NEW.acl_id) END
        WHERE element_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER elements_search_access AFTER UPDATE OF acl_id, deleting ON elements
        FOR EACH ROW WHEN (OLD.acl_id IS DISTINCT FROM NEW.acl_id
                           OR OLD.deleting IS DISTINCT FROM NEW.deleting)
        EXECUTE FUNCTION search_documents_sync_access()""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS elements_search_access ON elements",
    "DROP FUNCTION IF EXISTS search_documents_sync_access()",
    "DROP INDEX IF EXISTS ix_search_documents_tsv",
    "ALTER TABLE search_documents DROP COLUMN IF EXISTS tsv",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def _create_search_engine() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_UP)
    elif dialect == "postgresql":
        _run(POSTGRES_UP)


def _drop_search_engine() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_DOWN)
    elif dialect == "postgresql":
        _run(POSTGRES_DOWN)


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('element_references',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_id', sa.Uuid(), nullable=False),
    sa.Column('target_id', sa.Uuid(), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('creator_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', cryovault.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['creator_id'], ['users.id'], name=op.f('fk_element_references_creator_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['elements.id'], name=op.f('fk_element_references_source_id_elements'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_id'], ['elements.id'], name=op.f('fk_element_references_target_id_elements'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_element_references'))
    )
    with op.batch_alter_table('element_references', schema=None) as batch_op:
        batch_op.create_index('ix_element_references_source', ['source_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_element_references_target_id'), ['target_id'], unique=False)

    op.create_table('metadata_entries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('element_id', sa.Uuid(), nullable=False),
    sa.Column('group_name', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('name_key', sa.String(length=255), nullable=False),
    sa.Column('value_type', sa.String(length=16), nullable=False),
    sa.Column('text_value', sa.Text(), nullable=False),
    sa.Column('number_value', sa.Float(), nullable=True),
    sa.Column('quantity', sa.String(length=64), nullable=True),
    sa.Column('unit', sa.String(length=128), nullable=True),
    sa.Column('base_value', sa.Float(), nullable=True),
    sa.Column('creator_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', cryovault.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cryovault.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['creator_id'], ['users.id'], name=op.f('fk_metadata_entries_creator_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['element_id'], ['elements.id'], name=op.f('fk_metadata_entries_element_id_elements'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metadata_entries')),
    sa.UniqueConstraint('element_id', 'name_key', name='uq_metadata_entries_element_name')
    )
    with op.batch_alter_table('metadata_entries', schema=None) as batch_op:
        batch_op.create_index('ix_metadata_entries_name_key', ['name_key'], unique=False)

    op.create_table('notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('element_id', sa.Uuid(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', cryovault.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cryovault.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_notes_author_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['element_id'], ['elements.id'], name=op.f('fk_notes_element_id_elements'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notes'))
    )
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.create_index('ix_notes_element_created', ['element_id', 'created_at'], unique=False)

    op.create_table('search_documents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('element_id', sa.Uuid(), nullable=False),
    sa.Column('acl_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('deleting', sa.Boolean(), nullable=False),
    sa.Column('kind_terms', sa.String(length=32), nullable=False),
    sa.Column('principal_terms', sa.Text(), nullable=False),
    sa.Column('name_terms', sa.Text(), nullable=False),
    sa.Column('metadata_terms', sa.Text(), nullable=False),
    sa.Column('notes_terms', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['element_id'], ['elements.id'], name=op.f('fk_search_documents_element_id_elements'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search_documents')),
    sa.UniqueConstraint('element_id', name=op.f('uq_search_documents_element_id'))
    )
    # ### end Alembic commands ###
    _create_search_engine()


def downgrade() -> None:
    _drop_search_engine()
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table('search_documents')
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.drop_index('ix_notes_element_created')

    op.drop_table('notes')
    with op.batch_alter_table('metadata_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_metadata_entries_name_key')

    op.drop_table('metadata_entries')
    with op.batch_alter_table('element_references', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_element_references_target_id'))
        batch_op.drop_index('ix_element_references_source')

    op.drop_table('element_references')
    # ### end Alembic commands ###
