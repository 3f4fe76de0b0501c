"""Revoking a grant changes the very next decision at once, from every worker of every server.

Two real `portal-authz serve` processes (gunicorn, two sync workers each: see
below) share one PostgreSQL database. The test writes straight into that database (as
another replica or an admin's change would) and asks both servers again.

To be sure *each worker* answers, not just some worker, `ask_every_worker`
opens one connection per worker and sends only the head of a request on each.
A sync worker that accepted such a connection is stuck reading it until the
rest arrives, so it cannot accept another one: the N held connections are
answered by N different workers. That needs gunicorn's sync workers, so these
servers run them (`server.engine: gunicorn`, one thread) instead of the default
granian, whose threads would take several held connections in one process; the
property tested, no state kept in a process, does not depend on the server.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import delete, select, update

from service.domain import clients
from service.policy import Policy
from service.storage.models import Grant, Membership
from tests.fixtures.servers import ROOT, WORKERS, Server, ask_every_worker, ask_server, get_json, running
from tests.fixtures.world import World

pytestmark = [pytest.mark.slow, pytest.mark.postgres]



@pytest.fixture
def servers(pg_database, tmp_path):
    """Two servers on one fresh PostgreSQL database; stopped (and killed if need be) afterwards."""
    with running(["server-a", "server-b"], pg_database.url, tmp_path,
                 server={"engine": "gunicorn", "threads": 1}) as started:
        yield started


def answers_from_everywhere(servers: list[Server], key: str, actor: str, action: str = "claims",
                            extra: int = 3) -> list[dict]:
    """Each worker of each server once, then `extra` more plain requests per server."""
    body = {"portal": "ahcccs", "actor": actor, "action": action,
            "resource": {"type": "organization", "id": "ORG-1"}}
    answers = []
    for server in servers:
        answers += ask_every_worker(server, key, body)
        answers += [ask_server(server, key, body) for _ in range(extra)]
    return answers


def codes(answer: dict) -> list[str]:
    return [reason["code"] for reason in answer["reasons"]]


def test_a_revoked_grant_or_removed_membership_denies_at_once_on_every_worker(servers, pg_database):
    now = datetime.now(timezone.utc)
    with pg_database.transaction() as session:
        world = World(session, "ahcccs", now)
        world.organization("ORG-1")
        world.account("boss", memberships={"ORG-1": {"role": "admin"}})
        for username in ("alice", "bob", "carol"):
            world.account(username, memberships={"ORG-1": {"permissions": ["claims", "eligibility"]}})
        key = clients.create_client(session, "across-processes", ("authorize",), now)

    # Same policy in every process, and it is the one in the repository.
    versions = [get_json(server.base + "/readyz") for server in servers]
    assert [status for status, _ in versions] == [200, 200]
    assert versions[0][1]["policy_version"] == versions[1][1]["policy_version"] == \
        Policy(ROOT / "policies").version

    expected = len(servers) * (WORKERS + 3)
    for actor in ("alice", "bob", "carol"):
        answers = answers_from_everywhere(servers, key, actor)
        assert len(answers) == expected
        assert all(a["allowed"] and a["reasons"] == [] for a in answers), answers
        assert {a["policy_version"] for a in answers} == {versions[0][1]["policy_version"]}

    # Revoke alice's claims grant: the next request, on every worker of both servers, is denied.
    with pg_database.transaction() as session:
        link = session.scalar(select(Membership.id).where(Membership.account.has(username="alice")))
        deleted = session.execute(delete(Grant).where(Grant.membership_id == link, Grant.permission == "claims"))
        assert deleted.rowcount == 1
    answers = answers_from_everywhere(servers, key, "alice")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["permission_not_granted"])] * expected

    # Remove bob from the organization (the service's way: the link's status) ...
    with pg_database.transaction() as session:
        changed = session.execute(update(Membership).where(Membership.account.has(username="bob"))
                                  .values(status="removed"))
        assert changed.rowcount == 1
    answers = answers_from_everywhere(servers, key, "bob")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["not_member"])] * expected

    # ... and delete carol's membership row outright.
    with pg_database.transaction() as session:
        gone = session.execute(delete(Membership).where(Membership.account.has(username="carol")))
        assert gone.rowcount == 1
    answers = answers_from_everywhere(servers, key, "carol")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["not_member"])] * expected

    # Nothing else changed: alice keeps her other grant, the admin still holds the catalog.
    for actor, action in (("alice", "eligibility"), ("boss", "claims")):
        answers = answers_from_everywhere(servers, key, actor, action, extra=0)
        assert [(a["allowed"], a["reasons"]) for a in answers] == [(True, [])] * (len(servers) * WORKERS)
    for server in servers:
        assert server.process.poll() is None, server.output()
