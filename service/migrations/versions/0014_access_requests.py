"""access requests: a member asks for a function it lacks; at most one open request per member and function

Also an index on grants (permission, membership_id), so that an organization's delegates (members
granted the delegating function) are found from the grant, not by reading every membership of an
organization of 100,000 accounts (remedies, service/domain/remedies.py).

Revision ID: 0014_access_requests
Revises: 0013_lookalike_skeletons
"""
import sqlalchemy as sa
from alembic import op

from service.storage.models import UTCDateTime

revision = '0014_access_requests'
down_revision = '0013_lookalike_skeletons'
branch_labels = None
depends_on = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.create_table(
        'access_requests',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('portal_id', sa.String(length=64), nullable=False),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('accounts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('organization_id', sa.Integer(), sa.ForeignKey('organizations.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('permission', sa.String(length=100), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('decided_at', UTCDateTime(), nullable=True),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
    )
    op.create_index('ux_access_requests_open', 'access_requests', ['account_id', 'organization_id', 'permission'],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index('ix_access_requests_org_status', 'access_requests', ['organization_id', 'status'])
    op.create_index('ix_grants_permission_membership', 'grants', ['permission', 'membership_id'])


def downgrade() -> None:
    op.drop_index('ix_grants_permission_membership', table_name='grants')
    op.drop_index('ix_access_requests_org_status', table_name='access_requests')
    op.drop_index('ux_access_requests_open', table_name='access_requests')
    op.drop_table('access_requests')
