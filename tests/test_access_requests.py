"""Access requests over HTTP: a member asks for a function it lacks, whoever may grant it decides.

The lifecycle (open, told, listed, approved as the grant itself, declined, expired with the test clock),
the refusals (a duplicate, a function already held, an unknown one, a non-member, someone who may not
decide) and parallel duplicates (one open request per member and function), on SQLite and PostgreSQL.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from service.app import create_app
from service.domain.access_requests import expiry_email
from service.storage.models import Account, AuditRecord, Grant, Membership, Notification
from tests.conftest import make_key
from tests.fixtures.http import Portal
from tests.fixtures.world import PASSWORD, World


@pytest.fixture
def ahw(any_database, config, policy, clock):
    """T1 (ahw): admin ann, delegate dee (manage_account, claims), members sam and tom; out is T9's admin."""
    app = create_app(config, database=any_database, policy=policy, clock=clock)
    with any_database.transaction() as session:
        w = World(session, "ahw", clock.now())
        w.account("ann", memberships={"T1": {"role": "admin"}})
        w.account("dee", memberships={"T1": {"permissions": ["manage_account", "claims"]}})
        w.account("sam", memberships={"T1": {}})
        w.account("tom", memberships={"T1": {}})
        w.account("out", memberships={"T9": {"role": "admin"}})
    p = Portal(app.test_client(), make_key(any_database, ("authorize", "manage"), clock.now()), "ahw")
    p.app, p.database = app, any_database
    return p


def told(database, template):
    with database.sessions() as session:
        return [(n.recipient, n.payload) for n in session.scalars(
            select(Notification).where(Notification.template == template).order_by(Notification.id))]


def audited(database, action):
    with database.sessions() as session:
        return [(r.actor, r.target, r.outcome, r.detail) for r in session.scalars(
            select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id))]


def ask(p, token, permission, expect=201, org="T1", **extra):
    return p.call("POST", f"/organizations/{org}/access-requests", {"permission": permission, **extra},
                  token=token, expect=expect).get_json()


def listed(p, token, org="T1"):
    return [(r["username"], r["permission"]) for r in
            p.call("GET", f"/organizations/{org}/access-requests", token=token, expect=200).get_json()["requests"]]


def decide(p, token, request_id, how, expect=200, org="T1"):
    return p.call("POST", f"/organizations/{org}/access-requests/{request_id}/{how}", token=token, expect=expect)


@pytest.mark.R14
@pytest.mark.R15
@pytest.mark.R27
def test_the_lifecycle_of_an_access_request(ahw, clock):
    p = ahw
    sam, ann, dee, out = (p.sign_in(u, PASSWORD) for u in ("sam", "ann", "dee", "out"))
    created = ask(p, sam, "claims", note="I bill for the practice")
    assert set(created) == {"id", "status"} and created["status"] == "open"
    # The accounts the remedy names are told: delegates holding claims, then admins.
    assert [to for to, _ in told(p.database, "access_requested")] == ["dee@example.org", "ann@example.org"]
    assert told(p.database, "access_requested")[0][1]["note"] == "I bill for the practice"
    assert ask(p, sam, "claims", expect=409)["code"] == "request_open"
    # Listed for those who may decide it only; a non-member is refused.
    assert listed(p, ann) == listed(p, dee) == [("sam", "claims")]
    assert listed(p, sam) == []
    assert p.call("GET", "/organizations/T1/access-requests", token=out, expect=403).get_json()["reasons"][0]["code"] \
        == "not_member"
    # Not by the requester itself, nor by an outsider: the grant's own decision.
    assert "self_action" in [r["code"] for r in decide(p, sam, created["id"], "approve", 403).get_json()["reasons"]]
    assert [r["code"] for r in decide(p, out, created["id"], "approve", 403).get_json()["reasons"]] == ["not_member"]
    # Approving is the grant itself.
    account = decide(p, dee, created["id"], "approve").get_json()
    assert account["memberships"][0]["permissions"] == ["claims"]
    assert audited(p.database, "set_permissions")[-1] == ("dee", "sam", "done", {"granted": ["claims"], "revoked": []})
    assert audited(p.database, "access_request_approved")[-1][:3] == ("dee", "sam", "done")
    assert [to for to, _ in told(p.database, "access_request_approved")] == ["sam@example.org"]
    assert decide(p, ann, created["id"], "approve", 409).get_json()["code"] == "request_closed"
    assert listed(p, ann) == []
    assert ask(p, sam, "claims", expect=409)["code"] == "already_held"
    # Declined: only by who could grant it (dee does not hold eligibility), recorded, told to the requester.
    second = ask(p, sam, "eligibility")
    assert listed(p, dee) == [] and listed(p, ann) == [("sam", "eligibility")]
    assert "permission_not_held" in [r["code"] for r in
                                     decide(p, dee, second["id"], "decline", 403).get_json()["reasons"]]
    assert decide(p, ann, second["id"], "decline").get_json() == {"id": second["id"], "status": "declined"}
    assert audited(p.database, "access_request_declined")[-1][:3] == ("ann", "sam", "done")
    assert [to for to, _ in told(p.database, "access_request_declined")] == ["sam@example.org"]
    assert ask(p, sam, "eligibility")["status"] == "open"  # a declined request is closed: ask again


