"""R24: the roster's status filter and keyset paging in SQL, on SQLite and PostgreSQL.

The status an admin filters on is the effective one: the link's when it is not
active (a removed link), else the account's own. Checked against that rule for
every status, with removed links, accounts of another organization and of
another portal around.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from service.domain import roster
from service.domain.work import Context
from service.domain.decisions import profile_of
from service.storage.facts import find_account
from tests.fixtures.world import World

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
# username: (account status, link status)
PEOPLE = {
    "ann": ("active", "active"), "bob": ("locked", "active"), "cyd": ("active", "removed"),
    "dee": ("locked", "removed"), "eve": ("disabled", "active"), "fay": ("removed", "removed"),
    "gus": ("pending_approval", "active"), "hal": ("pending_activation", "active"), "ivy": ("locked", "active"),
}
STATUSES = ("active", "locked", "removed", "disabled", "pending_approval", "pending_activation", "unverified")


@pytest.fixture
def org(any_database):
    with any_database.transaction() as session:
        world = World(session, "ahcccs", NOW)
        world.organization("ORG-1")
        world.organization("ORG-2")
        world.account("boss", memberships={"ORG-1": {"role": "admin"}})
        for name, (status, link) in PEOPLE.items():
            world.account(name, status=status, memberships={"ORG-1": {"status": link}})
        world.account("out", status="locked", memberships={"ORG-2": {}})
        elsewhere = World(session, "qm", NOW)
        elsewhere.account("bob2", status="locked", memberships={"ORG-1": {}})  # another portal's ORG-1
    return any_database


def listing(database, config, policy, *, status=None, limit=50, after=None, manageable=False):
    with database.transaction() as session:
        ctx = Context(session, profile_of(config, "ahcccs"), "ahcccs", policy, None, NOW, None)
        boss = find_account(session, "ahcccs", "boss")
        decision, rows, following = roster.list_accounts(ctx, boss, "ORG-1", q=None, status=status,
                                                         manageable=manageable, limit=limit, after=after)
        assert decision.allowed
        return [a.username for a in rows], following


def test_status_filter_reads_the_link_before_the_account(org, config, policy):
    effective = {name: link if link != "active" else status for name, (status, link) in PEOPLE.items()}
    effective["boss"] = "active"
    for status in STATUSES:
        assert listing(org, config, policy, status=status) == (
            sorted(n for n, s in effective.items() if s == status), None), status


def test_keyset_pages_cover_the_roster_once_in_order(org, config, policy):
    everyone = sorted([*PEOPLE, "boss"])
    assert listing(org, config, policy) == (everyone, None)
    seen, after = [], None
    while True:
        page, after = listing(org, config, policy, limit=2, after=after)
        seen += page
        if after is None:
            break
    assert seen == everyone
    locked, after = listing(org, config, policy, status="locked", limit=1, manageable=True)
    assert (locked, after) == (["bob"], "bob")
    assert listing(org, config, policy, status="locked", limit=1, manageable=True, after=after) == (["ivy"], None)


def test_search_matches_username_email_and_names_anywhere(org, config, policy):
    def found(q):
        with org.transaction() as session:
            ctx = Context(session, profile_of(config, "ahcccs"), "ahcccs", policy, None, NOW, None)
            boss = find_account(session, "ahcccs", "boss")
            return [a.username for a in roster.list_accounts(ctx, boss, "ORG-1", q=q, status=None, manageable=False,
                                                              limit=50, after=None)[1]]

    # World names each persona "<Username> Tester" with the email "<username>@example.org".
    assert found("bob") == ["bob"]                    # username (and first name)
    assert found("IVY@EXAMPLE") == ["ivy"]            # email, any case
    assert found("Ester") == sorted([*PEOPLE, "boss"])  # inside the last name
    assert found("eve test") == ["eve"]               # across first and last name
    assert found("y tes") == ["fay", "ivy"]           # the end of one, the start of the other
    assert found("nobody") == []
