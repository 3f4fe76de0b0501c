"""R3 under concurrency: two admins acting on each other at the same instant leave at least one admin.

"No change may leave an organization that has active members without an
active admin." The dangerous case is a race: A downgrades B while B downgrades
A. Each request, decided alone on a snapshot showing two admins, is allowed;
both together would orphan the organization. The service serializes such
changes by locking the organization row (SELECT ... FOR UPDATE on PostgreSQL,
BEGIN IMMEDIATE on SQLite) and re-reading the facts under the lock
(service/domain/administration.py, service/storage/database.py).

These tests start ONE real `portal-authz serve` process (4 workers, each
request on its own database connection, in its own process or thread) and fire
the two cross-actions truly in parallel, many times:

- each round has a fresh organization in portal `ahw` with two active admins
  and one active member, seeded straight into the database with World;
- two threads each hold their own TCP connection, opened before the round,
  and a threading.Barrier releases both sends at once, so the server handles
  the two requests at the same time (in two workers, or two threads of one);
- afterwards exactly one request succeeded (200) and the other was refused
  (409 `last_admin`, or 403 `forbidden` with `last_admin` among its reasons
  when the loser had itself already been demoted, or 403 `not_member` alone
  when the loser's own link had already been removed), or both were refused;
  never both 200. The database then holds exactly `2 - successes` active
  admins, and always at least one.

Actions raced: downgrade, remove, disable. `downgrade` and `remove` act on one
membership only, so one pair of admins (signed in once, argon2 is slow on
purpose) administers every organization of its phase. `disable` acts on the
whole account and ends its sessions, so each disable round gets a fresh pair.
A disable loser whose request reaches the service after the winner committed
finds its own session ended, and so does a remove loser whose only link the
winner removed (the account is then removed and its sessions end): 401
`invalid_session` is also a correct refusal there (always the case on SQLite, whose write transaction starts with the lock,
before the session is read), and it is counted separately.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from service.domain import clients
from service.storage.models import Account, Membership, Organization
from tests.fixtures.servers import Server, running
from tests.fixtures.world import PASSWORD, World

pytestmark = [pytest.mark.slow]

PORTAL = "ahw"
WORKERS = 4
IO_TIMEOUT = 15.0

PG_ROUNDS = {"downgrade": 40, "remove": 20, "disable": 20}
SQLITE_ROUNDS = {"downgrade": 10, "remove": 5, "disable": 5}


# --- the server -------------------------------------------------------------------------------


def live_server(database_url: str, tmp_path: Path):
    """One server with four workers; always stopped, its output printed at teardown."""
    with running(["serve"], database_url, tmp_path, workers=WORKERS) as started:
        yield started[0]


@pytest.fixture
def pg_server(pg_database, tmp_path):
    yield from live_server(pg_database.url, tmp_path)


@pytest.fixture
def sqlite_server(database, tmp_path):
    """The suite's SQLite file database (tests.conftest), served by a real process."""
    yield from live_server(database.url, tmp_path)


# --- seeding and signing in -------------------------------------------------------------------


@dataclass
class Round:
    action: str
    index: int
    organization: str
    first: str  # admin who acts on `second` ...
    second: str  # ... while `second` acts on `first`


def seed(database, rounds: dict[str, int], tag: str) -> tuple[str, list[Round]]:
    """All organizations, admins and members of the run, in one transaction; and a `manage` client key."""
    now = datetime.now(timezone.utc)
    planned: list[Round] = []
    with database.transaction() as session:
        world = World(session, PORTAL, now)
        key = clients.create_client(session, f"race-{tag}", ("manage",), now)
        for action, count in rounds.items():
            orgs = [f"{tag}-{action}-{i}".upper() for i in range(count)]
            for org in orgs:
                world.organization(org)
            if action in ("downgrade", "remove"):  # membership-level: one pair administers every org
                pair = (f"{tag}-{action}-a", f"{tag}-{action}-b")
                for username in pair:
                    world.account(username, memberships={org: {"role": "admin"} for org in orgs})
                planned += [Round(action, i, org, *pair) for i, org in enumerate(orgs)]
            else:  # account-level (disable ends the sessions): a fresh pair per round
                for i, org in enumerate(orgs):
                    pair = (f"{tag}-{action}-{i}-a", f"{tag}-{action}-{i}-b")
                    for username in pair:
                        world.account(username, memberships={org: {"role": "admin"}})
                    planned.append(Round(action, i, org, *pair))
            for i, org in enumerate(orgs):
                world.account(f"{tag}-{action}-{i}-m", memberships={org: {"role": "member"}})
    return key, planned


