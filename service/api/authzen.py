"""OpenID AuthZEN Authorization API 1.0: one PDP per portal profile, beside /v1, so a gateway that speaks
AuthZEN needs no adapter.

HTTP only: call service.domain.authzen on the admitted body, answer. Errors are problem+json like
everywhere else, but with the statuses AuthZEN names (the blueprint's status mapping): a body that is
not JSON, malformed or missing a field is 400 (never 415 or 422), an unknown or missing client key 401,
a key without `authorize` 403. Evaluation and evaluations are decision endpoints: the lean path.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from flask import current_app, jsonify, request
from pydantic import BaseModel, Field, ValidationError

from service import observe
from service.api import authzen_schemas as z
from service.api.declare import Routes
from service.api.lean import Call
from service.api.problems import Problem, validation_problem
from service.api.requests import db_session, services
from service.api.schemas import PortalPath
from service.config import DEFAULT_HOST, DEFAULT_PORT, served_base_url
from service.domain import authzen
from service.domain.decisions import Decider, Prefetch, Resource, head_counts_read, profile_of
from service.domain.errors import DomainError, Invalid
from service.kernel.catalog import RESOURCE_TYPES
from service.policy import Decision

# AuthZEN: every bad body, and every impossible question, is a Bad Request (the /v1 endpoints say 415 and 422).
bp = Routes("authzen", __name__, statuses={415: 400, 422: 400})
PAGE_TOKEN_SECRET = "authzen_page_token_key"  # where the app keeps the database's key once read
ERRORS = (400, 413)  # AuthZEN: every bad body is a 400; 401/403/404 come with the scope


class PdpPath(PortalPath):
    portal: str = Field(description="a portal profile id: each profile is one PDP")

PDP_PATH = "/authzen/<portal>"
ENDPOINTS = {
    "access_evaluation_endpoint": "/access/v1/evaluation",
    "access_evaluations_endpoint": "/access/v1/evaluations",
    "search_subject_endpoint": "/access/v1/search/subject",
    "search_resource_endpoint": "/access/v1/search/resource",
    "search_action_endpoint": "/access/v1/search/action",
}


def _admitted() -> tuple[dict, BaseModel]:
    """A search's body, as admission read and validated it against the route's model."""
    return request.admitted_json, request.admitted_body


def _validate(model: type[BaseModel], data: dict, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, prefix) from None


def _decider(portal: str) -> Decider:
    s = services()
    return Decider(db_session(), profile_of(s.config, portal), s.policy, portal, s.clock.now())


def pdp_identifier(portal: str) -> str:
    """From configuration only, never the request's Host header (`serve` fills an unset base with the address it
    binds; an app built without `serve` names `serve`'s default address, and says so at start)."""
    base = services().config.authzen.base_url or served_base_url(DEFAULT_HOST, DEFAULT_PORT)
    return f"{base}/authzen/{portal}"


def _ask(body: z.EvaluationRequest) -> authzen.Ask:
    return authzen.Ask(
        subject=authzen.Entity(body.subject.type, body.subject.id, body.subject.properties),
        action=body.action.name,
        resource=authzen.Entity(body.resource.type, body.resource.id, body.resource.properties),
        context=body.context,
        action_properties=body.action.properties,
    )


def _observe(portal: str, pairs) -> None:
    """Decision metrics and the decision log, grouped by subject (the observer takes one actor at a time)."""
    by_actor: dict[str, tuple[list, list]] = {}
    for actor, question, outcome in pairs:
        if question is not None and isinstance(outcome, Decision):
            questions, decisions = by_actor.setdefault(actor, ([], []))
            questions.append(question)
            decisions.append(outcome)
    for actor, (questions, decisions) in by_actor.items():
        observe.decided("authzen", portal, actor, questions, decisions)


def _sent(item) -> tuple[str, str, str, str | None, str] | None:
    """An evaluation as sent, read as service.domain.authzen reads the validated one: (actor, resource type, resource
    id, its organization, action); None for anything else (its facts are then read by the Decider, as they were
    without a prefetch)."""
    if not isinstance(item, dict):
        return None
    subject, action, resource = item.get("subject"), item.get("action"), item.get("resource")
    if not (isinstance(subject, dict) and isinstance(action, dict) and isinstance(resource, dict)):
        return None
    actor, name, kind, key = subject.get("id"), action.get("name"), resource.get("type"), resource.get("id")
    if subject.get("type") != authzen.SUBJECT_TYPE or kind not in RESOURCE_TYPES \
            or not (isinstance(actor, str) and isinstance(name, str) and isinstance(key, str)):
        return None
    properties = resource.get("properties")
    organization = properties.get("organization") if kind == "account" and isinstance(properties, dict) else None
    if organization is not None and not isinstance(organization, str):
        return None
    return actor, kind, key, organization, name


