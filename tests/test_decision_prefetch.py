"""/v1/authorize and /v1/authorized-actions read their client key and their facts in one statement; nothing else
changes.

The key is still judged first (401/403 before any body problem), read fresh on every request
(a revoked key is refused by the very next request), and the facts read with it are used only
for the question the validated body asks.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select

from service.domain import clients
from service.domain.decisions import Decider, Prefetch, Question, Resource, _needs, profile_of
from service.storage.models import Grant, Membership
from tests.conftest import make_key
from tests.fixtures.statements import statements


def _body(actor="biller", action="claims", resource=None):
    return {"portal": "ahw", "actor": actor, "action": action,
            "resource": resource or {"type": "organization", "id": "TIN-1"}}


def _statements(database, call):
    with statements(database) as seen:
        result = call()
    return result, seen


def test_one_statement_per_decision(client, database, authorize_key, clinic):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    client.post("/v1/authorize", json=_body(), headers=headers)  # the key's first use is recorded (once a minute)
    response, seen = _statements(database, lambda: client.post("/v1/authorize", json=_body(), headers=headers))
    assert response.status_code == 200 and response.get_json()["allowed"] is True
    assert len(seen) == 1 and "client_keys" in seen[0] and "accounts" in seen[0]


def test_authorized_actions_read_their_key_and_facts_in_one_statement(client, database, authorize_key, config,
                                                                     policy, clock, clinic):
    """/v1/authorized-actions asks about one actor and one resource, as /v1/authorize does: the same one statement,
    and the same actions as a Decider that reads the facts on its own."""
    headers = {"Authorization": f"Bearer {authorize_key}"}
    body = {"portal": "ahw", "actor": "manager", "resource": {"type": "account", "id": "biller", "organization": "TIN-1"}}
    client.post("/v1/authorized-actions", json=body, headers=headers)  # the key's first use is recorded
    response, seen = _statements(database, lambda: client.post("/v1/authorized-actions", json=body, headers=headers))
    assert response.status_code == 200 and "remove" in response.get_json()["actions"]
    assert len(seen) == 1 and "client_keys" in seen[0] and "accounts" in seen[0]
    with database.reads() as session:
        decider = Decider(session, profile_of(config, "ahw"), policy, "ahw", clock.now())
        assert response.get_json()["actions"] == decider.authorized_actions(
            "manager", Resource("account", "biller", "TIN-1"))


EVALUATION, EVALUATIONS = "/authzen/ahw/access/v1/evaluation", "/authzen/ahw/access/v1/evaluations"


def _evaluation(actor, action, resource):
    return {"subject": {"type": "account", "id": actor}, "action": {"name": action}, "resource": resource}


ORG = {"type": "organization", "id": "TIN-1"}
NEWBIE = {"type": "account", "id": "newbie", "properties": {"organization": "TIN-1"}}


@pytest.mark.parametrize("path, body, decisions", [
    (EVALUATION, _evaluation("biller", "claims", ORG), [True]),
    (EVALUATION, _evaluation("manager", "approve", NEWBIE), [True]),
    (EVALUATION, _evaluation("manager", "remove", NEWBIE), [True]),  # an action whose rules read the head counts
    (EVALUATIONS, _evaluation("biller", "eligibility", ORG), [False]),  # no items: the single evaluation
    (EVALUATIONS, {**_evaluation("biller", "claims", ORG),
                   "evaluations": [{}, {"subject": {"type": "account", "id": "manager"}, "action": {"name": "approve"},
                                        "resource": NEWBIE}, {"action": {"name": "eligibility"}}]}, [True, True, False]),
], ids=["member", "admin", "head counts", "evaluations alone", "evaluations with defaults"])
def test_authzen_evaluations_read_their_key_and_facts_in_one_statement(client, database, authorize_key, clinic, path,
                                                                      body, decisions):
    """AuthZEN's Access Evaluation(s) read the client key and every item's facts in one statement, as /v1/authorize
    does, and answer as before."""
    headers = {"Authorization": f"Bearer {authorize_key}"}
    client.post(path, json=body, headers=headers)  # the key's first use is recorded (once a minute)
    response, seen = _statements(database, lambda: client.post(path, json=body, headers=headers))
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert [e["decision"] for e in answer.get("evaluations", [answer])] == decisions
    assert len(seen) == 1 and "client_keys" in seen[0] and "accounts" in seen[0], seen


def test_authzen_facts_read_for_items_the_view_reads_otherwise_are_not_used(client, database, authorize_key, clinic):
    """An item that is invalid once validated (an empty action name) answers its error; the facts read with the key
    named its people too, so they are not those of the questions decided, which read their own: the same answers."""
    headers = {"Authorization": f"Bearer {authorize_key}"}
    body = {"evaluations": [_evaluation("biller", "claims", ORG), _evaluation("manager", "", NEWBIE)]}
    client.post(EVALUATIONS, json=body, headers=headers)
    response, seen = _statements(database, lambda: client.post(EVALUATIONS, json=body, headers=headers))
    first, second = response.get_json()["evaluations"]
    assert first["decision"] is True and second["decision"] is False and second["context"]["error"]["status"] == 400
    assert len(seen) == 2 and "client_keys" in seen[0] and "client_keys" not in seen[1], seen


def test_a_revoked_key_is_refused_by_the_next_request(client, database, authorize_key, clock, clinic):
    headers = {"Authorization": f"Bearer {authorize_key}"}
    assert client.post("/v1/authorize", json=_body(), headers=headers).status_code == 200
    with database.transaction() as session:
        clients.revoke(session, "test-authorize", clock.now(), actor="operator")
    response = client.post("/v1/authorize", json=_body(), headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "unauthenticated"


def test_an_expired_key_is_refused_on_time(client, database, clock, clinic):
    with database.transaction() as session:
        key = clients.create_client(session, "short", ("authorize",), clock.now(),
                                    expires_at=clock.now() + timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/authorize", json=_body(), headers=headers).status_code == 200
    clock.advance(timedelta(minutes=5))
    assert client.post("/v1/authorize", json=_body(), headers=headers).status_code == 401


def test_a_wrong_secret_or_scope_is_refused(client, database, authorize_key, clock, clinic):
    wrong = authorize_key[:-4] + ("AAAA" if not authorize_key.endswith("AAAA") else "BBBB")
    response = client.post("/v1/authorize", json=_body(), headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    manage = make_key(database, ("manage",), clock.now())
    response = client.post("/v1/authorize", json=_body(), headers={"Authorization": f"Bearer {manage}"})
    assert response.status_code == 403 and response.get_json()["code"] == "insufficient_scope"


@pytest.mark.parametrize("send", [
    lambda c, h: c.post("/v1/authorize", data="not json", headers={**h, "Content-Type": "application/json"}),
    lambda c, h: c.post("/v1/authorize", data="{}", headers={**h, "Content-Type": "text/plain"}),
    lambda c, h: c.post("/v1/authorize", json=[1, 2], headers=h),
    lambda c, h: c.post("/v1/authorize", json={"portal": 7}, headers=h),
    lambda c, h: c.post("/v1/authorize", data="[" * 100 + "]" * 100, headers={**h, "Content-Type": "application/json"}),
], ids=["malformed", "media type", "array", "schema", "too deep"])
def test_a_bad_key_answers_401_before_any_body_problem(client, clinic, send):
    response = send(client, {"Authorization": "Bearer pak_0000_nope"})
    assert response.status_code == 401 and response.get_json()["code"] == "unauthenticated"
    response = send(client, {})
    assert response.status_code == 401


def test_the_next_decision_sees_a_revoked_grant(client, database, authorize_key, clinic):
    """R19 through the one-statement path: facts are never kept between requests."""
    headers = {"Authorization": f"Bearer {authorize_key}"}
    assert client.post("/v1/authorize", json=_body(), headers=headers).get_json()["allowed"] is True
    with database.transaction() as session:
        session.execute(delete(Grant).where(Grant.membership_id.in_(select(Membership.id))))
    answer = client.post("/v1/authorize", json=_body(), headers=headers).get_json()
    assert answer["allowed"] is False


def test_prefetched_facts_serve_only_the_same_question(database, config, policy, clock, clinic):
    """Facts read for another question (another actor) are not used: the Decider reads its own."""
    with database.reads() as session:
        other = Prefetch("ahw", "manager", Resource("organization", "TIN-1"))
        assert other.read_key(session, "no-such-key") is None
        decider = Decider(session, profile_of(config, "ahw"), policy, "ahw", clock.now(), other)
        (decision, _), seen = _statements(database, lambda: decider.decide_on(
            "biller", Question("claims", Resource("organization", "TIN-1"))))
        assert decision.allowed is True and len(seen) == 1  # read again, for biller
        same = Prefetch("ahw", "biller", Resource("organization", "TIN-1"))
        same.read_key(session, "no-such-key")
        decider = Decider(session, profile_of(config, "ahw"), policy, "ahw", clock.now(), same)
        (decision, _), seen = _statements(database, lambda: decider.decide_on(
            "biller", Question("claims", Resource("organization", "TIN-1"))))
        assert decision.allowed is True and seen == []  # the prefetched facts, no statement


NAMES = st.sampled_from(["biller", "manager", "TIN-1", "TIN-2", "Biller"])


@given(st.none() | NAMES, st.sampled_from(["organization", "account", "other"]), NAMES, st.none() | NAMES)
def test_one_question_needs_what_the_general_reading_of_its_resources_needs(actor, kind, key, organization):
    """What one question reads is what the same resource read twice, or the actor given again as one of several
    actors, reads: the facts a prefetch read are used for it or not alike."""
    resource = Resource(kind, key, organization)
    one = _needs(actor, [resource])
    assert one == _needs(actor, [resource, resource])
    assert one == _needs(actor, [resource], actors=[actor] if actor is not None else [])
    assert one == _needs(actor, (resource,))
