"""What a reader learns of an account: one read-scoping rule, the policy's `sees_membership`.

Every read shows an account's membership of an organization (its role, grants and comments there) only to
the account itself, support staff and whoever administers it there; and only the memberships it has now
(history is the audit's). Over HTTP in-process, on the masshealth portal where accounts are linked across
organizations (R1, R13, R24, R25, R26).
"""
from __future__ import annotations

import pytest

from tests.conftest import make_key
from tests.fixtures.http import Portal
from tests.fixtures.world import PASSWORD

CLAIMS = "claims_submission_and_status"


@pytest.fixture
def p(client, database, clock, build):
    """XA with Primary User pa; XB with Primary User pb and member mb (holding claims); pab administers both."""
    with build("masshealth") as world:
        world.account("pa", memberships={"XA": {"role": "admin"}})
        world.account("pb", memberships={"XB": {"role": "admin"}})
        world.account("pb2", memberships={"XB": {"role": "admin"}})
        world.account("mb", memberships={"XB": {"permissions": [CLAIMS]}})
        world.account("pab", memberships={"XA": {"role": "admin"}, "XB": {"role": "admin"}})
        world.account("sue", support=True)
    return Portal(client, make_key(database, ("authorize", "manage", "enroll"), clock.now()), "masshealth")


def memberships(view) -> list[tuple[str, str, list[str]]]:
    return sorted((m["organization"], m["role"], m["permissions"]) for m in view["memberships"])


def roster(p, token, org, **query):
    params = "&".join(f"{k}={v}" for k, v in query.items())
    listed = p.call("GET", f"/organizations/{org}/accounts?{params}", token=token, expect=200).get_json()
    return {a["username"]: a for a in listed["accounts"]}


@pytest.mark.R13
@pytest.mark.R24
def test_the_roster_shows_a_linked_account_only_through_the_link(p):
    pa, pb = p.sign_in("pa", PASSWORD), p.sign_in("pb", PASSWORD)
    for who in ("pb", "mb"):
        p.call("POST", "/organizations/XA/links", {"username": who}, token=pa, expect=201)
    found = roster(p, pa, "XA", q="b")
    # Not pb's standing as XB's Primary User, nor mb's grants in XB: only the XA link pa administers.
    assert memberships(found["pb"]) == [("XA", "member", [])]
    assert memberships(found["mb"]) == [("XA", "member", [])]
    # XB removes mb: the link is gone from every read, XB's own included.
    p.act(pb, "mb", "remove", organization="XB")
    assert memberships(roster(p, pa, "XA", q="mb")["mb"]) == [("XA", "member", [])]
    assert memberships(roster(p, pb, "XB", q="mb")["mb"]) == []
    # Who administers both sees both; support staff and the account itself see every current one.
    pab, sue, mine = p.sign_in("pab", PASSWORD), p.sign_in("sue", PASSWORD), p.sign_in("pb", PASSWORD)
    assert memberships(roster(p, pab, "XA", q="pb")["pb"]) == [("XA", "member", []), ("XB", "admin", [])]
    assert memberships(roster(p, sue, "XA", q="pb")["pb"]) == [("XA", "member", []), ("XB", "admin", [])]
    assert memberships(roster(p, mine, "XA", q="pb")["pb"]) == [("XA", "member", []), ("XB", "admin", [])]


@pytest.mark.R13
@pytest.mark.R26
def test_an_account_read_lists_current_memberships_only(p):
    pa, pb = p.sign_in("pa", PASSWORD), p.sign_in("pb", PASSWORD)
    p.call("POST", "/organizations/XA/links", {"username": "mb"}, token=pa, expect=201)
    p.act(pb, "mb", "remove", organization="XB")
    current = [("XA", "member", [])]
    # The calling service's own read, support staff's, the account's own and the linking admin's.
    assert memberships(p.call("GET", "/accounts/mb", expect=200).get_json()) == current
    assert memberships(p.call("GET", "/accounts/mb", token=p.sign_in("sue", PASSWORD), expect=200).get_json()) == current
    assert memberships(p.call("GET", "/accounts/mb", token=p.sign_in("mb", PASSWORD), expect=200).get_json()) == current
    assert memberships(p.call("GET", "/accounts/mb?organization=XA", token=pa, expect=200).get_json()) == current
    # XB's admin still reads the removed account through its own removed link, with no membership shown.
    assert memberships(p.call("GET", "/accounts/mb?organization=XB", token=pb, expect=200).get_json()) == []
    # A change's answer is a read too: pa removes its link, and sees nothing of the account's standing.
    assert memberships(p.act(pa, "mb", "remove", organization="XA").get_json()) == []