def _prefetched(services, arguments: dict, asks: list) -> Prefetch | None:
    portal = arguments.get("portal")
    if not isinstance(portal, str) or not asks or None in asks:
        return None
    distinct = set(asks)  # an evaluations body often asks one subject about one resource, action by action
    head_counts = head_counts_read(services.policy, {(action, kind) for _, kind, _, _, action in distinct})
    return Prefetch.of_asks(portal, [(actor, Resource(kind, key, organization))
                                     for actor, kind, key, organization in {ask[:4] for ask in distinct}], head_counts)


def _prefetch_evaluation(body, services, arguments: dict) -> Prefetch | None:
    """The facts an evaluation asks about, read with the client key in one statement (as /v1/authorize's are).
    The Decider uses them only for exactly the question the validated body asks (else it reads its own)."""
    return _prefetched(services, arguments, [_sent(body)])


def _prefetch_evaluations(body, services, arguments: dict) -> Prefetch | None:
    """The same for an evaluations body: every item with the defaults merged as the view merges them."""
    if not isinstance(body, dict):
        return None
    items = body.get("evaluations")
    if not items:  # absent or empty: the single Access Evaluation
        return _prefetch_evaluation(body, services, arguments)
    if not isinstance(items, list):
        return None
    defaults = {key: body[key] for key in ("subject", "action", "resource", "context") if body.get(key) is not None}
    return _prefetched(services, arguments,
                       [_sent({**defaults, **item}) if isinstance(item, dict) else None for item in items])


# --- Discovery ------------------------------------------------------------------------------------

@bp.get("/.well-known/authzen-configuration/authzen/<portal>", operation_id="authzenMetadata",
        summary="AuthZEN PDP metadata of a portal", ok=(200, z.Metadata))
def metadata(path: PdpPath):
    """PDP metadata: the well-known string inserted between the host and the PDP identifier's path."""
    portal = path.portal
    profile_of(services().config, portal)  # 404 for an unknown portal
    pdp = pdp_identifier(portal)
    return jsonify(policy_decision_point=pdp, **{key: pdp + path for key, path in ENDPOINTS.items()})


# --- Access Evaluation(s) ------------------------------------------------------------------------------

@bp.post(PDP_PATH + "/access/v1/evaluation", operation_id="authzenEvaluation",
         summary="AuthZEN Access Evaluation: the /v1/authorize decision and reasons", scope="authorize",
         ok=(200, z.Decision), problems=ERRORS, raw_body=z.EvaluationRequest, lean=True,
         facts=_prefetch_evaluation)
def evaluation(call: Call, path: PdpPath):
    return _evaluate_one(call, path.portal, call.admitted.body)


def _evaluate_one(call: Call, portal: str, body: z.EvaluationRequest) -> dict:
    decider = call.decider(portal)
    outcome, actor, question = authzen.evaluate(decider, _ask(body))
    _observe(portal, [(actor, question, outcome)])
    return authzen.decision_body(outcome, decider, question)


@bp.post(PDP_PATH + "/access/v1/evaluations", operation_id="authzenEvaluations",
         summary="AuthZEN Access Evaluations: defaults merged, three semantics, per-item errors", scope="authorize",
         ok=(200, z.EvaluationsResponse), problems=ERRORS, raw_body=z.EvaluationsRequest, lean=True,
         facts=_prefetch_evaluations)
def evaluations(call: Call, path: PdpPath):
    portal = path.portal
    raw, body = call.admitted.json, call.admitted.body
    if not body.evaluations:  # absent or empty: the single Access Evaluation, backwards compatible
        return _evaluate_one(call, portal, _validate(z.EvaluationRequest, raw))
    defaults = {key: raw[key] for key in ("subject", "action", "resource", "context") if raw.get(key) is not None}
    items: list[authzen.Ask | DomainError] = []
    for index, item in enumerate(body.evaluations):
        try:
            items.append(_ask(_validate(z.EvaluationRequest, {**defaults, **item}, f"evaluations[{index}].")))
        except Problem as problem:
            items.append(Invalid(problem.detail, problem.extra.get("errors", [])))
    decider = call.decider(portal)
    answers = authzen.evaluate_many(decider, items, body.options.evaluations_semantic)
    _observe(portal, answers)
    return {"evaluations": [authzen.decision_body(outcome, decider, question) for _, question, outcome in answers]}


# --- Search ------------------------------------------------------------------------------------------------

