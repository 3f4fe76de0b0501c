"""Facts computed from stored values are each stated once (service/kernel/facts.py): a link's effective status and R18's
password expiry. Where a query must compute one in SQL, the query's form is held to the Python one here, on
SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from service.kernel import facts
from service.kernel.catalog import ACCOUNT_STATUSES
from service.storage.facts import effective_status_column
from service.storage.models import Account, Membership
from tests.conftest import START
from tests.fixtures.world import World

LINK_STATUSES = ("active", "pending_approval", "disabled", "removed")  # the statuses a link takes


def test_the_effective_status_query_equals_the_fact(any_database):
    with any_database.transaction() as session:
        world = World(session, "ahw", START)
        for i, status in enumerate(ACCOUNT_STATUSES):
            world.account(f"user{i}", status=status,
                          memberships={f"O{j}": {"status": link} for j, link in enumerate(LINK_STATUSES)})
    with any_database.sessions() as session:
        rows = session.execute(select(Account.status, Membership.status, effective_status_column())
                               .join(Membership, Membership.account_id == Account.id)).all()
    assert len(rows) == len(ACCOUNT_STATUSES) * len(LINK_STATUSES)
    assert [(a, link, shown) for a, link, shown in rows] == \
        [(a, link, facts.effective_status(a, link)) for a, link, _ in rows]


def test_r18_expiry_is_one_rule():
    """A password is current exactly until the moment it is shown to expire, and the oldest current one is the
    boundary every query compares with."""
    now = START
    for days in (1, 45):
        oldest = facts.oldest_current_password(days, now)
        for changed in (oldest - timedelta(seconds=1), oldest, oldest + timedelta(seconds=1)):
            current = facts.password_current(True, changed, days, now)
            assert current == (now < facts.password_expires_at(changed, days)) == (changed > oldest)
    assert facts.password_current(True, now - timedelta(days=4000), None, now)
    assert facts.password_expires_at(now, None) is None and facts.oldest_current_password(None, now) is None
    assert not facts.password_current(False, now, None, now) and not facts.password_current(True, None, 45, now)
