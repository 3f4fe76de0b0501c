"""Admitting a request to a declared route: the one place its key, scope and body are judged.

Every declared route is admitted here, whichever way it is served (service/api/lean.py for the
decision endpoints, Flask's request hook for the others), from its declaration compiled once into
`Rules`. In order:

  1. the client key (`Authorization: Bearer <key>`) must be known and carry the route's scope:
     401/403 before any problem of the body is told;
  2. the body: a JSON media type in UTF-8 (415), within `server.max_body_bytes` (413), UTF-8 text
     nesting at most MAX_JSON_DEPTH levels that parses as JSON (400 `malformed_json`), every string
     well-formed Unicode and the value matching the route's model (422 `validation_error`).

A route may map statuses (AuthZEN answers every bad body 400: `Routes(statuses=...)`); the mapping is
applied where problems are written (service/api/problems.py), so it holds for every problem of the route.

A route with `facts` reads its client key in the statement of the facts its body asks about (one round
trip): its body is read first, and a refused key is still told before any problem of the body.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from service import observe
from service.api.problems import Problem, validation_problem
from service.domain import clients

MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class Rules:
    """What admission checks for one route, compiled from its declaration."""

    scope: str | None
    model: type[BaseModel] | None  # the body's model (None: the route takes no body)
    optional: bool = False  # an absent body reads as {}
    validate: bool = True  # judge the body against `model` here (False: the framework validates an object body)
    raw: bool = False  # the view reads the JSON object itself too (AuthZEN): a body must be an object
    # (JSON, services, the URL's arguments) -> facts read with the key (`read_key(connection, key_id)`)
    facts: Callable[[Any, Any, dict], Any] | None = None


@dataclass(frozen=True)
class Admitted:
    client: clients.Client | None
    json: Any = None  # the body as parsed
    body: BaseModel | None = None  # the body as validated (when admission validates)
    facts: Any = None  # what `Rules.facts` read with the key


def bearer(environ: dict) -> str | None:
    """The client key of `Authorization: Bearer <key>`, or None."""
    scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def content_length(environ: dict) -> int | None:
    """The declared length, as Werkzeug reads it (absent or not a number: None)."""
    value = environ.get("CONTENT_LENGTH")
    if value:
        try:
            return max(0, int(value))
        except (ValueError, TypeError):
            return None
    return None


def json_media(content_type: str) -> bool:
    """A JSON media type (application/json or application/*+json) in UTF-8 (RFC 8259 section 8.1): a charset
    parameter may say so, never anything else. Read as Werkzeug reads `Request.is_json` and `mimetype_params`."""
    if content_type == "application/json":
        return True
    mimetype, params = parse_options_header(content_type)
    mimetype = mimetype.lower()
    if not (mimetype == "application/json" or mimetype.startswith("application/") and mimetype.endswith("+json")):
        return False
    charset = params.get("charset")
    return charset is None or charset.strip().lower() in ("utf-8", "utf8")


def admit(rules: Rules, environ: dict, services, connection: Callable[[], Any],
          read_body: Callable[[], bytes], now: Callable[[], Any] | None = None,
          arguments: dict | None = None) -> Admitted:
    """Admit one request (raises Problem, or werkzeug's 413): `connection()` gives the session or connection the
    key is read on; `read_body()` the body's bytes within server.max_body_bytes; `now()` the moment the key's
    expiry is judged at (default: the service clock's reading); `arguments` the URL's (a portal in the path)."""
    now = now or services.clock.now
    if rules.scope is None:
        if rules.model is None:
            return Admitted(None)
        parsed, body = _body(rules, environ, read_body)
        return Admitted(None, parsed, body)
    key = bearer(environ)
    if key is None:
        observe.client_refused("missing")
        raise Problem(401, "unauthenticated", "Unauthenticated", "send a client key as Authorization: Bearer <key>")
    if rules.model is None:
        return Admitted(_client(rules.scope, key, services, now(), connection()))
    if rules.facts is None:
        client = _client(rules.scope, key, services, now(), connection())
        parsed, body = _body(rules, environ, read_body)
        return Admitted(client, parsed, body)
    try:  # the body first, so that its facts are read in the key's statement
        parsed, body = _body(rules, environ, read_body)
    except (Problem, HTTPException):
        _client(rules.scope, key, services, now(), connection())  # a refused key is told first
        raise
    facts = rules.facts(parsed, services, arguments or {})
    return Admitted(_client(rules.scope, key, services, now(), connection(), facts), parsed, body, facts)


def _client(scope: str, key: str, services, now, connection, facts=None) -> clients.Client:
    read = None if facts is None else (lambda key_id: facts.read_key(connection, key_id))
    verdict = clients.check(connection, key, now, read)
    client = verdict.client
    if client is None:
        # A revoked or expired key is refused like an unknown one; the reason is counted in /metrics only.
        observe.client_refused(verdict.refusal)
        raise Problem(401, "unauthenticated", "Unauthenticated", "unknown, revoked or expired client key")
    if scope not in client.scopes.split(","):
        observe.client_refused("insufficient_scope")
        raise Problem(403, "insufficient_scope", "Insufficient scope", f"this client key lacks the {scope!r} scope")
    if clients.use_is_due(client, now):  # last use recorded at most once a minute, never a write per request
        clients.note_use(services.database, client.key_id, now)
    observe.client(client.name)
    return client


def _body(rules: Rules, environ: dict, read_body: Callable[[], bytes]) -> tuple[Any, BaseModel | None]:
    """The body's JSON value and, when admission validates it, the model it makes."""
    model = rules.model
    if rules.optional and not content_length(environ):
        data = read_body()
        if not data:
            return {}, (model.model_validate({}) if rules.validate else None)
    if not json_media(environ.get("CONTENT_TYPE", "")):
        raise Problem(415, "unsupported_media_type", "Unsupported media type",
                      "send the body as UTF-8 JSON with Content-Type: application/json")
    parsed = parse_json(read_body())  # over server.max_body_bytes: 413 before anything is read
    if parsed is None:
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is empty or not valid JSON")
    if not isinstance(parsed, dict):
        if rules.raw:
            raise Problem(422, "validation_error", "Invalid request", "the request body must be a JSON object",
                          errors=[{"field": "(body)", "code": "dict_type", "message": "a JSON object"}])
        try:  # a JSON string would otherwise be parsed a second time by the framework
            model.model_validate(parsed)
        except ValidationError as exc:
            raise validation_problem(exc) from None
    if not rules.validate:
        return parsed, None
    try:  # model_validate with its defaults, without its own call's cost (it runs on every decision)
        return parsed, model.__pydantic_validator__.validate_python(parsed)
    except ValidationError as exc:
        raise validation_problem(exc) from None


_BOM = b"\xef\xbb\xbf"
_scan_json = json.JSONDecoder().scan_once  # what json.loads(text) runs for a str with no options
_json_space = json.decoder.WHITESPACE.match
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
# A \uD800-\uDFFF escape: only a pair of them (high, then low) stands for a character.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def json_depth(text: str) -> int:
    """How deeply the JSON text nests arrays and objects, read without parsing it (strings skipped).

    Text, not bytes: only decoded text tells a quote inside a string from one that ends it (in UTF-16
    an escaped quote's bytes read as a backslash escaping a NUL, then a closing quote)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than the limit
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in ("[", "{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes) -> Any:
    """The body's JSON value, read as UTF-8 text within the nesting limit; every string well-formed Unicode.

    Raises Problem: 400 `malformed_json` for bytes that are not UTF-8, nesting deeper than
    MAX_JSON_DEPTH or text that is not JSON; 422 `validation_error` for a string holding an unpaired
    surrogate escape (`"\\ud800"`), which no character encoding can carry on to storage, logs or the policy."""
    if data[:3] == _BOM:  # a byte order mark is ignored, as RFC 8259 allows (what the codec utf-8-sig does,
        data = data[3:]   # without its lookup through the codec registry on every request)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not UTF-8 text") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Problem(400, "malformed_json", "Malformed JSON",
                      f"the body nests arrays and objects deeper than the limit of {MAX_JSON_DEPTH} levels")
    try:  # json.loads(text) as JSONDecoder.decode does it, without its calls around the scanner
        parsed, end = _scan_json(text, _json_space(text, 0).end())
        if _json_space(text, end).end() != len(text):
            raise ValueError("extra data")
    except (StopIteration, ValueError):  # no value; JSONDecodeError; a number too long to convert
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON") from None
    if SURROGATE_ESCAPE.search(text):
        where = unpaired_surrogate(parsed)
        if where is not None:
            raise Problem(422, "validation_error", "Invalid request",
                          "a string holds an unpaired surrogate escape (\\uD800-\\uDFFF): not a character",
                          errors=[{"field": where, "code": "invalid_unicode",
                                   "message": "a surrogate escape must be one of a high-low pair"}])
    return parsed


def unpaired_surrogate(value: Any, where: str = "") -> str | None:
    """The place of the first string (a value or a key) holding a lone surrogate, or None."""
    if isinstance(value, str):
        return None if _encodable(value) else (where or "(body)")
    if isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}.{key}" if where else str(key)
            if not _encodable(key):
                return place.encode("utf-8", "backslashreplace").decode()
            found = unpaired_surrogate(item, place)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unpaired_surrogate(item, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
