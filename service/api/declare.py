"""Routes declared once: flask-openapi3 routes, validates and documents each from the same declaration.

A route is one decorator on a `Routes` blueprint; the view's annotations name its models
(`path`, `query`, `body`, all from `service/api/schemas.py`):

    bp = Routes("accounts", __name__, url_prefix="/v1/portals/<portal>")

    @bp.post("/registrations", operation_id="register", summary="Self-registration (R6-R9)",
             scope="manage", ok=(201, RegistrationResult), problems=(409,), links=REGISTERED)
    def register(path: PortalPath, body: RegistrationBody): ...

From that one declaration come the Flask rule, its admission (service/api/admission.py: the
client-key check with its scope, 401/403 before anything is parsed; the body checks, 415, 400
`malformed_json` for bad or too deeply nested JSON, 413; the schema, a 422 problem naming the
field), and the operation in `/openapi.json`: parameters, request body, success and problem
responses with their codes, security with scopes, operationId and links. A problem status means the
same on every route, so each is one response under `components/responses` that operations refer to
(the session header likewise under `components/parameters`). A route that is not
declared this way does not exist (tests walk `app.url_map` against the document).

A route declared `lean=True` (the decision endpoints) is served by service/api/lean.py as its only
path: its view is `view(call, body=..., path=...)` and returns the answer's JSON value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable, get_type_hints

from flask import Request, request
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from pydantic import BaseModel, ValidationError

from service.api import schemas
from service.api.admission import MAX_JSON_DEPTH, Rules, admit
from service.api.lean import LeanRoutes
from service.api.problems import problem_response, validation_problem
from service.api.requests import db_session, services
from service.api.routing import LazyBuildRule
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
# Each problem status is one response under `components/responses`, which every operation answering it refers to.
PROBLEM_RESPONSES = {400: "MalformedJson", 401: "Unauthenticated", 403: "Forbidden", 404: "NotFound",
                     409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType", 422: "Unprocessable"}
# The session header, required or optional, under `components/parameters`.
SESSION_PARAMETERS = {"required": "Session", "optional": "OptionalSession"}


@dataclass(frozen=True)
class Declared:
    """What the request hooks need of a declaration: who may call it and what body it takes."""

    scope: str | None
    body: type[BaseModel] | None
    body_optional: bool
    session: str | None  # None, "required" or "optional"
    links: dict = field(default_factory=dict)
    ok: int = 200
    raw_body: type[BaseModel] | None = None  # the body's model when the view reads the JSON object too (AuthZEN)
    statuses: dict[int, int] = field(default_factory=dict)  # the route's status mapping (AuthZEN: 415, 422 -> 400)
    lean: bool = False  # served by service/api/lean.py: every decision endpoint
    rules: Rules = field(default_factory=lambda: Rules(None, None))  # what admission checks (service/api/admission.py)
    problems: tuple[int, ...] = ()  # the problem statuses it answers, documented as `components/responses`


class ApiRequest(Request):
    """A request whose JSON body the admission hook has already read under its limits."""

    admitted_json: Any = None
    admitted = False
    admitted_body: BaseModel | None = None  # the body as admission validated it (routes with a raw_body)
    client = None  # the calling client (service.domain.clients.Client), once admission admitted its key

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True):
        if self.admitted:
            return self.admitted_json
        return super().get_json(force=force, silent=silent, cache=cache)


def _model_schemas(model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(ref_template=REF + "{model}", mode="serialization")
    out = dict(schema.pop("$defs", {}))
    out[model.__name__] = schema
    return out


class Routes(APIBlueprint):
    """A blueprint of declared routes (see the module docstring)."""

    def __init__(self, name: str, import_name: str, tag: str | None = None, statuses: dict[int, int] | None = None,
                 **kwargs):
        """`tag`: the OpenAPI tag of its operations, when several blueprints publish under one (default: name).
        `statuses`: the status mapping of every problem its routes answer (AuthZEN: {415: 400, 422: 400})."""
        super().__init__(name, import_name, abp_tags=[Tag(name=tag or name)], **kwargs)
        self.declared: dict[str, Declared] = {}
        self.lean_views: dict[str, Callable] = {}  # view(call, **arguments) of each lean route (service/api/lean.py)
        self.statuses = statuses or {}
        self.before_request(self._admit)

    # --- declaring ---------------------------------------------------------------------------

    def _declare(self, method: str, rule: str, *, operation_id: str, summary: str, scope: str | None = None,
                 session: str | None = None, ok: tuple[int, Any] | int = 200, problems: tuple[int, ...] = (),
                 links: dict | None = None, media: str = "application/json", description: str | None = None,
                 body_optional: bool = False, also: dict[int, Any] | None = None,
                 raw_body: type[BaseModel] | None = None, lean: bool = False,
                 facts: Callable[[Any, Any, dict], Any] | None = None) -> Callable:
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
            extensions = {"x-scope": scope} if scope else None
            security = [{"clientKey": [scope]}] if scope else None
            self.components_schemas.update(_model_schemas(schemas.Problem))
            if raw_body is not None:
                self.components_schemas.update(_model_schemas(raw_body))
            # Admission validates the body of a lean route and of one the view reads raw; flask-openapi3 the others'.
            rules = Rules(scope, raw_body or body, body_optional, lean or raw_body is not None, raw_body is not None, facts)
            declared = Declared(scope, body, body_optional, session, links or {}, status, raw_body,
                                dict(self.statuses), lean, rules, tuple(sorted(statuses)))
            self.declared[func.__name__] = declared
            if lean:
                self.lean_views[func.__name__] = func
                func = _not_routed(func)
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

    # --- admitting a request Flask routes (service/api/admission.py) -----------------------------------

    def _admit(self) -> None:
        endpoint = request.endpoint or ""
        declared = self.declared.get(endpoint.rpartition(".")[2])
        if declared is None:
            return
        req = request._get_current_object()
        admitted = admit(declared.rules, req.environ, services(), db_session, lambda: req.get_data(cache=True),
                         arguments=req.view_args)
        req.client = admitted.client
        if declared.rules.model is not None:
            req.admitted, req.admitted_json, req.admitted_body = True, admitted.json, admitted.body


def _not_routed(view: Callable) -> Callable:
    """What Flask's URL map holds for a lean route: its declaration (for the OpenAPI document and the map), never
    called, because Api.wsgi_app serves every request the rule matches before Flask routes it."""
    @wraps(view)
    def not_routed(**_arguments):
        raise RuntimeError(f"{view.__name__} is served by service/api/lean.py, not through Flask's routing")

    return not_routed


def _validation_error(exc: ValidationError):
    problem = validation_problem(exc)
    return problem_response(problem.status, problem.code, problem.title, "the request does not match the schema",
                            **problem.extra)


class Api(OpenAPI):
    """The app: Flask plus the OpenAPI document built from every Routes blueprint's declarations."""

    url_rule_class = LazyBuildRule  # URL builders compiled by the first url_for that needs one (routing.py)

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
        self._lean: LeanRoutes | None = None

    def wsgi_app(self, environ, start_response):
        """A POST to a lean route (every decision endpoint) is served by its LeanRoute; anything else by Flask."""
        if environ.get("REQUEST_METHOD") == "POST":
            lean = self._lean
            if lean is None:  # compiled at the first request, when every blueprint is registered
                lean = self._lean = LeanRoutes(self)
            found = lean.match(environ.get("PATH_INFO", ""))
            if found is not None:
                route, arguments = found
                return route(environ, start_response, arguments)
        return super().wsgi_app(environ, start_response)

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
        spec["components"]["responses"] = {name: {
            "description": f"{PROBLEM_MEANING[code]}; code: " + ", ".join(PROBLEM_CODES[code]),
            "headers": REQUEST_ID, "content": {PROBLEM: {"schema": {"$ref": REF + "Problem"}}}}
            for code, name in PROBLEM_RESPONSES.items()}
        spec["components"]["parameters"] = {name: {
            "name": SESSION_HEADER, "in": "header", "required": session == "required",
            "description": "the session token from signIn (POST .../sessions): the actor of the change"
                           + ("" if session == "required" else
                              "; without it, a `manage` client key reads as a calling service"),
            "schema": {"type": "string", "minLength": 1}} for session, name in SESSION_PARAMETERS.items()}
        by_operation = {}
        for rule in self.url_map.iter_rules():
            declared = self.declarations.get(rule.endpoint)
            if declared is not None:
                by_operation[(_template(rule.rule), sorted(rule.methods - {"HEAD", "OPTIONS"})[0].lower())] = declared
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                declared = by_operation.get((path, method))
                if declared is None:
                    continue
                responses = operation["responses"]
                responses.pop("422", None)  # flask-openapi3's default; our 422s are declared where they happen
                responses.update({str(code): {"$ref": "#/components/responses/" + PROBLEM_RESPONSES[code]}
                                  for code in declared.problems})
                if declared.raw_body is not None:
                    operation["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": {"$ref": REF + declared.raw_body.__name__}}}}
                if declared.session:
                    operation.setdefault("parameters", []).append(
                        {"$ref": "#/components/parameters/" + SESSION_PARAMETERS[declared.session]})


def _template(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
