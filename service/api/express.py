"""The express lane for `POST /v1/authorize`, the request every portal page makes, so the one that must be cheapest.

A well-formed question with a working `authorize` key is answered here, in front of Flask: the
same admission (media type, size, depth, the schema), the same key check and facts statement
(one round trip), the same Decider and policy, the same metrics, access log and decision log, the
same body and headers. What it skips is the machinery a decision does not need: Flask's request
and application contexts, routing, Werkzeug's request and response objects, the ORM session.

Anything else is handed, untouched, to the declared Flask route, which answers it as always: a
body that is not JSON or does not match the schema, a missing or refused key, `"explain": true`,
`"remedies": true`, an unknown portal, organization or account, any error. Problems are written in
one place only, and the lane can never answer differently from the route: `tests/test_express_lane.py`
sends the same requests to both and compares status, headers and body, and counts that the lane answered.
"""
from __future__ import annotations

import json
import logging
from io import BytesIO
from time import perf_counter

from flask import Flask
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from service.api.declare import MAX_JSON_DEPTH, SURROGATE_ESCAPE_BYTES, json_depth
from service.api.decisions import answer_of, question_of
from service.api.schemas import AuthorizeRequest
from service.domain import clients
from service.domain.decisions import Decider, Prefetch
from service.domain.errors import DomainError
from service.observe import EXTENSION
from service.observe.http import REQUEST_ID_HEADER, request_id_of

ROUTE = "/v1/authorize"
SCOPE = "authorize"
log = logging.getLogger(__name__)


def _bearer(header: str | None) -> str | None:
    """The client key of `Authorization: Bearer <key>`, as the route's `authenticate` reads it."""
    scheme, _, key = (header or "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").partition(";")[0].strip().lower() == "application/json"


def _plain_utf8_json(content_type: str | None, body: bytes) -> bool:
    """A body the route would admit as it is: UTF-8 (declared so or not at all), within the nesting limit, and
    no surrogate escape (a lone one is the route's 422; a rare pair is left to the route too)."""
    _, _, params = (content_type or "").partition(";")
    charset = next((v for k, _, v in (p.strip().partition("=") for p in params.split(";")) if k.lower() == "charset"),
                   None)
    if charset is not None and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return json_depth(text) <= MAX_JSON_DEPTH and SURROGATE_ESCAPE_BYTES.search(body) is None


class ExpressAuthorize:
    """WSGI middleware: answers well-formed `POST /v1/authorize` requests, hands everything else to `route`."""

    def __init__(self, app: Flask, route):
        self.route = route  # the Flask app's WSGI callable
        self.services = app.extensions["portal_authz"]
        self.observer = app.extensions.get(EXTENSION)
        self.max_body = self.services.config.server.max_body_bytes

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == ROUTE and environ.get("REQUEST_METHOD") == "POST":
            start = perf_counter()
            try:
                answered = self._answer(environ, start)
            except (DomainError, SQLAlchemyError):
                answered = None  # the route answers it: 404/422 problems, 503 for the database
            except Exception:
                log.exception("the express lane failed; the route answers the request")
                answered = None
            if self.observer is not None:
                self.observer.metrics.express(answered is not None)
            if answered is not None:
                headers, body = answered
                start_response("200 OK", headers)
                return [body]
        return self.route(environ, start_response)

    def _answer(self, environ, start: float) -> tuple[list, bytes] | None:
        key = _bearer(environ.get("HTTP_AUTHORIZATION"))
        length = environ.get("CONTENT_LENGTH") or ""
        if key is None or not _is_json(environ.get("CONTENT_TYPE")) or not length.isdigit():
            return None
        size = int(length)
        if not 0 < size <= self.max_body:
            return None
        body = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = BytesIO(body)  # if the route answers after all, it reads the same body
        if len(body) != size or not _plain_utf8_json(environ.get("CONTENT_TYPE"), body):
            return None
        try:
            ask = AuthorizeRequest.model_validate_json(body)
        except ValidationError:
            return None
        s = self.services
        profile = s.config.portal(ask.portal)
        if ask.explain or ask.remedies or profile is None:
            return None
        question = question_of(ask)
        prefetch = Prefetch(ask.portal, ask.actor, question.resource)
        now = s.clock.now()
        with s.database.reading() as connection:
            client = clients.check(connection, key, now, lambda key_id: prefetch.read_key(connection, key_id)).client
            if client is None or SCOPE not in client.scopes.split(","):
                return None  # the route refuses it (401/403) and counts the refusal
            decision = Decider(connection, profile, s.policy, ask.portal, now, prefetch).decide(ask.actor, question)
        if clients.use_is_due(client, now):
            clients.note_use(s.database, client.key_id, now)
        request_id = request_id_of(environ)
        if self.observer is not None:
            self.observer.decided("authorize", ask.portal, ask.actor, (question,), (decision,), start, request_id,
                                  client.name)
        # As Flask's jsonify writes it (compact, ASCII, a final newline) and the route's after-hooks head it.
        payload = (json.dumps(answer_of(decision), separators=(",", ":")) + "\n").encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"), (REQUEST_ID_HEADER, request_id)]
        if self.observer is not None:
            self.observer.answered(ROUTE, "POST", 200, request_id, ROUTE, start, client.name)
        return headers, payload
