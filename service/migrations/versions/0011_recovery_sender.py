"""recovery sender: who sent a recovery code, and through which organization, so that it is decided again when used

A recovery code an administrator sends (`send-password-recovery`) is that administrator's decision to
let the code's reader set the account's password. The authority behind it can change before the code
is used (the account gains a function a delegate lacks, the administrator is disabled); the code is
honoured only while the same question, by the same sender, is still allowed. Null: the account asked
for the code itself (security answers), with no one else's authority to re-check.

Revision ID: 0010_recovery_sender
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010_recovery_sender'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('one_time_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('sent_for', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('one_time_codes', schema=None) as batch_op:
        batch_op.drop_column('sent_for')
        batch_op.drop_column('sent_by')
