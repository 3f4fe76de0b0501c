"""The embedded database under ordinary concurrency: no 500, lockout exactly three (R19).

One real `portal-authz serve --workers 4` on SQLite, the default every new user runs first. Fifty
requests leave at once (tests/fixtures/contention.py): wrong sign-ins, recovery requests and
confirmations for one account, and an admin sending password recovery to the organization's other
members. A sign-in used to hold SQLite's write lock while argon2 verified, and the writers queueing
behind it gave up (`database is locked`) and answered 500. Now argon2 runs before the write lock
(service.domain.passwords), and a wait that does expire is 503 with Retry-After, never 500.

What is checked: every answer is what its request deserves (401 invalid_credentials, 202, 422
recovery_invalid, 200), or 503 `database_busy` with Retry-After; exactly three wrong sign-ins were
counted, as places 1, 2 and 3; one lock; the account is locked.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from service.storage.database import Database
from tests.fixtures import contention
from tests.fixtures.servers import running

pytestmark = pytest.mark.slow

EXPECTED = {"sign_in": (401, "invalid_credentials"), "recover": (202, None), "confirm": (422, "recovery_invalid"),
            "admin": (200, None)}


def test_fifty_parallel_changes_on_sqlite_answer_no_500_and_lock_after_exactly_three(tmp_path):
    url = f"sqlite:///{tmp_path / 'contention.db'}"
    with running(["contention"], url, tmp_path, workers=4) as (server,):
        database = Database(url)
        key = contention.seed(database, datetime.now(timezone.utc))
        answers = contention.storm(server.base, key, 50)
        wrong = [a for a in answers if (a.status, a.code) != EXPECTED[a.kind]
                 and not (a.status == 503 and a.code == "database_busy" and a.retry_after)]
        assert wrong == [], (contention.counts(answers), server.output()[-4000:])
        assert server.process.poll() is None
        held = contention.lockout(database)
        database.dispose()
    assert held["status"] == "locked"
    assert held["counted"] == [1, 2, 3]
    assert held["failure_rows"] == 3 and held["locks"] == 1
