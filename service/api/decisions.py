"""The decision endpoints (scope `authorize`): fast answers with reasons, on the lean path (service/api/lean.py)."""
from __future__ import annotations

from service import observe
from service.api.declare import Routes
from service.api.lean import Call
from service.api.schemas import (AuthorizedActionsRequest, AuthorizedActionsResponse, AuthorizeExplainedResponse,
                                 AuthorizeRequest, BatchRequest, BatchResponse)
from service.domain import remedies
from service.domain.decisions import Prefetch, Question, Resource, head_counts_read
from service.domain.errors import DomainError
from service.kernel.catalog import RESOURCE_TYPES
from service.policy import Decision
from service.workbench.explain import explain

bp = Routes("decisions", __name__, url_prefix="/v1")


def _prefetch(body, services, _arguments: dict) -> Prefetch | None:
    """The facts a /v1/authorize or /v1/authorized-actions body asks about, read with the client key in one
    statement.

    From the body as sent: anything unexpected means no prefetch (the view then reads the facts itself);
    the Decider uses them only if the validated question needs the same. The head counts are read when
    the question can read them (an authorized-actions body asks every action) or the answer explains.
    """
    if not isinstance(body, dict):
        return None
    portal, actor, res = body.get("portal"), body.get("actor"), body.get("resource")
    if not (isinstance(portal, str) and isinstance(actor, str) and isinstance(res, dict)):
        return None
    kind, key, organization = res.get("type"), res.get("id"), res.get("organization")
    if kind not in RESOURCE_TYPES or not isinstance(key, str) \
            or not (organization is None or isinstance(organization, str)):
        return None
    action = body.get("action")
    head_counts = (body.get("explain") is True or ("action" in body and not isinstance(action, str))
                   or head_counts_read(services.policy, [(action, kind)]))
    return Prefetch(portal, actor, Resource(kind, key, organization), head_counts)


def question_of(check) -> Question:
    res = check.resource
    return Question(check.action, Resource(res.type, res.id, res.organization), check.context)


def answer_of(decision) -> dict:
    return {"allowed": decision.allowed, "reasons": decision.reason_objects(),
            "policy_version": decision.policy_version}


@bp.post("/authorize", operation_id="authorize", summary="May this actor take this action on this resource?",
         scope="authorize", ok=(200, AuthorizeExplainedResponse), problems=(404,), lean=True, facts=_prefetch)
def authorize(call: Call, body: AuthorizeRequest):
    question = question_of(body)
    decider = call.decider(body.portal, head_counts_as_read=not body.explain)  # an explanation shows them
    decision = decider.decide(body.actor, question)
    observe.decided("authorize", body.portal, body.actor, (question,), (decision,))
    answer = answer_of(decision)
    if body.remedies:
        answer["remedies"] = remedies.for_decision(decider, question.action, decision)
    if body.explain:  # the same explanation as `portal-authz policy explain --json`
        answer["explanation"] = (None if decision.facts is None else
                                 explain(decider.policy, decision.facts[0], question.action,
                                         decision.facts[1]).as_json())
    return answer


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
         scope="authorize", ok=(200, BatchResponse), problems=(404,), lean=True)
def authorize_batch(call: Call, body: BatchRequest):
    """Up to 100 checks for one actor; the facts of all of them are read in one statement."""
    questions = [question_of(check) for check in body.checks]
    decider = call.decider(body.portal)
    outcomes = list(decider.decide_each([(body.actor, question) for question in questions]))
    decided = [(q, o) for q, o in zip(questions, outcomes) if isinstance(o, Decision)]
    observe.decided("authorize_batch", body.portal, body.actor, [q for q, _ in decided], [o for _, o in decided])
    version = decider.policy.version
    results = [answer_of(outcome) if isinstance(outcome, Decision) else check_error(i, outcome, version)
               for i, outcome in enumerate(outcomes)]
    if body.remedies:
        for question, outcome, result in zip(questions, outcomes, results):
            result["remedies"] = (remedies.for_decision(decider, question.action, outcome)
                                  if isinstance(outcome, Decision) else [])
    return {"results": results}


@bp.post("/authorized-actions", operation_id="authorizedActions",
         summary="Every action the actor may take on the resource", scope="authorize",
         ok=(200, AuthorizedActionsResponse), problems=(404,), lean=True, facts=_prefetch)
def authorized_actions(call: Call, body: AuthorizedActionsRequest):
    res = body.resource
    resource = Resource(res.type, res.id, res.organization)
    decider = call.decider(body.portal)
    actions = decider.authorized_actions(body.actor, resource)
    version = decider.policy.version
    observe.actions(body.portal, body.actor, resource, actions, version)
    return {"actions": actions, "policy_version": version}
