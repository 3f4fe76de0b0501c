"""sweep runs: when the inactivity sweep last started and finished and what it changed, for /metrics

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import service.storage.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sweep_runs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('portal_id', sa.String(length=64), nullable=True),
        sa.Column('client', sa.String(length=100), nullable=True),
        sa.Column('started_at', service.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', service.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('duration_seconds', sa.Float(), nullable=True),
        sa.Column('warned', sa.Integer(), server_default='0', nullable=False),
        sa.Column('locked', sa.Integer(), server_default='0', nullable=False),
        sa.Column('disabled', sa.Integer(), server_default='0', nullable=False),
        sa.Column('deleted', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('sweep_runs')
