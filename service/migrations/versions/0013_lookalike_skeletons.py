"""look-alike usernames: a second skeleton (of the name as typed), both compared without case or marks

The skeleton of the lookup key alone missed `IoIa.boIt` beside `lola.bolt` (case folding turns a
capital I into i, not the l it looks like), `l0la.b0lt` (ICU maps 0 to a capital O) and `jsmi̇th` (a
combining dot above i). Every account's two skeletons are recomputed (service/kernel/usernames.py:
`skeleton`, now without case and marks, and the new `typed_skeleton`), each unique per portal. As in
0008, where an older account already holds a skeleton the later one gets none (NULL: the unique
indexes allow it) and the migration logs a warning naming both for support staff to resolve: a
migration never renames or removes an account.

Revision ID: 0013_lookalike_skeletons
Revises: 0011_server_secrets
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0013_lookalike_skeletons'
down_revision = '0011_server_secrets'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

ACCOUNTS = sa.table('accounts', sa.column('id', sa.Integer), sa.column('portal_id', sa.String),
                    sa.column('username', sa.String), sa.column('username_skeleton', sa.String),
                    sa.column('username_skeleton_typed', sa.String))


def upgrade() -> None:
    from service.kernel import usernames

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ux_accounts_portal_skeleton')
        batch_op.add_column(sa.Column('username_skeleton_typed', sa.String(length=400), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(ACCOUNTS.c.id, ACCOUNTS.c.portal_id, ACCOUNTS.c.username)
                              .order_by(ACCOUNTS.c.id)).all()
    taken: dict[tuple[str, str], str] = {}  # (portal, skeleton) -> the older account holding it, in either column
    for row in rows:
        values = {}
        for column, skeleton in usernames.skeleton_columns(row.username).items():
            holder = taken.get((row.portal_id, skeleton))
            if holder is not None and holder != row.username:
                log.warning("account %r (portal %s) looks like the older %r: no %s stored; resolve by hand",
                            row.username, row.portal_id, holder, column)
                skeleton = None
            values[column] = skeleton
        for skeleton in values.values():
            if skeleton is not None:
                taken.setdefault((row.portal_id, skeleton), row.username)
        connection.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.id == row.id).values(**values))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ux_accounts_portal_skeleton', ['portal_id', 'username_skeleton'], unique=True)
        batch_op.create_index('ux_accounts_portal_skeleton_typed', ['portal_id', 'username_skeleton_typed'],
                              unique=True)


def downgrade() -> None:
    """Back to 0008's single skeleton of the lookup key, as ICU gives it (case and marks kept)."""
    import icu

    from service.kernel import usernames

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ux_accounts_portal_skeleton_typed')
        batch_op.drop_index('ux_accounts_portal_skeleton')
        batch_op.drop_column('username_skeleton_typed')
    connection = op.get_bind()
    checker = icu.SpoofChecker()
    seen: set[tuple[str, str]] = set()
    accounts = sa.table('accounts', sa.column('id', sa.Integer), sa.column('portal_id', sa.String),
                        sa.column('username', sa.String), sa.column('username_skeleton', sa.String))
    for row in connection.execute(sa.select(accounts.c.id, accounts.c.portal_id, accounts.c.username)
                                  .order_by(accounts.c.id)).all():
        skeleton = checker.getSkeleton(0, usernames.username_key(row.username))
        skeleton = None if (row.portal_id, skeleton) in seen else skeleton
        seen.add((row.portal_id, skeleton))
        connection.execute(sa.update(accounts).where(accounts.c.id == row.id).values(username_skeleton=skeleton))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ux_accounts_portal_skeleton', ['portal_id', 'username_skeleton'], unique=True)
