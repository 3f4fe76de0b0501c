"""The inactivity sweep (R22 qm lock/delete with warnings, R23 ahw disable): domain, HTTP and command line.

Days inactive = whole UTC calendar days between the day of last activity (else
creation) and today. qm: warnings on days 56..60 (days_left 5..1), locked on
day 61 ("more than 60 days"); delete warnings 116..120, deleted on day 121.
ahw: disabled on day 90. See service/domain/sweep.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import event, func, select

from service.domain.access_requests import expiry_email
from service.domain.sweep import sweep
from service.storage.models import Account, AuditRecord, Grant, Membership, Notification, SessionToken
from tests.conftest import START, make_key
from tests.fixtures.world import PASSWORD, World


def seed(database, portal, now, ages, **options):
    """Accounts named <prefix><age> whose last activity was `age` days before `now`."""
    prefix = options.pop("prefix", "u")
    with database.transaction() as session:
        world = World(session, portal, now)
        for age in ages:
            account = world.account(f"{prefix}{age}", **options)
            account.last_activity_at = now - timedelta(days=age)


def statuses(database, portal=None):
    with database.sessions() as session:
        query = select(Account.username, Account.status)
        if portal:
            query = query.where(Account.portal_id == portal)
        return dict(session.execute(query).all())


def warnings(database):
    """(username, template, days_left, UTC day sent) for every notification, oldest first."""
    with database.sessions() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id))
        return [(n.payload["username"], n.template, n.payload["days_left"], n.created_at.date().isoformat())
                for n in rows]


def count(database, model):
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- the domain function, on SQLite and on PostgreSQL --------------------------------------------------


def test_open_access_requests_past_their_expiry_are_closed_and_audited(any_database, config):
    """The sweep expires what the lazy path would when next touched: the same status, decided_at and audit."""
    from service.storage.models import AccessRequest

    with any_database.transaction() as session:
        world = World(session, "ahw", START)
        ann = world.account("ann", memberships={"T1": {"role": "admin"}})
        sam = world.account("sam", memberships={"T1": {}})
        other = World(session, "masshealth", START).account("pat", memberships={"M1": {}})
        orgs = {a.username: a.memberships[0].organization_id for a in (ann, sam, other)}

        def made(account, portal, permission, expires, status="open"):
            request = AccessRequest(portal_id=portal, account_id=account.id, organization_id=orgs[account.username],
                                    permission=permission, status=status, created_at=START - timedelta(days=20),
                                    expires_at=expires)
            session.add(request)
            session.flush()
            return request.id

        due = made(sam, "ahw", "claims", START)                           # expires now: closed
        later = made(sam, "ahw", "eligibility", START + timedelta(seconds=1))
        declined = made(sam, "ahw", "health_records", START - timedelta(days=5), "declined")
        elsewhere = made(other, "masshealth", "manage_referrals", START - timedelta(days=1))
    result = sweep(any_database, config, START, portal="ahw")
    assert result.portals["ahw"].expired == result.expired == 1
    assert result.counts() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}  # not an inactivity count
    with any_database.sessions() as session:
        rows = {r.id: (r.status, r.decided_at) for r in session.scalars(select(AccessRequest))}
        records = [(r.actor, r.target, r.organization, r.outcome, r.detail, r.occurred_at) for r in session.scalars(
            select(AuditRecord).where(AuditRecord.action == "access_request_expired"))]
    assert rows == {due: ("expired", START), later: ("open", None), declined: ("declined", None),
                    elsewhere: ("open", None)}
    assert records == [(None, "sam", "T1", "done", {"id": due, "permission": "claims"}, START)]
    with any_database.sessions() as session:  # the requester told, as a request found expired when touched is
        told = [(n.recipient, n.template, n.payload, n.created_at) for n in session.scalars(
            select(Notification).where(Notification.template == "access_request_expired"))]
    assert told == [("sam@example.org", "access_request_expired", expiry_email(due, "T1", "claims"), START)]
    # Idempotent: a second run changes nothing and records nothing.
    audited = count(any_database, AuditRecord)
    assert sweep(any_database, config, START, portal="ahw").expired == 0
    assert count(any_database, AuditRecord) == audited


def test_qm_boundaries_lock_after_60_delete_after_120_with_five_warnings(any_database, config):
    ages = [54, 55, 56, 59, 60, 61, 115, 116, 120, 121]
    seed(any_database, "qm", START, ages)
    result = sweep(any_database, config, START, portal="qm")
    assert statuses(any_database) == {
        "u54": "active", "u55": "active", "u56": "active", "u59": "active", "u60": "active",
        "u61": "locked", "u115": "locked", "u116": "locked", "u120": "locked", "u121": "removed"}
    day = START.date().isoformat()
    assert sorted(warnings(any_database)) == sorted([
        ("u56", "inactivity_lock_warning", 5, day),      # first lock warning: 5 days before day 61
        ("u59", "inactivity_lock_warning", 2, day),
        ("u60", "inactivity_lock_warning", 1, day),      # last lock warning: the day before
        ("u116", "inactivity_delete_warning", 5, day),
        ("u120", "inactivity_delete_warning", 1, day),
    ])
    assert result.counts() == {"warned": 5, "locked": 4, "disabled": 0, "deleted": 1}
    with any_database.sessions() as session:
        mail = session.scalar(select(Notification).where(Notification.recipient == "u60@example.org"))
        assert (mail.channel, mail.status, mail.portal_id) == ("email", "queued", "qm")
        assert mail.payload == {"username": "u60", "first_name": "U60", "action": "lock", "days_left": 1,
                                "happens_on": (START.date() + timedelta(days=1)).isoformat()}


def test_a_warned_account_gets_one_warning_each_day_then_the_action(any_database, config):
    seed(any_database, "qm", START, [56])
    seen = []
    for day in range(6):
        now = START + timedelta(days=day)
        first = sweep(any_database, config, now, portal="qm")
        later = sweep(any_database, config, now + timedelta(hours=14, minutes=59), portal="qm")  # 23:59 UTC
        assert later.counts() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}
        seen.append((first.warned, first.locked))
    assert seen == [(1, 0), (1, 0), (1, 0), (1, 0), (1, 0), (0, 1)]
    assert [w[2] for w in warnings(any_database)] == [5, 4, 3, 2, 1]
    assert statuses(any_database)["u56"] == "locked"


def test_running_twice_on_the_same_day_changes_nothing_and_sends_nothing(any_database, config):
    seed(any_database, "qm", START, [57, 61, 118, 130])
    seed(any_database, "ahw", START, [90, 95], prefix="h")
    first = sweep(any_database, config, START)
    before = (statuses(any_database), warnings(any_database), count(any_database, AuditRecord))
    second = sweep(any_database, config, START + timedelta(hours=3))
    assert first.counts() == {"warned": 2, "locked": 2, "disabled": 2, "deleted": 1}
    assert second.counts() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}
    assert (statuses(any_database), warnings(any_database), count(any_database, AuditRecord)) == before


def test_the_same_calendar_day_counts_once_whatever_the_hour(any_database, config):
    """Last active at 21:00 57 days ago: at 09:00 floor(elapsed) would say 56, at 23:00 57; one day, one email."""
    with any_database.transaction() as session:
        account = World(session, "qm", START).account("late")
        account.last_activity_at = START.replace(hour=21) - timedelta(days=57)
    assert sweep(any_database, config, START, portal="qm").warned == 1
    assert sweep(any_database, config, START.replace(hour=23), portal="qm").warned == 0
    assert warnings(any_database) == [("late", "inactivity_lock_warning", 4, START.date().isoformat())]


def test_two_accounts_sharing_an_email_are_warned_separately(any_database, config):
    with any_database.transaction() as session:
        world = World(session, "qm", START)
        for name in ("twin.a", "twin.b"):
            account = world.account(name)
            account.email = account.email_key = "shared@example.org"
            account.last_activity_at = START - timedelta(days=58)
    assert sweep(any_database, config, START, portal="qm").warned == 2
    assert sweep(any_database, config, START, portal="qm").warned == 0
    assert sorted(w[0] for w in warnings(any_database)) == ["twin.a", "twin.b"]


def test_ahw_disables_on_day_90_without_warnings(any_database, config):
    seed(any_database, "ahw", START, [85, 89, 90, 200])
    seed(any_database, "ahw", START, [95], prefix="locked", status="locked")
    result = sweep(any_database, config, START, portal="ahw")
    assert statuses(any_database) == {"u85": "active", "u89": "active", "u90": "disabled", "u200": "disabled",
                                      "locked95": "disabled"}
    assert result.counts() == {"warned": 0, "locked": 0, "disabled": 3, "deleted": 0}
    assert warnings(any_database) == []


def test_support_staff_are_swept_like_every_account(any_database, config):
    """Idle support accounts are warned, locked, disabled and deleted like the rest (R22, R23)."""
    seed(any_database, "qm", START, [58, 61, 200], prefix="staff", support=True)
    seed(any_database, "ahw", START, [89, 90], prefix="help", support=True)
    result = sweep(any_database, config, START)
    assert statuses(any_database) == {"staff58": "active", "staff61": "locked", "staff200": "removed",
                                      "help89": "active", "help90": "disabled"}
    assert result.counts() == {"warned": 1, "locked": 1, "disabled": 1, "deleted": 1}
    assert warnings(any_database) == [("staff58", "inactivity_lock_warning", 3, START.date().isoformat())]
    with any_database.sessions() as session:
        audited = set(session.execute(select(AuditRecord.action, AuditRecord.target)
                                      .where(AuditRecord.target.is_not(None))).all())
    assert audited == {("inactivity_lock", "staff61"), ("inactivity_delete", "staff200"),
                       ("inactivity_disable", "help90")}


def test_pending_accounts_and_other_portals_are_untouched(any_database, config):
    for status in ("pending_activation", "pending_approval", "unverified"):
        seed(any_database, "qm", START, [58, 200], prefix=status, status=status)
    seed(any_database, "ahcccs", START, [58, 200], prefix="az")
    seed(any_database, "masshealth", START, [200], prefix="mh")
    result = sweep(any_database, config, START)
    assert result.counts() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}
    assert set(statuses(any_database).values()) == {"active", "pending_activation", "pending_approval",
                                                    "unverified"}
    assert warnings(any_database) == [] and count(any_database, AuditRecord) == 0


def test_disabled_accounts_are_not_locked_but_are_deleted(any_database, config):
    seed(any_database, "qm", START, [70, 121], prefix="off", status="disabled")
    seed(any_database, "qm", START, [58], prefix="off", status="disabled")
    sweep(any_database, config, START, portal="qm")
    assert statuses(any_database) == {"off70": "disabled", "off121": "removed", "off58": "disabled"}
    assert warnings(any_database) == []  # a disabled account will not be locked, so no lock warning


def test_deletion_is_a_soft_delete_that_removes_links_grants_and_sessions(any_database, config):
    with any_database.transaction() as session:
        world = World(session, "qm", START)
        gone = world.account("gone", memberships={"P-1": {"role": "admin", "permissions": ["ccpr"]},
                                                  "P-2": {"permissions": ["ccpr"]}})
        kept = world.account("kept", memberships={"P-1": {"permissions": ["ccpr"]}})
        idle = world.account("idle", memberships={"P-1": {}})
        gone.last_activity_at = START - timedelta(days=121)
        idle.last_activity_at = START - timedelta(days=61)
        for account in (gone, kept, idle):
            session.add(SessionToken(token_digest=f"{account.username:0<64}", account_id=account.id,
                                     created_at=START, expires_at=START + timedelta(hours=8)))
    sweep(any_database, config, START, portal="qm", client="ops")
    with any_database.sessions() as session:
        link_status = dict(session.execute(select(Account.username, Membership.status).join(Membership)
                                           .where(Account.username != "gone")).all())
        gone_links = session.scalars(select(Membership.status).join(Account).where(Account.username == "gone"))
        grants = session.execute(select(Account.username, Grant.permission).select_from(Grant).join(Membership)
                                 .join(Account)).all()
        ended = dict(session.execute(select(Account.username, SessionToken.ended_at).join(Account)).all())
        audit = session.execute(select(AuditRecord.action, AuditRecord.target, AuditRecord.client)
                                .order_by(AuditRecord.id)).all()
    assert statuses(any_database) == {"gone": "removed", "kept": "active", "idle": "locked"}
    assert set(gone_links) == {"removed"} and link_status == {"kept": "active", "idle": "active"}
    assert grants == [("kept", "ccpr")]
    assert ended == {"gone": START, "kept": None, "idle": START}
    assert audit[:2] == [("inactivity_delete", "gone", "ops"), ("inactivity_lock", "idle", "ops")]
    assert audit[2][0] == "inactivity_sweep"
    # "gone" was P-1's only admin and "kept" is still active there: support is told (R4).
    assert audit[3:] == [("no_active_admin", None, "ops")]


def test_the_sweep_is_set_based(any_database, config):
    """The number of SQL statements does not grow with the number of accounts."""

    def statements_for(ages, now):
        with any_database.transaction() as session:
            world = World(session, "qm", START)
            for i, age in enumerate(ages):
                world.account(f"n{len(ages)}x{i}").last_activity_at = START - timedelta(days=age)
        executed = []
        listener = lambda *args: executed.append(1)  # noqa: E731
        event.listen(any_database.engine, "before_cursor_execute", listener)
        try:
            sweep(any_database, config, now, portal="qm")
        finally:
            event.remove(any_database.engine, "before_cursor_execute", listener)
        return len(executed)

    few = statements_for([57, 62, 125], START)
    many = statements_for([57 + i % 80 for i in range(120)], START + timedelta(days=1))
    assert few == many


# --- HTTP ------------------------------------------------------------------------------------------------


def _post(client, key, portal="qm"):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(f"/v1/portals/{portal}/maintenance/sweep", headers=headers)


def test_api_runs_the_sweep_for_one_portal_and_reports_counts(client, database, clock, config):
    seed(database, "qm", START, [56, 61, 121])
    seed(database, "ahw", START, [90], prefix="h")
    key = make_key(database, ("enroll",), clock.now())
    response = _post(client, key)
    assert response.status_code == 200
    assert response.get_json() == {"warned": 1, "locked": 1, "disabled": 0, "deleted": 1}
    assert statuses(database, "ahw") == {"h90": "active"}  # only the named portal
    assert _post(client, key).get_json() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}
    assert _post(client, key, "ahw").get_json() == {"warned": 0, "locked": 0, "disabled": 1, "deleted": 0}
    clock.advance(timedelta(days=1))
    assert _post(client, key).get_json() == {"warned": 1, "locked": 0, "disabled": 0, "deleted": 0}
    with database.sessions() as session:
        clients = set(session.scalars(select(AuditRecord.client).where(AuditRecord.action.like("inactivity_%"))))
    assert clients == {"test-enroll"}


def test_api_checks_the_client_scope_and_the_portal(client, database, clock):
    seed(database, "qm", START, [61])
    assert _post(client, None).status_code == 401
    wrong = make_key(database, ("authorize", "manage"), clock.now())
    denied = _post(client, wrong)
    assert denied.status_code == 403 and denied.get_json()["code"] == "insufficient_scope"
    key = make_key(database, ("enroll",), clock.now())
    assert _post(client, key, "nowhere").status_code == 404
    assert statuses(database) == {"u61": "active"}  # nothing ran


def test_signing_in_resets_the_clock(client, database, clock, config):
    seed(database, "qm", START, [60])
    key = make_key(database, ("manage", "enroll"), clock.now())
    signed_in = client.post("/v1/portals/qm/sessions", json={"username": "u60", "password": PASSWORD},
                            headers={"Authorization": f"Bearer {key}"})
    assert signed_in.status_code == 201
    clock.advance(timedelta(days=1))  # day 61 of the old clock, day 1 of the new
    assert _post(client, key).get_json() == {"warned": 0, "locked": 0, "disabled": 0, "deleted": 0}
    clock.advance(timedelta(days=55))  # day 56 since the sign-in: the first warning
    assert _post(client, key).get_json()["warned"] == 1
    clock.advance(timedelta(days=5))  # day 61: locked
    assert _post(client, key).get_json()["locked"] == 1
    assert statuses(database) == {"u60": "locked"}


def test_an_account_manager_re_enables_a_disabled_ahw_account(client, database, clock, config):
    with database.transaction() as session:
        world = World(session, "ahw", START)
        world.account("kim", memberships={"TIN-1": {"role": "admin"}})
        world.account("uma", memberships={"TIN-1": {}}).last_activity_at = START - timedelta(days=90)
    key = make_key(database, ("manage", "enroll"), clock.now())
    headers = {"Authorization": f"Bearer {key}"}
    assert _post(client, key, "ahw").get_json()["disabled"] == 1
    token = client.post("/v1/portals/ahw/sessions", json={"username": "kim", "password": PASSWORD},
                        headers=headers).get_json()["token"]
    enabled = client.post("/v1/portals/ahw/accounts/uma/enable", headers={**headers, "X-Session-Token": token})
    assert enabled.status_code == 200 and enabled.get_json()["status"] == "active"
    clock.advance(timedelta(days=89))
    assert _post(client, key, "ahw").get_json()["disabled"] == 0  # enabling reset uma's clock (kim's too)
    clock.advance(timedelta(days=1))
    assert _post(client, key, "ahw").get_json()["disabled"] == 2
    assert statuses(database) == {"kim": "disabled", "uma": "disabled"}


# --- command line ------------------------------------------------------------------------------------------


def test_cli_sweep_prints_counts_per_portal(cli_config, cli):
    from service.cli import prepare_database
    from service.config import load_config

    database = prepare_database(load_config(cli_config))
    now = datetime.now(timezone.utc)  # the command uses the system clock
    seed(database, "qm", now, [57, 61, 121])
    seed(database, "ahw", now, [91], prefix="h")
    database.dispose()
    code, out, _ = cli("sweep", "--portal", "qm", "--config", str(cli_config))
    assert code == 0 and out.splitlines() == ["qm: warned=1 locked=1 disabled=0 deleted=1"]
    code, out, _ = cli("sweep", "--config", str(cli_config))
    assert code == 0 and sorted(out.splitlines()) == ["ahcccs: warned=0 locked=0 disabled=0 deleted=0",
                                                      "ahw: warned=0 locked=0 disabled=1 deleted=0",
                                                      "masshealth: warned=0 locked=0 disabled=0 deleted=0",
                                                      "qm: warned=0 locked=0 disabled=0 deleted=0"]
    code, _, err = cli("sweep", "--portal", "nowhere", "--config", str(cli_config))
    assert code == 2 and "unknown portal 'nowhere'" in err