def test_an_open_request_expires_after_the_portal_s_days(ahw, clock, config):
    p = ahw
    assert config.portal("ahw").access_request_days == 14
    first = ask(p, p.sign_in("sam", PASSWORD), "claims")
    clock.advance(timedelta(days=13, hours=23))
    assert listed(p, p.sign_in("ann", PASSWORD)) == [("sam", "claims")]
    clock.advance(timedelta(hours=2))
    ann, sam = p.sign_in("ann", PASSWORD), p.sign_in("sam", PASSWORD)
    assert decide(p, ann, first["id"], "approve", 409).get_json()["code"] == "request_closed"
    assert listed(p, ann) == []
    assert [d["id"] for *_, d in audited(p.database, "access_request_expired")] == [first["id"]]
    assert told(p.database, "access_request_expired") == [("sam@example.org", expiry_email(first["id"], "T1", "claims"))]
    second = ask(p, sam, "claims")
    assert second["id"] != first["id"] and listed(p, ann) == [("sam", "claims")]


def test_bad_requests_are_clear_problems(ahw):
    p = ahw
    sam, out, ann = p.sign_in("sam", PASSWORD), p.sign_in("out", PASSWORD), p.sign_in("ann", PASSWORD)
    assert ask(p, sam, "no_such_function", expect=422)["errors"][0]["code"] == "unknown_permission"
    assert ask(p, sam, "claims", expect=404, org="NOPE")["code"] == "not_found"
    assert [r["code"] for r in ask(p, out, "claims", expect=403)["reasons"]] == ["not_member"]
    assert ask(p, ann, "claims", expect=409)["code"] == "already_held"  # an admin holds the whole catalog
    assert p.call("POST", "/organizations/T1/access-requests", {"permission": "claims"}, expect=401).status_code == 401
    assert decide(p, ann, 999, "approve", 404).get_json()["code"] == "not_found"
    spec = p.client.get("/openapi.json").get_json()
    for path in ("/v1/portals/{portal}/organizations/{org}/access-requests",
                 "/v1/portals/{portal}/organizations/{org}/access-requests/{request_id}/approve",
                 "/v1/portals/{portal}/organizations/{org}/access-requests/{request_id}/decline"):
        assert "409" in spec["paths"][path]["post"]["responses"]


