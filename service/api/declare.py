"""Routes declared once: flask-openapi3 routes, validates and documents each from the same declaration.

A route is one decorator on a `Routes` blueprint; the view's annotations name its models
(`path`, `query`, `body`, all from `service/api/schemas.py`):

    bp = Routes("accounts", __name__, url_prefix="/v1/portals/<portal>")

    @bp.post("/registrations", operation_id="register", summary="Self-registration (R6-R9)",
             scope="manage", ok=(201, RegistrationResult), problems=(409,), links=REGISTERED)
    def register(path: PortalPath, body: RegistrationBody): ...

From that one declaration come the Flask rule, the request validation (a schema error is a 422
problem naming the field), the client-key check with its scope (401/403 before anything is
parsed), the body checks (415, 400 `malformed_json` for bad or too deeply nested JSON, 413),
and the operation in `/openapi.json`: parameters, request body, success and problem responses
with their codes, security with scopes, operationId and links. A route that is not declared
this way does not exist (tests walk `app.url_map` against the document).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, get_type_hints

from flask import Request, g, request
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from pydantic import BaseModel, ValidationError

from service.api import schemas
from service.api.problems import Problem, problem_response, validation_problem
from service import observe
from service.api.requests import db_session, services
from service.domain import clients

MAX_JSON_DEPTH = 32
SESSION_HEADER = "X-Session-Token"
PROBLEM = "application/problem+json"
REF = "#/components/schemas/"
REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}

# Every problem `code` by HTTP status: what a client may branch on (shared/api-v1.md).
PROBLEM_CODES: dict[int, tuple[str, ...]] = {
    400: ("malformed_json",),
    401: ("unauthenticated", "invalid_session", "invalid_credentials", "account_locked", "account_disabled",
          "pending_activation", "pending_approval", "unverified", "password_expired", "account_removed"),
    403: ("insufficient_scope", "forbidden", "recovery_not_offered", "self_registration_closed"),
    404: ("not_found",),
    409: ("last_admin", "username_taken", "email_taken", "organization_exists", "support_account",
          "already_linked", "not_in_organization", "already_admin", "target_status", "account_removed", "conflict",
          "already_held", "request_open", "request_closed"),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_error", "password_policy", "terms_not_accepted", "no_correspondence_address",
          "activation_code_invalid", "activation_code_expired", "recovery_invalid", "recovery_expired"),
}
PROBLEM_MEANING = {
    400: "the body is not JSON, or nests deeper than %d levels" % MAX_JSON_DEPTH,
    401: "no or unknown client key; or, for a person's change, no valid session; or a refused sign-in",
    403: "the client key lacks the scope, or the policy denies (reasons say why)",
    404: "unknown portal, organization, account or action",
    409: "the change breaks an invariant",
    413: "the body is larger than server.max_body_bytes",
    415: "the body is not sent as application/json",
    422: "the request does not match the schema (errors name each field), or says something impossible",
}


@dataclass(frozen=True)
class Declared:
    """What the request hooks need of a declaration: who may call it and what body it takes."""

    scope: str | None
    body: type[BaseModel] | None
    body_optional: bool
    session: str | None  # None, "required" or "optional"
    links: dict = field(default_factory=dict)
    ok: int = 200
    raw_body: type[BaseModel] | None = None  # documented, but read by the view itself (AuthZEN's 400s)
    # From the admitted JSON, the facts to read in the client key's statement (one round trip for both) (an object with
    # `read_key(session, key_id)`, kept in g.prefetched for the view), or None.
    prefetch: Callable[[Any], Any] | None = None


class ApiRequest(Request):
    """A request whose JSON body the admission hook has already read under its limits."""

    admitted_json: Any = None
    admitted = False

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True):
        if self.admitted:
            return self.admitted_json
        return super().get_json(force=force, silent=silent, cache=cache)


def _problem_schema(status: int) -> dict:
    return {"$ref": REF + "Problem"}


def _model_schemas(model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(ref_template=REF + "{model}", mode="serialization")
    out = dict(schema.pop("$defs", {}))
    out[model.__name__] = schema
    return out


class Routes(APIBlueprint):
    """A blueprint of declared routes (see the module docstring)."""

    def __init__(self, name: str, import_name: str, tag: str | None = None, **kwargs):
        """`tag`: the OpenAPI tag of its operations, when several blueprints publish under one (default: name)."""
        super().__init__(name, import_name, abp_tags=[Tag(name=tag or name)], **kwargs)
        self.declared: dict[str, Declared] = {}
        self.before_request(self._admit)

    # --- declaring ---------------------------------------------------------------------------

    def _declare(self, method: str, rule: str, *, operation_id: str, summary: str, scope: str | None = None,
                 session: str | None = None, ok: tuple[int, Any] | int = 200, problems: tuple[int, ...] = (),
                 links: dict | None = None, media: str = "application/json", description: str | None = None,
                 body_optional: bool = False, also: dict[int, Any] | None = None,
                 raw_body: type[BaseModel] | None = None, prefetch: Callable[[Any], Any] | None = None) -> Callable:
        status, model = ok if isinstance(ok, tuple) else (ok, None)
        register = getattr(super(), method)

        def decorate(func):
            hints = get_type_hints(func)
            body, query = hints.get("body"), hints.get("query")
            statuses = set(problems)
            if scope:
                statuses |= {401, 403}
            if session:
                statuses.add(401)
            if "<portal>" in (self.url_prefix or "") + rule:
                statuses.add(404)
            if body is not None:
                statuses |= {400, 413, 415, 422}
            if query is not None or hints.get("path") is not None and len(hints["path"].model_fields) > 1:
                statuses.add(422)
            responses: dict[Any, Any] = {status: self._success(model, media, status, links)}
            for other, other_model in (also or {}).items():  # answers other than problems, e.g. readyz's 503
                responses[other] = self._success(other_model, media, other, None)
            for code in sorted(statuses):
                responses[code] = {
                    "description": f"{PROBLEM_MEANING[code]}; code: " + ", ".join(PROBLEM_CODES[code]),
                    "headers": REQUEST_ID, "content": {PROBLEM: {"schema": _problem_schema(code)}}}
            extensions = {"x-scope": scope} if scope else None
            security = [{"clientKey": [scope]}] if scope else None
            self.components_schemas.update(_model_schemas(schemas.Problem))
            if raw_body is not None:
                self.components_schemas.update(_model_schemas(raw_body))
            self.declared[func.__name__] = Declared(scope, body, body_optional, session, links or {}, status,
                                                    raw_body, prefetch)
            return register(rule, operation_id=operation_id, summary=summary, description=description,
                            responses=responses, security=security, openapi_extensions=extensions)(func)

        return decorate

    def _success(self, model, media: str, status: int, links: dict | None) -> dict:
        response: dict = {"description": "OK" if status < 300 else "", "headers": REQUEST_ID}
        if status == 204:
            response["description"] = "No content"
        elif media != "application/json":
            response["content"] = {media: {"schema": {"type": "string"}}}
        elif model is not None:
            if isinstance(model, type) and issubclass(model, BaseModel):
                self.components_schemas.update(_model_schemas(model))
                schema = {"$ref": REF + model.__name__}
            else:  # a list of a model
                (item,) = model.__args__
                self.components_schemas.update(_model_schemas(item))
                schema = {"type": "array", "items": {"$ref": REF + item.__name__}}
            response["content"] = {"application/json": {"schema": schema}}
        if links:
            response["links"] = links
        return response

    def get(self, rule: str, **declaration):  # type: ignore[override]
        return self._declare("get", rule, **declaration)

    def post(self, rule: str, **declaration):  # type: ignore[override]
        return self._declare("post", rule, **declaration)

    def put(self, rule: str, **declaration):  # type: ignore[override]
        return self._declare("put", rule, **declaration)

    def patch(self, rule: str, **declaration):  # type: ignore[override]
        return self._declare("patch", rule, **declaration)

    def delete(self, rule: str, **declaration):  # type: ignore[override]
        return self._declare("delete", rule, **declaration)

    # --- admitting a request: the key and its scope, then the body's media type, size and depth -------

    def _admit(self) -> None:
        endpoint = request.endpoint or ""
        declared = self.declared.get(endpoint.rpartition(".")[2])
        if declared is None:
            return
        if declared.prefetch is not None and declared.scope and declared.body is not None:
            # The body first, so its facts are read in the key check's statement; a body
            # refused here (415, 413, 400, 422) still answers a bad key's 401/403 first, as always.
            try:
                admit_body(declared.body, declared.body_optional)
            except Exception:
                authenticate(declared.scope)
                raise
            authenticate(declared.scope, declared.prefetch(request.admitted_json))
            return
        if declared.scope:
            authenticate(declared.scope)
        if declared.body is not None:
            admit_body(declared.body, declared.body_optional)


def authenticate(scope: str, prefetch=None) -> None:
    """The caller's `Authorization: Bearer <client key>` must be known and carry `scope`.

    `prefetch` (see Declared.prefetch): the key's row is read in the statement of those facts."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        observe.client_refused("missing")
        raise Problem(401, "unauthenticated", "Unauthenticated", "send a client key as Authorization: Bearer <key>")
    s = services()
    now = s.clock.now()
    session = db_session()
    read = None if prefetch is None else (lambda key_id: prefetch.read_key(session, key_id))
    verdict = clients.check(session, key.strip(), now, read)
    client = verdict.client
    if client is None:
        # A revoked or expired key is refused like an unknown one; the reason is counted in /metrics only.
        observe.client_refused(verdict.refusal)
        raise Problem(401, "unauthenticated", "Unauthenticated", "unknown, revoked or expired client key")
    if scope not in client.scopes.split(","):
        observe.client_refused("insufficient_scope")
        raise Problem(403, "insufficient_scope", "Insufficient scope", f"this client key lacks the {scope!r} scope")
    if clients.use_is_due(client, now):  # last use recorded at most once a minute, never a write per request
        clients.note_use(s.database, client.key_id, now)
    g.client = client.name
    if prefetch is not None:
        g.prefetched = prefetch


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
# A \uD800-\uDFFF escape: only a pair of them (high, then low) stands for a character.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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


