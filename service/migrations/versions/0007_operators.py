"""operators: client key expiry and last use; the client that created a support account

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import service.storage.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', service.storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', service.storage.models.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index('ix_client_keys_name', ['name'], unique=False)
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by_client', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('created_by_client')
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_client_keys_name')
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('expires_at')
