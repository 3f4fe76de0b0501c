"""R24: the roster's `q=` search returns exactly what the plain query returns, on SQLite and PostgreSQL.

On PostgreSQL the search is one statement that reads the page one of four ways (`roster._Search`: the
organization's members, a bounded walk in username order, the trigram matches, or the planner's plain
query), chosen by bounded measures of the organization and the pattern. Each way must give the same rows,
in the same order, with the same next cursor, as the straightforward answer: the unsearched listing (the
path tests/test_roster_listing.py checks) filtered by the substring rule. The thresholds are set so that
each way runs on its own, then at small values where the measures decide, over a grid of patterns, the
status filter's two parts, `manageable`, page sizes and cursors. On SQLite there is one way, the LIKE query.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from service.domain import roster
from service.domain.decisions import profile_of
from service.domain.work import Context
from service.storage.facts import find_account
from tests.fixtures.world import World

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
FIRST = ("maria", "james", "linda", "robert", "susan", "ryan")
LAST = ("garcia", "garciason", "smith", "lopez", "wood")
# (account status, link status), cycled over the members.
STANDING = (("active", "active"), ("active", "active"), ("locked", "active"), ("pending_approval", "active"),
            ("active", "removed"), ("disabled", "active"))
# Patterns with no three letters or digits in a row ("s", "an lo", "'h") are written into the statement's
# text on PostgreSQL (roster._found): a quote among them must stay a quote.
PATTERNS = ("garcia", "GarciaSon", "@example", "elsewhere", "s", "an lo", "'h", "o'hara", "zzz")
# (SMALL, WALK, FEW, MID): each of the four ways alone, then settings where the measures choose.
SETTINGS = {
    "members": (10**9, 10**9, 10**9, 10**9),
    "walk": (0, 10**9, 10**9, 10**9),
    "matches": (0, 0, 10**9, 10**9),
    "members, after the others": (0, 0, -1, 10**9),
    "planner": (0, 0, -1, -1),
    "measured": (0, 4, 6, 8),
}


@pytest.fixture
def org(any_database):
    with any_database.transaction() as session:
        world = World(session, "ahcccs", NOW)
        world.account("boss", memberships={"ORG-1": {"role": "admin"}})
        n = 0
        for first in FIRST:
            for last in LAST:
                n += 1
                status, link = STANDING[n % len(STANDING)]
                account = world.account(f"{first}.{last}", status=status, memberships={"ORG-1": {"status": link}})
                account.first_name, account.last_name = first.title(), last.title()
                # Others of the portal match too, in another organization, some with a domain of their own.
                other = world.account(f"{last}.{first}", memberships={"ORG-2": {}})
                other.first_name, other.last_name = last.title(), first.title()
                if n % 2:
                    other.email = other.email_key = f"{last}.{first}@elsewhere.org"
        irish = world.account("sean.ohara", memberships={"ORG-1": {}})
        irish.first_name, irish.last_name = "Sean", "O'Hara"
        elsewhere = World(session, "qm", NOW)
        elsewhere.account("maria.garcia", memberships={"ORG-1": {}})  # another portal's ORG-1
    return any_database


def _listing(database, config, policy, actor, *, q=None, status=None, manageable=False, limit=200, after=None):
    with database.transaction() as session:
        ctx = Context(session, profile_of(config, "ahcccs"), "ahcccs", policy, None, NOW, None)
        decision, rows, following = roster.list_accounts(ctx, find_account(session, "ahcccs", actor), "ORG-1", q=q,
                                                         status=status, manageable=manageable, limit=limit,
                                                         after=after)
        assert decision.allowed
        return [(a.username_key, a.email_key, f"{a.first_name} {a.last_name}".lower()) for a in rows], following


def _pages(database, config, policy, actor, q, status, manageable, limit, after):
    """Every page from `after` on, following the cursor: [(keys, next)]."""
    pages = []
    while True:
        rows, following = _listing(database, config, policy, actor, q=q, status=status, manageable=manageable,
                                   limit=limit, after=after)
        pages.append(([key for key, _, _ in rows], following))
        if following is None:
            return pages
        after = following


def _expected(everyone, q, limit, after):
    """The plain answer: the unsearched listing (in the database's order), filtered by the substring rule,
    paged from `after` (a key of the listing)."""
    needle, order = q.casefold(), {key: i for i, (key, _, _) in enumerate(everyone)}
    keys = [key for key, email, name in everyone if (needle in key or needle in email or needle in name)
            and (after is None or order[key] > order[after])]
    pages = []
    while True:
        page, keys = keys[:limit], keys[limit:]
        pages.append((page, page[-1] if keys else None))
        if not keys:
            return pages


# (actor, manageable, status filter): everyone but oneself; the status filter's two parts.
LISTINGS = (("boss", True, None), ("boss", False, "removed"))


def _compare(database, config, policy):
    found = 0
    for actor, manageable, status in LISTINGS:
        everyone, following = _listing(database, config, policy, actor, status=status, manageable=manageable)
        assert following is None and everyone
        middle = everyone[len(everyone) // 2][0]
        for q in PATTERNS:
            got = _pages(database, config, policy, actor, q, status, manageable, 3, None)
            assert got == _expected(everyone, q, 3, None), (actor, manageable, status, q)
            page = _listing(database, config, policy, actor, q=q, status=status, manageable=manageable, limit=2,
                            after=middle)
            assert ([key for key, _, _ in page[0]], page[1]) == _expected(everyone, q, 2, middle)[0], (
                actor, manageable, status, q, middle)
            found += sum(len(keys) for keys, _ in got)
    return found


def test_search_equals_the_plain_query(org, config, policy, monkeypatch):
    """Each setting of the thresholds on PostgreSQL; SQLite has one way (the thresholds are not read there)."""
    postgres = org.engine.dialect.name == "postgresql"
    for setting, values in SETTINGS.items() if postgres else [("sqlite", SETTINGS["members"])]:
        for name, value in zip(("SMALL", "WALK", "FEW", "MID"), values):
            monkeypatch.setattr(roster._Search, name, value)
        assert _compare(org, config, policy) > 50, setting  # the grid finds rows, not only empty pages


def test_postgres_connections_run_without_jit(pg_database):
    """JIT would compile the search statement whenever its branches' estimated costs add up past
    `jit_above_cost`, those never run included: hundreds of milliseconds for a 2 ms page."""
    with pg_database.engine.connect() as connection:
        assert connection.execute(text("SHOW jit")).scalar() == "off"