def _fingerprint(raw: dict) -> str:
    """What a page token is bound to: the whole request but the token itself (the spec: identical requests)."""
    page = {k: v for k, v in (raw.get("page") or {}).items() if k != "token"}
    canonical = json.dumps({**raw, "page": page}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _bad_token(detail: str) -> Problem:
    return Problem(400, "invalid_page_token", "Invalid page token", detail,
                   errors=[{"field": "page.token", "code": "invalid_page_token", "message": detail}])


def _token_key() -> bytes:
    """The page-token key, the same on every replica: `authzen.page_token_key`, or the database's shared one."""
    s = services()
    if s.config.authzen.page_token_key:
        return s.config.authzen.page_token_key.encode()
    key = current_app.extensions.get(PAGE_TOKEN_SECRET)
    if key is None:
        key = current_app.extensions[PAGE_TOKEN_SECRET] = authzen.page_token_key(s.database, s.clock.now())
    return key


def _signature(portal: str, endpoint: str, payload: bytes) -> bytes:
    """HMAC-SHA256 of the token's payload, bound to the portal (PDP) and the search endpoint it was issued by."""
    mac = hmac.new(_token_key(), b"\0".join((portal.encode(), endpoint.encode(), payload)), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")


def _after(raw: dict, page: z.PageRequest | None, portal: str, endpoint: str, width: int) -> tuple[list | None, int]:
    """The key to continue after, from a page token this PDP signed for this portal, endpoint and request.

    Anything else (forged, edited, another portal's or endpoint's, not text at all) is 400 before a byte of
    it is read as a key: a key has exactly `width` strings, as the search issued it."""
    limit = page.limit if page is not None and page.limit is not None else authzen.DEFAULT_LIMIT
    if page is None or not page.token:
        return None, limit
    try:
        body, _, signature = page.token.encode("ascii").partition(b".")
        verified = hmac.compare_digest(_signature(portal, endpoint, body), signature)
        decoded = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))) if verified else None
        after, bound = (decoded["after"], decoded["request"]) if verified else (None, None)
    except (ValueError, TypeError, KeyError, binascii.Error):  # UnicodeError is a ValueError
        raise _bad_token("page.token is not a token this PDP issued") from None
    if not verified:
        raise _bad_token("page.token is not a token this PDP issued for this search")
    if bound != _fingerprint(raw):
        raise _bad_token("page.token belongs to a different request: send the same request with only the token "
                         "changed")
    if not isinstance(after, list) or len(after) != width or not all(isinstance(k, str) for k in after):
        raise _bad_token("page.token is not a token this PDP issued")
    return after, limit


def _page(raw: dict, next_key: list | None, count: int, portal: str, endpoint: str) -> dict:
    token = ""
    if next_key is not None:
        payload = json.dumps({"after": next_key, "request": _fingerprint(raw)}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=")
        token = (body + b"." + _signature(portal, endpoint, body)).decode()
    return {"next_token": token, "count": count}


def _entity(entity) -> authzen.Entity:
    return authzen.Entity(entity.type, entity.id, entity.properties)


def _searched(raw: dict, body, portal: str, endpoint: str, width: int, search, *asked):
    """One page of a subject or resource search: `search(decider, *asked, context, after, limit)` from where the
    request's page token says (a key of `width` strings), and the token of the next page."""
    after, limit = _after(raw, body.page, portal, endpoint, width)
    found = search(_decider(portal), *asked, authzen.context_of(body.context, body.action.properties), after, limit)
    return jsonify(page=_page(raw, found.next_key, len(found.results), portal, endpoint), results=found.results)


@bp.post(PDP_PATH + "/access/v1/search/subject", operation_id="authzenSearchSubject",
         summary="AuthZEN Subject Search: the accounts that may take an action on a resource", scope="authorize",
         ok=(200, z.SearchResponse), problems=ERRORS, raw_body=z.SubjectSearchRequest)
def search_subject(path: PdpPath):
    raw, body = _admitted()
    return _searched(raw, body, path.portal, "search/subject", 1, authzen.search_subjects, body.subject.type,
                     body.action.name, _entity(body.resource))


@bp.post(PDP_PATH + "/access/v1/search/resource", operation_id="authzenSearchResource",
         summary="AuthZEN Resource Search: what a subject may take an action on", scope="authorize",
         ok=(200, z.SearchResponse), problems=ERRORS, raw_body=z.ResourceSearchRequest)
def search_resource(path: PdpPath):
    raw, body = _admitted()
    return _searched(raw, body, path.portal, "search/resource", 2 if body.resource.type == "account" else 1,
                     authzen.search_resources, _entity(body.subject), body.action.name, body.resource.type)


@bp.post(PDP_PATH + "/access/v1/search/action", operation_id="authzenSearchAction",
         summary="AuthZEN Action Search: the /v1/authorized-actions answer", scope="authorize",
         ok=(200, z.ActionSearchResponse), problems=ERRORS, raw_body=z.ActionSearchRequest)
def search_action(path: PdpPath):
    portal = path.portal
    raw, body = _admitted()
    after, limit = _after(raw, body.page, portal, "search/action", 1)
    actions = authzen.search_actions(_decider(portal), _entity(body.subject), _entity(body.resource))
    start = actions.index(after[0]) + 1 if after and after[0] in actions else 0
    page = actions[start:start + limit]
    more = start + limit < len(actions)
    return jsonify(page=_page(raw, [page[-1]] if more and page else None, len(page), portal, "search/action"),
                   results=[{"name": name} for name in page])
