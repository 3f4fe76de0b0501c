"""The lean path: how every decision endpoint is served, its only path.

A route declared `lean=True` (authorize, batch, authorized-actions, AuthZEN evaluation and evaluations)
is still a declared Flask route: one `Routes` declaration gives its rule in the app's URL map, its
admission (service/api/admission.py, the same as every route's) and its operation in /openapi.json.
What Flask does not do for it is the per-request machinery a decision does not need: the request and
application contexts, Werkzeug's request and response objects, routing, the ORM session. `Api.wsgi_app`
(service/api/declare.py) hands every POST whose path a lean rule matches to its `LeanRoute`, which

  - begins the request's exchange (request id, access log, metrics: service/observe/http.py);
  - admits it (key and scope, media type, size, depth, schema; the route's status mapping);
  - calls the view as `view(call, body=..., path=...)` with a `Call` (the request's connection, clock
    reading and Decider) and encodes what it returns as Flask's `jsonify` does;
  - answers every error as a problem (service/api/problems.py `answer_of`, as Flask's error handler does),
    with the headers every answer carries (nosniff, no-store, X-Request-Id).

`tests/test_lean_path.py` checks that the lean rules match exactly the requests Flask's URL map would route
to them, so no request to a decision endpoint can take another path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any, Callable, get_type_hints

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from service.api.admission import Admitted, admit
from service.api.problems import answer_of
from service.domain.decisions import Decider, profile_of
from service.observe.http import REQUEST_ID_HEADER

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # Flask's jsonify, compact and ASCII


def _encoder():
    """`_ENCODER.encode` for the dicts and lists a view returns, with the C encoder `encode` makes on every call made
    once (making it was most of an answer's encoding: bench/README.md). Without cycle detection: a view's answer is
    a tree it has just built; anything `encode` would refuse is still refused (TypeError, ValueError)."""
    if c_make_encoder is None:  # a Python without the C accelerator: encode as it does
        return _ENCODER.encode
    e = _ENCODER
    encode = c_make_encoder(None, e.default, encode_basestring_ascii, e.indent, e.key_separator, e.item_separator,
                            e.sort_keys, e.skipkeys, e.allow_nan)

    def encoded(value) -> str:
        if not isinstance(value, (dict, list)):
            return e.encode(value)
        return "".join(encode(value, 0))

    return encoded


_encode = _encoder()


@cache
def _status_line(status: int) -> str:
    """"200 OK", "404 NOT FOUND": each status line made once."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


class Call:
    """One lean request as its view sees it: the services, what admission admitted, one read connection."""

    __slots__ = ("services", "admitted", "_now", "_connection")

    def __init__(self, services):
        self.services = services
        self.admitted: Admitted | None = None
        self._now = None
        self._connection = None

    def now(self):
        """The service clock's reading for this request, read once: the key's expiry and the decision are judged at
        the same moment."""
        if self._now is None:
            self._now = self.services.clock.now()
        return self._now

    def connection(self):
        """The request's connection for reads (autocommit on PostgreSQL), opened at first use."""
        if self._connection is None:
            self._connection = self.services.database.reading()
        return self._connection

    def decider(self, portal: str, head_counts_as_read: bool = True) -> Decider:
        """The Decider of `portal` (404 for an unknown one) on this request's connection, with the facts admission
        read in the client key's statement, if it did. Its decisions read an organization's head counts only
        when a question can read them (`Decider`): a view that shows the facts themselves (an explanation)
        asks for them with `head_counts_as_read=False`."""
        s = self.services
        facts = self.admitted.facts if self.admitted is not None else None
        return Decider(self.connection(), profile_of(s.config, portal), s.policy, portal, self.now(), facts,
                       head_counts_as_read)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


@dataclass(frozen=True)
class LeanRoute:
    rule: str  # the URL map's rule, as the access log and metrics name the route
    view: Callable[..., Any]
    declared: Any  # service.api.declare.Declared
    services: Any
    observer: Any  # service.observe.http.Observer, or None
    max_body: int | None

    def __call__(self, environ: dict, start_response, arguments: dict[str, str]):
        observer = self.observer
        exchange = observer.begin(environ) if observer is not None else None
        status = 500
        try:
            status, headers, payload = self._answer(environ, arguments)
            if exchange is not None:
                headers.append((REQUEST_ID_HEADER, exchange.request_id))
        finally:
            if exchange is not None:
                observer.end(exchange, self.rule, "POST", status, environ.get("PATH_INFO", ""))
        start_response(_status_line(status), headers)
        return [payload]

    def _answer(self, environ: dict, arguments: dict[str, str]) -> tuple[int, list, bytes]:
        declared = self.declared
        call = Call(self.services)
        try:
            try:
                call.admitted = admit(declared.rules, environ, self.services, call.connection, lambda: self._read(environ),
                                      call.now, arguments)
                result = self.view(call, **self._arguments(call.admitted, arguments))
            finally:
                call.close()
            status, payload, extra = declared.ok, (_encode(result) + "\n").encode(), []
            media = "application/json"
        except Exception as exc:  # every error is a problem, as Flask's handler answers it (problems.answer_of)
            status, payload, extra = answer_of(exc, declared.statuses)
            media = "application/problem+json"
        headers = [("Content-Type", media), ("Content-Length", str(len(payload))), *extra,
                   ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
        return status, headers, payload

    def _read(self, environ: dict) -> bytes:
        """The body as Flask's `Request.get_data` reads it (werkzeug's `get_input_stream`): past
        server.max_body_bytes, werkzeug's 413; a body shorter than its Content-Length, werkzeug's 400."""
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or "wsgi.input_terminated" in environ or int(length) > self.max_body:
            return get_input_stream(environ, max_content_length=self.max_body).read()
        size, stream = int(length), environ["wsgi.input"]  # the common case, without wrapping the stream
        data = stream.read(size)
        while len(data) < size:
            more = stream.read(size - len(data))
            if not more:
                raise ClientDisconnected()
            data += more
        return data

    def _arguments(self, admitted: Admitted, arguments: dict[str, str]) -> dict:
        takes_body, path = self._takes
        out = {}
        if takes_body:
            out["body"] = admitted.body
        if path is not None:
            out["path"] = path(**arguments)
        return out

    def __post_init__(self):
        """What the view takes, read from its annotations once: whether a body, and the model of its path."""
        hints = get_type_hints(self.view)
        object.__setattr__(self, "_takes", ("body" in hints, hints.get("path")))


class LeanRoutes:
    """The app's lean routes, compiled from its URL map: exact paths, then patterns for rules with arguments."""

    def __init__(self, app):
        services = app.extensions["portal_authz"]
        from service.observe import EXTENSION

        observer = app.extensions.get(EXTENSION)
        self.exact: dict[str, LeanRoute] = {}
        self.patterns: list[tuple[re.Pattern, LeanRoute]] = []
        for rule in app.url_map.iter_rules():
            declared = app.declarations.get(rule.endpoint)
            if declared is None or not declared.lean:
                continue
            blueprint, _, name = rule.endpoint.rpartition(".")
            view = app.blueprints[blueprint].lean_views[name]
            if rule.methods - {"OPTIONS"} != {"POST"}:
                raise ValueError(f"{rule.endpoint}: a lean route answers POST only")
            route = LeanRoute(rule.rule, view, declared, services, observer, app.config["MAX_CONTENT_LENGTH"])
            if not rule.arguments:
                self.exact[rule.rule] = route
                continue
            # Werkzeug's default converter: one path segment (any character but `/`).
            pattern = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("<") else re.escape(part)
                              for part in re.split(r"(<\w+>)", rule.rule))
            self.patterns.append((re.compile(pattern), route))

    def match(self, path: str) -> tuple[LeanRoute, dict[str, str]] | None:
        route = self.exact.get(path)
        if route is not None:
            return route, {}
        if not self.patterns:
            return None
        if not path.isascii():  # as Werkzeug's routing reads PATH_INFO (WSGI's latin-1 of the UTF-8 bytes)
            path = path.encode("latin-1").decode("utf-8", "replace")
        for pattern, route in self.patterns:
            found = pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
        return None