def sign_in_all(server: Server, key: str, usernames: set[str]) -> dict[str, str]:
    """POST .../sessions for every admin (a few at a time: argon2 is slow on purpose)."""

    def sign_in(username: str) -> tuple[str, str]:
        response = requests.post(f"{server.base}/v1/portals/{PORTAL}/sessions", timeout=IO_TIMEOUT,
                                 headers={"Authorization": f"Bearer {key}"},
                                 json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, (username, response.status_code, response.text, server.output())
        return username, response.json()["token"]

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(pool.map(sign_in, sorted(usernames)))


def active_admins(database, organization: str) -> int:
    """Active admin memberships of active accounts: what R3 protects."""
    with database.sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Membership)
            .join(Organization, Membership.organization_id == Organization.id)
            .join(Account, Membership.account_id == Account.id)
            .where(Organization.portal_id == PORTAL, Organization.key == organization,
                   Membership.role == "admin", Membership.status == "active", Account.status == "active"))


# --- the race ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: dict
    sent_at: float  # time.perf_counter() just before the request left this process

    @property
    def reasons(self) -> list[str]:
        return [r.get("code") for r in self.body.get("reasons", [])]


def race(server: Server, key: str, rnd: Round, tokens: dict[str, str]) -> tuple[Reply, Reply]:
    """`first` acts on `second` and `second` on `first`, released together by a barrier."""
    path = f"/v1/portals/{PORTAL}/accounts/{{}}/{rnd.action}"
    body = json.dumps({"organization": rnd.organization}).encode()
    jobs = [(rnd.first, rnd.second), (rnd.second, rnd.first)]
    # Open both connections first, so that sending the two requests is all that is left to do at the barrier.
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=IO_TIMEOUT) for _ in jobs]
    for connection in connections:
        connection.connect()
    barrier = threading.Barrier(len(jobs), timeout=IO_TIMEOUT)
    replies: list[Reply | BaseException | None] = [None] * len(jobs)

    def fire(slot: int) -> None:
        actor, target = jobs[slot]
        connection = connections[slot]
        headers = {"Authorization": f"Bearer {key}", "X-Session-Token": tokens[actor],
                   "Content-Type": "application/json", "Content-Length": str(len(body))}
        try:
            connection.putrequest("POST", path.format(target), skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            barrier.wait()
            sent_at = time.perf_counter()
            connection.endheaders(body)  # head and body in one send
            response = connection.getresponse()
            payload = response.read()
            replies[slot] = Reply(response.status, json.loads(payload) if payload else {}, sent_at)
        except BaseException as exc:  # reported by the caller
            replies[slot] = exc

    threads = [threading.Thread(target=fire, args=(slot,)) for slot in range(len(jobs))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(IO_TIMEOUT * 2)
    finally:
        for connection in connections:
            connection.close()
    for reply in replies:
        if not isinstance(reply, Reply):
            raise AssertionError(f"round {rnd.action}#{rnd.index}: a request failed: {reply!r}\n{server.output()}")
    return replies[0], replies[1]


def refusal_kind(action: str, reply: Reply) -> str | None:
    """The accepted shapes of the loser's refusal, or None."""
    if reply.status == 409 and reply.body.get("code") == "last_admin" and reply.reasons == ["last_admin"]:
        return "409 last_admin"
    if reply.status == 403 and reply.body.get("code") == "forbidden" and "last_admin" in reply.reasons:
        return "403 last_admin"  # the loser was itself demoted first: not_admin and last_admin
    if action in ("disable", "remove") and reply.status == 401 and reply.body.get("code") == "invalid_session":
        return "401 invalid_session"  # the winner disabled or removed this actor and ended its sessions first
    if action == "remove" and reply.status == 403 and "not_member" in reply.reasons \
            and set(reply.reasons) <= {"not_member", "actor_inactive"}:
        # The winner removed the loser's link first: the loser is no longer a member (and, its last link
        # gone, no longer active), and a non-member is told nothing of the target's state.
        return "403 not_member"
    return None


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    skews_ms: list[float] = field(default_factory=list)
    first_double_success: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{action:9} {outcome:36} {count}" for (action, outcome), count in sorted(self.outcomes.items())]
        skew = (f"send skew between the two threads: median {sorted(self.skews_ms)[len(self.skews_ms) // 2]:.3f} ms,"
                f" max {max(self.skews_ms):.3f} ms") if self.skews_ms else ""
        return "\n".join(["outcomes per action:", *lines, skew,
                          f"first double success (round index) per action: {self.first_double_success or 'none'}"])


def run_rounds(server: Server, database, rounds: dict[str, int], tag: str) -> Tally:
    key, planned = seed(database, rounds, tag)
    tokens = sign_in_all(server, key, {u for r in planned for u in (r.first, r.second)})
    tally = Tally()
    for rnd in planned:
        a, b = race(server, key, rnd, tokens)
        tally.skews_ms.append(abs(a.sent_at - b.sent_at) * 1000)
        successes = [a.status, b.status].count(200)
        admins_left = active_admins(database, rnd.organization)
        where = f"{rnd.action}#{rnd.index} ({rnd.organization})"
        replies = f"{rnd.first}->{rnd.second}: {a.status} {a.body}; {rnd.second}->{rnd.first}: {b.status} {b.body}"
        if successes == 2:
            tally.outcomes[(rnd.action, "BOTH SUCCEEDED")] += 1
            tally.first_double_success.setdefault(rnd.action, rnd.index)
            tally.violations.append(f"{where}: both succeeded, {admins_left} active admin(s) left; {replies}")
        elif successes == 1:
            loser = b if a.status == 200 else a
            kind = refusal_kind(rnd.action, loser)
            tally.outcomes[(rnd.action, f"one 200, other {kind or 'UNEXPECTED'}")] += 1
            if kind is None:
                tally.violations.append(f"{where}: unexpected refusal shape; {replies}")
        else:
            kinds = [refusal_kind(rnd.action, reply) for reply in (a, b)]
            tally.outcomes[(rnd.action, "both refused")] += 1
            if None in kinds:
                tally.violations.append(f"{where}: unexpected refusal shape; {replies}")
        if admins_left < 1 or admins_left != 2 - successes:
            tally.violations.append(f"{where}: {admins_left} active admin(s) left after {successes} success(es); "
                                    f"{replies}")
    return tally


def check(tally: Tally, rounds: dict[str, int], backend: str) -> None:
    summary = tally.summary()
    print(f"\n[{backend}] {sum(rounds.values())} rounds\n{summary}")
    assert not tally.violations, (
        f"[{backend}] R3 violated or unexpected answers in {len(tally.violations)} round(s):\n"
        + "\n".join(tally.violations[:20]) + "\n" + summary)
    assert sum(tally.outcomes.values()) == sum(rounds.values()), summary
    for action in rounds:  # not vacuous: the race was run and someone won it
        won = sum(n for (act, outcome), n in tally.outcomes.items() if act == action and outcome.startswith("one 200"))
        assert won > 0, f"[{backend}] no {action} round had a winner; the test proves nothing\n{summary}"


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_r3_cross_demotion_race_on_postgresql(pg_server, pg_database):
    started = time.monotonic()
    tally = run_rounds(pg_server, pg_database, PG_ROUNDS, "pg")
    print(f"[postgresql] rounds took {time.monotonic() - started:.1f}s")
    check(tally, PG_ROUNDS, "postgresql")
    assert pg_server.process.poll() is None, pg_server.output()


def test_r3_cross_demotion_race_on_sqlite(sqlite_server, database):
    started = time.monotonic()
    tally = run_rounds(sqlite_server, database, SQLITE_ROUNDS, "lite")
    print(f"[sqlite] rounds took {time.monotonic() - started:.1f}s")
    check(tally, SQLITE_ROUNDS, "sqlite")
    assert sqlite_server.process.poll() is None, sqlite_server.output()
