"""identities: usernames' confusable skeletons (unique per portal), NFKC keys, masters' correspondence address

So that no two accounts of a portal look alike (R6): backfills every account's lookup key (NFKC, then
case-folded) and its UTS #39 skeleton (service/kernel/usernames.py). Where an older account already holds a key or a
skeleton, the later one keeps its old key or gets no skeleton (NULL: the unique index allows it)
and the migration logs a warning naming both, for support staff to resolve: a migration never
renames or removes an account.

Revision ID: 0008
Revises: 0007
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username_skeleton', sa.String(length=400), nullable=True))
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correspondence_address', sa.String(length=100), nullable=True))
    _backfill(op.get_bind())
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ux_accounts_portal_skeleton', ['portal_id', 'username_skeleton'], unique=True)


def _backfill(connection) -> None:
    from service.kernel import usernames

    accounts = sa.table('accounts', sa.column('id', sa.Integer), sa.column('portal_id', sa.String),
                        sa.column('username', sa.String), sa.column('username_key', sa.String),
                        sa.column('username_skeleton', sa.String))
    rows = connection.execute(sa.select(accounts.c.id, accounts.c.portal_id, accounts.c.username,
                                        accounts.c.username_key).order_by(accounts.c.id)).all()
    keys = {(r.portal_id, r.username_key): r.username for r in rows}
    skeletons: dict[tuple[str, str], str] = {}
    for row in rows:
        key, skeleton = usernames.username_key(row.username), usernames.skeleton(row.username)
        if key != row.username_key:
            if (row.portal_id, key) in keys:
                log.warning("account %r (portal %s) keeps its old key: %r has the key %r", row.username,
                            row.portal_id, keys[(row.portal_id, key)], key)
                key = row.username_key
            else:
                del keys[(row.portal_id, row.username_key)]
                keys[(row.portal_id, key)] = row.username
        if (row.portal_id, skeleton) in skeletons:
            log.warning("account %r (portal %s) looks like the older %r: no skeleton stored; resolve by hand",
                        row.username, row.portal_id, skeletons[(row.portal_id, skeleton)])
            skeleton = None
        else:
            skeletons[(row.portal_id, skeleton)] = row.username
        connection.execute(sa.update(accounts).where(accounts.c.id == row.id)
                           .values(username_key=key, username_skeleton=skeleton))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ux_accounts_portal_skeleton')
        batch_op.drop_column('username_skeleton')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('correspondence_address')
