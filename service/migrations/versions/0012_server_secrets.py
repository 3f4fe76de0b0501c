"""server secrets: secrets every replica over one database shares (the AuthZEN page-token key)

A page token a replica signs must verify on every other replica behind the same balancer, so its key is
the same everywhere: `authzen.page_token_key` from the configuration, or else a random key made once and
kept here (the first replica to need it creates it). Never a per-process secret.

Revision ID: 0011_server_secrets
Revises: 0010_recovery_sender
"""
from alembic import op
import sqlalchemy as sa
import service.storage.models

revision = '0011_server_secrets'
down_revision = '0010_recovery_sender'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('server_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('created_at', service.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('server_secrets')
