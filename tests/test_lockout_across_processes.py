"""R19 under fire: parallel wrong passwords across server workers count exactly `max_failures`.

One real `portal-authz serve --workers 4` on PostgreSQL. Twenty-four wrong-password
sign-ins for one account are released at once from 24 threads, so
several workers check passwords and record failures at the same moment.

What is measured, from the database afterwards:
- every refused sign-in left one audit record whose detail says whether its
  failure was counted while the account was still active (`counted`, with its
  place in the window, `failures_in_window`) or found the account locked;
- exactly three were counted, and their places are 1, 2 and 3: each saw the
  ones before it, so count-and-insert ran one at a time per account (without
  the row lock, two would both see 0 and both be "1", and more than three
  would be counted: with the lock removed, this test counted 4 to 7 in each
  of six runs);
- exactly three failure rows exist, one `lock` audit record, the account is
  locked, and every other attempt found it locked;
- the right password then gets `account_locked`.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from service.domain import clients
from service.storage.models import Account, AuditRecord, FailedSignIn
from tests.fixtures.servers import Server, running
from tests.fixtures.world import PASSWORD, World

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WORKERS = 4
ATTEMPTS = 24
IO_TIMEOUT = 30.0


@pytest.fixture
def server(pg_database, tmp_path):
    with running(["lockout"], pg_database.url, tmp_path, workers=WORKERS) as started:
        yield started[0]


def post_session(server: Server, key: str, password: str) -> tuple[int, dict]:
    body = json.dumps({"username": "ian", "password": password}).encode()
    request = urllib.request.Request(server.base + "/v1/portals/ahcccs/sessions", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_parallel_wrong_passwords_count_exactly_three_before_the_lock(server, pg_database):
    now = datetime.now(timezone.utc)
    with pg_database.transaction() as session:
        world = World(session, "ahcccs", now)
        world.organization("ORG-1")
        world.account("ian", memberships={"ORG-1": {"permissions": ["claims"]}})
        key = clients.create_client(session, "lockout", ("manage",), now)

    start = threading.Barrier(ATTEMPTS)

    def attempt(i: int) -> tuple[int, dict]:
        start.wait()  # all of them leave together
        return post_session(server, key, f"Wrong#Guess{i:02d}x")

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        answers = list(pool.map(attempt, range(ATTEMPTS)))

    assert [(status, body.get("code")) for status, body in answers] == [(401, "invalid_credentials")] * ATTEMPTS, \
        server.output()
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1  # the locking one looks the same

    with pg_database.sessions() as session:
        status = session.scalar(select(Account.status).where(Account.username == "ian"))
        rows = session.scalar(select(func.count()).select_from(FailedSignIn))
        refusals = list(session.scalars(select(AuditRecord).where(AuditRecord.action == "sign_in")))
        locks = list(session.scalars(select(AuditRecord).where(AuditRecord.action == "lock")))
    assert status == "locked"
    assert rows == 3
    assert len(refusals) == ATTEMPTS
    counted = sorted(r.detail["failures_in_window"] for r in refusals if r.detail.get("counted"))
    assert counted == [1, 2, 3], [r.detail for r in refusals]
    assert [r.detail for r in refusals if not r.detail.get("counted")] == \
        [{"counted": False, "status": "locked"}] * (ATTEMPTS - 3)
    assert [(lock.target, lock.detail["failures"]) for lock in locks] == [("ian", 3)]

    status_code, body = post_session(server, key, PASSWORD)
    assert (status_code, body["code"]) == (401, "account_locked")
    assert server.process.poll() is None, server.output()
