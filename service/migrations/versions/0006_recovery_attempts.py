"""recovery attempts: wrong security answers are counted like failed sign-ins (R19, R20)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
import service.storage.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('failed_recoveries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', service.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('failed_recoveries', schema=None) as batch_op:
        batch_op.create_index('ix_failed_recoveries_account_time', ['account_id', 'occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('failed_recoveries', schema=None) as batch_op:
        batch_op.drop_index('ix_failed_recoveries_account_time')
    op.drop_table('failed_recoveries')
