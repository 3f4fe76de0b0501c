"""roster search: trigram indexes (pg_trgm) for `q=` on PostgreSQL

`q=` is a substring search (LIKE '%term%') over the username key, the email key and
"first last" lower-cased. Without an index PostgreSQL reads every account of the portal; with a
GIN trigram index on each of the three it reads only the accounts that contain the term's
trigrams. SQLite has no pg_trgm: it keeps the same LIKE query over its rows (the same rows come
back, only slower), so this migration does nothing there.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

INDEXES = {
    "ix_accounts_username_trgm": "username_key gin_trgm_ops",
    "ix_accounts_email_trgm": "email_key gin_trgm_ops",
    "ix_accounts_name_trgm": "lower((first_name || ' ') || last_name) gin_trgm_ops",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON accounts USING gin ({expression})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
