"""The decision endpoints (scope `authorize`): fast answers with reasons."""
from __future__ import annotations

from flask import g, jsonify

from service import observe
from service.api.declare import Routes
from service.api.requests import db_session, services
from service.api.schemas import (AuthorizedActionsRequest, AuthorizedActionsResponse, AuthorizeExplainedResponse,
                                 AuthorizeRequest, BatchRequest, BatchResponse)
from service.domain.decisions import Decider, Prefetch, Question, Resource, profile_of
from service.domain.errors import DomainError
from service.policy import Decision
from service.workbench.explain import explain

bp = Routes("decisions", __name__, url_prefix="/v1")


def _decider(portal: str, prefetched: Prefetch | None = None) -> Decider:
    s = services()
    return Decider(db_session(), profile_of(s.config, portal), s.policy, portal, s.clock.now(), prefetched)


def _prefetch(body) -> Prefetch | None:
    """Issue 13: the facts a /v1/authorize body asks about, read with the client key in one statement.

    From the body as sent, before validation: anything unexpected means no prefetch (the view then
    reads the facts itself); the Decider uses them only if the validated question needs the same.
    """
    if not isinstance(body, dict):
        return None
    portal, actor, res = body.get("portal"), body.get("actor"), body.get("resource")
    if not (isinstance(portal, str) and isinstance(actor, str) and isinstance(res, dict)):
        return None
    kind, key, organization = res.get("type"), res.get("id"), res.get("organization")
    if kind not in ("organization", "account") or not isinstance(key, str) \
            or not (organization is None or isinstance(organization, str)):
        return None
    return Prefetch(portal, actor, Resource(kind, key, organization))


def question_of(check) -> Question:
    res = check.resource
    return Question(check.action, Resource(res.type, res.id, res.organization), check.context)


def answer_of(decision) -> dict:
    return {"allowed": decision.allowed, "reasons": decision.reason_objects(),
            "policy_version": decision.policy_version}


@bp.post("/authorize", operation_id="authorize", summary="May this actor take this action on this resource?",
         scope="authorize", ok=(200, AuthorizeExplainedResponse), problems=(404,), prefetch=_prefetch)
def authorize(body: AuthorizeRequest):
    question = question_of(body)
    decision = _decider(body.portal, g.pop("prefetched", None)).decide(body.actor, question)
    observe.decision(body.portal, body.actor, question, decision)
    answer = answer_of(decision)
    if body.explain:  # issue 15: the same explanation as `portal-authz policy explain --json`
        answer["explanation"] = (None if decision.facts is None else
                                 explain(services().policy, decision.facts[0], question.action,
                                         decision.facts[1]).as_json())
    return jsonify(answer)


def check_error(index: int, exc: DomainError, policy_version: str) -> dict:
    """A check that names something unknown (404) or impossible (422), answered in its place: a denial whose
    reason is the problem's code, and the problem itself as `error`."""
    message = f"checks[{index}]: {exc.detail}"
    error: dict = {"status": exc.status, "code": exc.code, "message": message}
    if exc.extra.get("errors"):
        error["errors"] = [{**e, "field": f"checks[{index}].{e['field']}"} for e in exc.extra["errors"]]
    return {"allowed": False, "reasons": [{"code": exc.code, "message": message}], "policy_version": policy_version,
            "error": error}


@bp.post("/authorize/batch", operation_id="authorizeBatch", summary="Up to 100 decisions for one actor",
         description="One answer per check, in order. A check naming an unknown organization or account, or an "
                     "impossible question, is answered in its place as a denial carrying its problem (`error`, "
                     "and its code as the reason); the others are decided. An unknown portal is a 404 for the whole.",
         scope="authorize", ok=(200, BatchResponse), problems=(404,))
def authorize_batch(body: BatchRequest):
    """Up to 100 checks for one actor; the facts of all of them are read in one statement."""
    questions = [question_of(check) for check in body.checks]
    decider = _decider(body.portal)
    outcomes = list(decider.decide_each([(body.actor, question) for question in questions]))
    decided = [(q, o) for q, o in zip(questions, outcomes) if isinstance(o, Decision)]
    observe.decisions(body.portal, body.actor, [q for q, _ in decided], [o for _, o in decided])
    version = decider.policy.version
    return jsonify(results=[answer_of(outcome) if isinstance(outcome, Decision) else check_error(i, outcome, version)
                            for i, outcome in enumerate(outcomes)])


@bp.post("/authorized-actions", operation_id="authorizedActions",
         summary="Every action the actor may take on the resource", scope="authorize",
         ok=(200, AuthorizedActionsResponse), problems=(404,))
def authorized_actions(body: AuthorizedActionsRequest):
    res = body.resource
    resource = Resource(res.type, res.id, res.organization)
    actions = _decider(body.portal).authorized_actions(body.actor, resource)
    version = services().policy.version
    observe.actions(body.portal, body.actor, resource, actions, version)
    return jsonify(actions=actions, policy_version=version)