def utf8_declared(req) -> bool:
    """JSON is UTF-8 (RFC 8259 section 8.1): a charset parameter may say so, never anything else."""
    charset = req.mimetype_params.get("charset")
    return charset is None or charset.strip().lower() in ("utf-8", "utf8")


def parse_json(data: bytes, status: int = 400) -> Any:
    """The body's JSON value, read as UTF-8 text within the nesting limit; every string well-formed Unicode.

    Raises Problem: 400 `malformed_json` for bytes that are not UTF-8, nesting deeper than
    MAX_JSON_DEPTH or text that is not JSON; `status` (422, AuthZEN's 400) `validation_error` for a
    string holding an unpaired surrogate escape (`"\\ud800"`), which no character encoding can carry
    on to storage, logs or the policy."""
    try:
        text = data.decode("utf-8-sig")  # a byte order mark is ignored, as RFC 8259 allows
    except UnicodeDecodeError:
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not UTF-8 text") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Problem(400, "malformed_json", "Malformed JSON",
                      f"the body nests arrays and objects deeper than the limit of {MAX_JSON_DEPTH} levels")
    try:
        parsed = json.loads(text)
    except ValueError:  # JSONDecodeError; a number too long to convert is a ValueError too
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON") from None
    if SURROGATE_ESCAPE.search(text):
        where = unpaired_surrogate(parsed)
        if where is not None:
            raise Problem(status, "validation_error", "Invalid request",
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


def admit_body(model: type[BaseModel], optional: bool = False) -> None:
    """Read the JSON body within its limits, before any parser sees it; the validation follows."""
    req = request._get_current_object()
    if optional and not req.content_length and not req.get_data(cache=True):
        req.admitted, req.admitted_json = True, {}
        return
    if not req.is_json or not utf8_declared(req):
        raise Problem(415, "unsupported_media_type", "Unsupported media type",
                      "send the body as UTF-8 JSON with Content-Type: application/json")
    data = req.get_data(cache=True)  # over server.max_body_bytes: 413 before anything is read
    parsed = parse_json(data, 422)
    if parsed is None:
        raise Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
    if not isinstance(parsed, dict):  # flask-openapi3 would parse a JSON string a second time
        try:
            model.model_validate(parsed)
        except ValidationError as exc:
            raise validation_problem(exc) from None
    req.admitted, req.admitted_json = True, parsed


def _validation_error(exc: ValidationError):
    problem = validation_problem(exc)
    return problem_response(problem.status, problem.code, problem.title, "the request does not match the schema",
                            **problem.extra)


class Api(OpenAPI):
    """The app: Flask plus the OpenAPI document built from every Routes blueprint's declarations."""

    def __init__(self, import_name: str):
        super().__init__(
            import_name, info=Info(title="portal-authz", version="1",
                                   description="Policy-as-code authorization for health-care provider portals. "
                                               "The fixed contract is shared/api-v1.md; this document is generated "
                                               "from the routes' declarations."),
            security_schemes={"clientKey": {"type": "http", "scheme": "bearer",
                                            "description": "a client key from `portal-authz clients add`; "
                                                           "scopes: authorize, manage, enroll"}},
            validation_error_status=422, validation_error_model=schemas.Problem,
            validation_error_callback=_validation_error, doc_ui=False)
        self.request_class = ApiRequest
        self.declarations: dict[str, Declared] = {}

    def register_api(self, api: APIBlueprint, **options) -> None:  # type: ignore[override]
        if isinstance(api, Routes):
            for name, declared in api.declared.items():
                self.declarations[f"{api.name}.{name}"] = declared
        super().register_api(api, **options)

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        spec = self.spec_json
        spec["components"]["headers"] = {"RequestId": {
            "description": "Every response: the request's X-Request-Id if well formed (1-128 of A-Z a-z 0-9 ._:- "
                           "starting with a letter or digit), else a new one; also in the service's logs",
            "schema": {"type": "string"}}}
        spec["components"]["schemas"].pop("ValidationErrorModel", None)
        by_operation = {}
        for rule in self.url_map.iter_rules():
            declared = self.declarations.get(rule.endpoint)
            if declared is not None:
                by_operation[(_template(rule.rule), sorted(rule.methods - {"HEAD", "OPTIONS"})[0].lower())] = declared
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                declared = by_operation.get((path, method))
                responses = operation["responses"]
                problem = responses.get("422", {}).get("content", {})
                if "application/json" in problem and declared is not None and PROBLEM not in problem:
                    del responses["422"]  # flask-openapi3's default; our 422s are declared where they happen
                if declared is not None and declared.raw_body is not None:
                    operation["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": {"$ref": REF + declared.raw_body.__name__}}}}
                if declared is not None and declared.session:
                    operation.setdefault("parameters", []).append({
                        "name": SESSION_HEADER, "in": "header", "required": declared.session == "required",
                        "description": "the session token from signIn (POST .../sessions): the actor of the change"
                                       + ("" if declared.session == "required" else
                                          "; without it, a `manage` client key reads as a calling service"),
                        "schema": {"type": "string", "minLength": 1}})


def _template(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
