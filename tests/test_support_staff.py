"""Support staff under the operators' control (R1, R4, R27).

GET .../support-staff lists them; .../{username}/disable, /enable and DELETE do what they say, end
their sessions at once and are audited with the calling client; a support account records the
client that created it. Everything through HTTP.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.storage.models import Account, AuditRecord, SessionToken
from tests.conftest import make_key

STRONG = "Secure#Pass42x"  # the person's own password
CHOSEN = "Chosen#ByClient42"  # the password the enroll client chose
HELP = {"username": "Help.Desk", "first_name": "Help", "last_name": "Desk", "email": "help@example.org",
        "password": CHOSEN}


@pytest.fixture
def keys(database, clock):
    return {"enroll": make_key(database, ("enroll",), clock.now()),
            "manage": make_key(database, ("manage",), clock.now())}


@pytest.fixture
def call(client, keys):
    def _call(method, path, body=None, key="enroll", token=None):
        headers = {"Authorization": f"Bearer {keys[key]}"}
        if token:
            headers["X-Session-Token"] = token
        return client.open("/v1/portals/qm" + path, method=method, json=body, headers=headers)

    return _call


@pytest.fixture
def staff(call):
    """Two support accounts in qm, created by the `test-enroll` client, each with its own password set."""
    assert call("POST", "/support-staff", HELP).status_code == 201
    assert call("POST", "/support-staff", {**HELP, "username": "night.shift", "first_name": "Night",
                                           "last_name": "Shift", "email": "night@example.org"}).status_code == 201
    for username in ("help.desk", "night.shift"):
        assert own_password(call, username).status_code == 200


def own_password(call, username):
    return call("PUT", f"/accounts/{username}/password", {"current_password": CHOSEN, "new_password": STRONG},
                key="manage")


def sign_in(call, username):
    response = call("POST", "/sessions", {"username": username, "password": STRONG}, key="manage")
    return response


def audit(database, *actions):
    with database.sessions() as session:
        rows = session.scalars(select(AuditRecord).where(AuditRecord.action.in_(actions)).order_by(AuditRecord.id))
        return [(r.action, r.client, r.target, r.outcome) for r in rows]


def test_support_staff_record_the_client_that_created_them(staff, call, database):
    with database.sessions() as session:
        creators = dict(session.execute(select(Account.username, Account.created_by_client)).all())
    assert creators == {"Help.Desk": "test-enroll", "night.shift": "test-enroll"}
    assert audit(database, "create_support_staff") == [("create_support_staff", "test-enroll", "Help.Desk", "done"),
                                                       ("create_support_staff", "test-enroll", "night.shift", "done")]


def test_a_support_account_replaces_the_password_the_enroll_client_chose(call):
    """Set up by someone else, like a designated admin: the first sign-in is password_expired until the
    person sets their own, and the chosen password then no longer signs in."""
    assert call("POST", "/support-staff", HELP).status_code == 201
    first = call("POST", "/sessions", {"username": "help.desk", "password": CHOSEN}, key="manage")
    assert (first.status_code, first.get_json()["code"]) == (401, "password_expired")
    assert own_password(call, "help.desk").status_code == 200
    assert sign_in(call, "help.desk").status_code == 201
    stale = call("POST", "/sessions", {"username": "help.desk", "password": CHOSEN}, key="manage")
    assert (stale.status_code, stale.get_json()["code"]) == (401, "invalid_credentials")


def test_list_support_staff(staff, call, build, clock):
    with build("qm") as world:  # an ordinary account is not support staff
        world.account("mara", memberships={"P-1": {"role": "admin"}})
    response = call("GET", "/support-staff")
    assert response.status_code == 200
    listed = response.get_json()["support_staff"]
    assert [s["username"] for s in listed] == ["Help.Desk", "night.shift"]
    assert listed[0] == {"username": "Help.Desk", "first_name": "Help", "last_name": "Desk",
                         "email": "help@example.org", "status": "active", "created_at": clock.now().isoformat(),
                         "created_by_client": "test-enroll", "last_login_at": None,
                         "last_activity_at": clock.now().isoformat()}
    assert "password" not in str(listed)
    assert call("GET", "/support-staff?status=disabled").get_json() == {"support_staff": []}
    bad = call("GET", "/support-staff?status=asleep")
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "status"
    assert call("GET", "/support-staff", key="manage").get_json()["code"] == "insufficient_scope"


def test_disable_ends_sessions_at_once_and_enable_lets_them_back(staff, call, database, clock, build):
    with build("qm") as world:
        world.organization("P-1")
    token = sign_in(call, "help.desk").get_json()["token"]
    assert call("GET", "/organizations/P-1/accounts", key="manage", token=token).status_code == 200  # R1

    disabled = call("POST", "/support-staff/HELP.DESK/disable")
    assert disabled.status_code == 200 and disabled.get_json()["status"] == "disabled"
    refused = call("GET", "/organizations/P-1/accounts", key="manage", token=token)
    assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_session"
    with database.sessions() as session:
        assert session.scalar(select(SessionToken.ended_at)) == clock.now()
    assert sign_in(call, "help.desk").get_json()["code"] == "account_disabled"
    assert call("GET", "/support-staff?status=disabled").get_json()["support_staff"][0]["username"] == "Help.Desk"

    again = call("POST", "/support-staff/help.desk/disable")  # already disabled: nothing changes
    assert again.status_code == 200 and again.get_json()["status"] == "disabled"

    clock.advance(timedelta(days=3))
    enabled = call("POST", "/support-staff/help.desk/enable")
    assert enabled.status_code == 200
    assert enabled.get_json()["status"] == "active"
    assert enabled.get_json()["last_activity_at"] == clock.now().isoformat()  # the inactivity clock restarts
    assert sign_in(call, "help.desk").status_code == 201
    assert audit(database, "support_disable", "support_enable") == [
        ("support_disable", "test-enroll", "Help.Desk", "done"),
        ("support_disable", "test-enroll", "Help.Desk", "unchanged"),
        ("support_enable", "test-enroll", "Help.Desk", "done")]


def test_enable_unlocks_a_locked_support_account(staff, call):
    for _ in range(3):  # R19: three failed sign-ins lock the account
        call("POST", "/sessions", {"username": "night.shift", "password": "wrong#Pass42x"}, key="manage")
    assert sign_in(call, "night.shift").get_json()["code"] == "account_locked"
    assert call("POST", "/support-staff/night.shift/enable").get_json()["status"] == "active"
    assert sign_in(call, "night.shift").status_code == 201


def test_remove_ends_sessions_and_the_last_support_account_may_go(staff, call, database):
    token = sign_in(call, "night.shift").get_json()["token"]
    for username in ("help.desk", "night.shift"):
        removed = call("DELETE", f"/support-staff/{username}")
        assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    assert call("DELETE", "/sessions/current", key="manage", token=token).get_json()["code"] == "invalid_session"
    assert sign_in(call, "night.shift").get_json()["code"] == "account_removed"
    assert call("GET", "/support-staff?status=active").get_json() == {"support_staff": []}
    assert [s["status"] for s in call("GET", "/support-staff").get_json()["support_staff"]] == ["removed"] * 2
    # Removed is final: it cannot be enabled or disabled again (409, and the refusal is audited).
    for operation in ("enable", "disable"):
        refused = call("POST", f"/support-staff/night.shift/{operation}")
        assert refused.status_code == 409 and refused.get_json()["code"] == "account_removed"
    assert call("DELETE", "/support-staff/night.shift").status_code == 200  # idempotent
    assert audit(database, "support_remove", "support_enable", "support_disable") == [
        ("support_remove", "test-enroll", "Help.Desk", "done"),
        ("support_remove", "test-enroll", "night.shift", "done"),
        ("support_enable", "test-enroll", "night.shift", "refused"),
        ("support_disable", "test-enroll", "night.shift", "refused"),
        ("support_remove", "test-enroll", "night.shift", "unchanged")]


def test_only_support_accounts_of_the_portal_are_addressed(staff, call, build):
    with build("qm") as world:
        world.account("mara", memberships={"P-1": {"role": "admin"}})
    for path in ("/support-staff/mara/disable", "/support-staff/nobody/enable"):
        response = call("POST", path)
        assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    assert call("DELETE", "/support-staff/mara").status_code == 404
    assert call("POST", "/support-staff/help.desk/disable", key="manage").status_code == 403
    assert call("POST", "/support-staff/help.desk/disable", key="enroll").status_code == 200


def test_support_staff_of_another_portal_are_not_listed_or_touched(staff, client, keys):
    headers = {"Authorization": f"Bearer {keys['enroll']}"}
    assert client.get("/v1/portals/ahw/support-staff", headers=headers).get_json() == {"support_staff": []}
    assert client.post("/v1/portals/ahw/support-staff/help.desk/disable", headers=headers).status_code == 404
    assert client.get("/v1/portals/mars/support-staff", headers=headers).status_code == 404


def test_which_statuses_a_support_change_applies_to_is_the_policys(database, clock, build, tmp_path):
    """The statuses a support account is disabled, enabled or removed from are read from the policy's
    `status_allows` (no second lifecycle table): a policy whose `enable` applied to a removed account would let
    the operators enable a removed support account too."""
    from service.domain import support
    from service.policy import Policy
    from tests.conftest import ROOT
    from tests.fixtures.policies import widened_policy

    shipped = Policy(ROOT / "policies")
    assert support.starts_from(shipped, "ahw", "disable") == {"active", "locked", "unverified"}
    assert support.starts_from(shipped, "ahw", "enable") == {"disabled", "locked", "pending_approval"}
    widened = widened_policy(tmp_path / "widened",
                             'status_allows("enable", target: TargetAccount) if target.status = "removed";')
    with build("ahw") as world:
        world.account("sam", support=True, status="removed")
    with database.transaction() as session:
        account = support.change(session, "ahw", "sam", "enable", now=clock.now(), client="ops", policy=widened)
        assert account.status == "active"