@pytest.mark.R25
def test_comments_follow_the_same_scoping(p):
    pa, pb = p.sign_in("pa", PASSWORD), p.sign_in("pb", PASSWORD)
    p.call("POST", "/organizations/XA/links", {"username": "mb"}, token=pa, expect=201, )
    p.call("PUT", "/accounts/mb/permissions", {"organization": "XB", "permissions": [], "comment": "xb note"},
           token=pb, expect=200)
    p.call("PUT", "/accounts/mb/permissions", {"organization": "XA", "permissions": [CLAIMS], "comment": "xa note"},
           token=pa, expect=200)

    def texts(token, organization=None):
        query = f"?organization={organization}" if organization else ""
        return [c["text"] for c in p.call("GET", f"/accounts/mb/comments{query}", token=token, expect=200).get_json()]

    assert texts(pa, "XA") == ["xa note"]
    assert texts(p.sign_in("pab", PASSWORD), "XA") == ["xb note", "xa note"]
    # A removed link's comments stay that organization's history of the account.
    p.act(pb, "mb", "remove", organization="XB", comment="gone from xb")
    assert texts(pb, "XB") == ["xb note", "gone from xb"]
    assert texts(pa, "XA") == ["xa note"]


def explained(p, actor, action, username, organization):
    body = {"portal": p.portal, "actor": actor, "action": action, "explain": True,
            "resource": {"type": "account", "id": username, "organization": organization}}
    answer = p.client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {p.key}"}).get_json()
    return [r["code"] for r in answer["reasons"]], answer["explanation"]


@pytest.mark.R1
def test_an_explanation_shows_only_what_the_actor_may_read(p):
    # A non-member is told not_member; its explanation shows nothing more of pb (role, status, links, grants)
    # or of XB (its admin count).
    reasons, explanation = explained(p, "pa", "disable", "pb", "XB")
    assert reasons == ["not_member"]
    target = explanation["facts"]["resource"]
    assert {"role", "status", "terms_accepted"}.isdisjoint(target) and target["links"] == []
    assert {"active_admins", "has_active_members"}.isdisjoint(target["organization"])
    assert set(explanation["withheld"]) >= {"target.role", "target.status", "organization.active_admins"}
    shown = [(r["name"], r["holds"], r["reads"]) for rule in explanation["rules"] for r in rule["requirements"]]
    assert all(holds is None for name, holds, _ in shown if name in ("status_allows", "not_orphaning"))
    assert all("target.role" not in reads and "target.status" not in reads for _, _, reads in shown)
    # Through a link: the linking admin reads its own link, never the account's standing elsewhere.
    pa = p.sign_in("pa", PASSWORD)
    p.call("POST", "/organizations/XA/links", {"username": "mb"}, token=pa, expect=201)
    reasons, explanation = explained(p, "pa", "disable", "mb", "XA")
    assert reasons == ["account_elsewhere"]
    assert [link["organization"]["key"] for link in explanation["facts"]["resource"]["links"]] == ["XA"]
    assert explanation["withheld"] == ["target.links"]  # mb's XB link is not pa's to read
    shown = {r["name"]: r["holds"] for rule in explanation["rules"] for r in rule["requirements"]}
    assert shown["administers_everywhere"] is None and shown["administers"] is True
    # Support staff read everything.
    _, explanation = explained(p, "sue", "disable", "mb", "XA")
    assert len(explanation["facts"]["resource"]["links"]) == 2 and explanation["withheld"] == []