def test_parallel_duplicate_requests_open_one(ahw):
    p = ahw
    token = p.sign_in("tom", PASSWORD)
    barrier, statuses = threading.Barrier(4), []

    def send():
        client = p.app.test_client()
        barrier.wait()
        response = client.post("/v1/portals/ahw/organizations/T1/access-requests", json={"permission": "claims"},
                               headers={"Authorization": f"Bearer {p.key}", "X-Session-Token": token})
        statuses.append((response.status_code, (response.get_json() or {}).get("code")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses, key=str) == sorted([(201, None)] + [(409, "request_open")] * 3, key=str)
    assert len(audited(p.database, "access_request")) == 1


def permissions_of(p, token, username):
    account = p.call("GET", f"/accounts/{username}", token=token, expect=200).get_json()
    return {m["organization"]: (m["role"], m["permissions"]) for m in account["memberships"]}


@pytest.mark.R3
@pytest.mark.R13
@pytest.mark.R16
@pytest.mark.R23
def test_an_approval_stands_only_while_the_requester_could_still_ask(ahw):
    """A request approved after its requester was disabled, upgraded or removed grants nothing: no function
    lands on an account that could not have asked for it, to resurface when it is enabled again or downgraded."""
    p = ahw
    ann = p.sign_in("ann", PASSWORD)
    sam_claims = ask(p, p.sign_in("sam", PASSWORD), "claims")
    tom = p.sign_in("tom", PASSWORD)
    tom_claims, tom_records = ask(p, tom, "claims"), ask(p, tom, "health_records")
    # Disabled (R23): refused and left open; enabled again, it stands and is approved.
    p.act(ann, "sam", "disable")
    assert decide(p, ann, sam_claims["id"], "approve", 409).get_json()["code"] == "target_status"
    assert permissions_of(p, ann, "sam")["T1"] == ("member", [])
    assert listed(p, ann)[0] == ("sam", "claims")
    p.act(ann, "sam", "enable")
    decide(p, ann, sam_claims["id"], "approve")
    assert permissions_of(p, ann, "sam")["T1"] == ("member", ["claims"])
    # Upgraded (R2): an admin holds the whole catalog; no grant is stored under the admin link to surface when
    # it is downgraded.
    p.act(ann, "tom", "upgrade")
    assert decide(p, ann, tom_claims["id"], "approve", 409).get_json()["code"] == "already_held"
    p.act(ann, "tom", "downgrade")
    assert permissions_of(p, ann, "tom")["T1"] == ("member", [])
    # Removed from the organization (R13): the policy refuses the grant to a removed link.
    p.act(ann, "tom", "remove")
    refused = decide(p, ann, tom_records["id"], "approve", 403).get_json()
    assert [r["code"] for r in refused["reasons"]] == ["target_status"]
    with p.database.sessions() as session:
        held = session.scalars(select(Grant.permission).join(Membership, Membership.id == Grant.membership_id)
                               .join(Account, Account.id == Membership.account_id)
                               .where(Account.username == "tom")).all()
    assert held == []
    # The refused approval is audited as one, beside the approval that stood.
    assert [(a, t, o) for a, t, o, _ in audited(p.database, "access_request_approved")] == [
        ("ann", "sam", "done"), ("ann", "tom", "denied")]


@pytest.mark.R1
def test_nothing_about_a_request_is_told_before_the_decision(ahw):
    """An outsider gets one answer for an open, a closed and an unknown request id; a member who may not decide
    is refused for a closed request as for an open one (its state is told only to those who could decide it)."""
    p = ahw
    sam, ann, tom, out = (p.sign_in(u, PASSWORD) for u in ("sam", "ann", "tom", "out"))
    closed, still_open = ask(p, sam, "claims")["id"], ask(p, sam, "eligibility")["id"]
    decide(p, ann, closed, "decline")
    for how in ("approve", "decline"):
        answers = [decide(p, out, request_id, how, 403).get_json() for request_id in (closed, still_open, 99999)]
        assert [[r["code"] for r in a["reasons"]] for a in answers] == [["not_member"]] * 3
        assert [decide(p, tom, request_id, how, 403).status_code for request_id in (closed, still_open)] == [403, 403]
    assert decide(p, ann, closed, "approve", 409).get_json()["code"] == "request_closed"
    assert decide(p, ann, still_open, "decline").get_json()["status"] == "declined"
