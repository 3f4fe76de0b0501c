"""GET /openapi.json, generated from the same pydantic models that validate requests."""
from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel

from service.api import authzen_schemas as z
from service.api import schemas as s
from service.api.maintenance import SweepCounts

bp = Blueprint("openapi", __name__)

CHANGE_ERRORS = [400, 401, 403, 404, 409, 413, 415, 422]
AUTHZEN_ERRORS = [400, 401, 403, 404, 413]
REQUEST_ID_HEADER = {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}

# (method, path, summary, scope, request model, response model, success status, error statuses)
ENDPOINTS: list[tuple] = [
    ("get", "/healthz", "Liveness: the process is up", None, None, s.Health, 200, []),
    ("get", "/readyz", "Readiness: database answers and policy loaded", None, None, s.Readiness, 200, [503]),
    ("get", "/openapi.json", "This OpenAPI document", None, None, None, 200, []),
    ("get", "/metrics", "Prometheus metrics in the text exposition format (unauthenticated, like /healthz)", None,
     None, "text/plain", 200, []),
    ("post", "/v1/authorize", "May this actor take this action on this resource?", "authorize",
     s.AuthorizeRequest, s.AuthorizeResponse, 200, [400, 401, 403, 404, 413, 415, 422]),
    ("post", "/v1/authorize/batch", "Up to 100 decisions for one actor", "authorize",
     s.BatchRequest, s.BatchResponse, 200, [400, 401, 403, 404, 413, 415, 422]),
    ("post", "/v1/authorized-actions", "Every action the actor may take on the resource", "authorize",
     s.AuthorizedActionsRequest, s.AuthorizedActionsResponse, 200, [400, 401, 403, 404, 413, 415, 422]),
    ("post", "/v1/portals/{portal}/organizations", "Enrol an organization with its addresses", "enroll",
     s.OrganizationBody, s.OrganizationView, 201, [400, 401, 403, 404, 409, 413, 415, 422]),
    ("get", "/v1/portals/{portal}/organizations/{org}", "An organization, its admins and warnings (R3)", "enroll",
     None, s.OrganizationView, 200, [401, 403, 404]),
    ("post", "/v1/portals/{portal}/support-staff", "Create a support staff account", "enroll",
     s.SupportStaffBody, s.AccountCreated, 201, [400, 401, 403, 404, 409, 413, 415, 422]),
    ("post", "/v1/portals/{portal}/organizations/{org}/admins", "Designate an admin (R4, R12, R13)", "enroll",
     s.AdminBody, s.AccountCreated, 201, [400, 401, 403, 404, 409, 413, 415, 422]),
    ("post", "/v1/portals/{portal}/registrations", "Self-registration (R6-R9, R11, R12)", "manage",
     s.RegistrationBody, s.RegistrationResult, 201, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/activations", "Activate a master with the letter's code (R10)", "manage",
     s.ActivationBody, s.AccountView, 200, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/registrations/confirm", "Complete registration with the emailed code (R12)",
     "manage", s.ConfirmBody, s.AccountView, 200, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/organizations/{org}/activation-codes",
     "Support staff: a new activation letter for an expired code (R10)", "manage", s.ActivationCodeBody, None, 201,
     CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/sessions", "Sign in", "manage", s.SignInBody, s.SessionView, 201, CHANGE_ERRORS),
    ("delete", "/v1/portals/{portal}/sessions/current", "Sign out", "manage", None, None, 204, [401, 403]),
    ("get", "/v1/portals/{portal}/accounts/{username}", "An account with its memberships", "manage", None,
     s.AccountView, 200, [401, 403, 404]),
    ("patch", "/v1/portals/{portal}/accounts/{username}", "Update profile fields or email (R21)", "manage",
     s.ProfileBody, s.AccountView, 200, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/accounts/{username}/{path_action}",
     "An admin action: approve, enable, disable, remove, upgrade, downgrade, unlock, send-password-recovery, "
     "send-registration-email (R5)", "manage", s.ActionBody, s.AccountView, 200, CHANGE_ERRORS),
    ("put", "/v1/portals/{portal}/accounts/{username}/permissions", "Replace granted functions (R14, R15)", "manage",
     s.PermissionsBody, s.AccountView, 200, CHANGE_ERRORS),
    ("get", "/v1/portals/{portal}/accounts/{username}/comments", "Comment history, oldest first (R25)", "manage",
     None, None, 200, [401, 403, 404]),
    ("post", "/v1/portals/{portal}/organizations/{org}/accounts", "Create a subordinate account (R13)", "manage",
     s.SubordinateBody, s.AccountView, 201, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/organizations/{org}/links", "Link an account of another organization (R13)",
     "manage", s.LinkBody, s.AccountView, 201, CHANGE_ERRORS),
    ("get", "/v1/portals/{portal}/organizations/{org}/accounts",
     "Accounts the actor may see; ?q=&status=&manageable=true&limit=&after= (R24)", "manage", None, s.AccountPage,
     200, [401, 403, 404, 422]),
    ("get", "/v1/portals/{portal}/audit", "Recorded changes and decisions, newest first (R27)", "enroll", None,
     s.AuditPage, 200, [401, 403, 404, 422]),
    ("get", "/v1/portals/{portal}/outbox", "Notifications queued for delivery", "enroll", None, s.OutboxPage, 200,
     [401, 403, 404, 422]),
    ("put", "/v1/portals/{portal}/accounts/{username}/password",
     "The account changes its own password, also when expired (R17, R18); a wrong current password counts (R19)",
     "manage", s.PasswordChangeBody, s.PasswordSet, 200, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/password-recoveries",
     "Self-service recovery by security answers: 202 whatever the answers (R20)", "manage", s.RecoveryBody,
     s.RecoveryAccepted, 202, [400, 401, 403, 404, 413, 415, 422]),
    ("post", "/v1/portals/{portal}/password-recoveries/confirm",
     "Set a new password with the emailed code; unlocks a locked account (R19, R20)", "manage",
     s.RecoveryConfirmBody, s.PasswordSet, 200, CHANGE_ERRORS),
    ("post", "/v1/portals/{portal}/maintenance/sweep", "Run the inactivity sweep now (R22, R23)", "enroll", None,
     SweepCounts, 200, [401, 403, 404]),
    # OpenID AuthZEN Authorization API 1.0 (issue 16): one PDP per portal profile; 400 for every bad body.
    ("get", "/.well-known/authzen-configuration/authzen/{portal}", "AuthZEN PDP metadata of a portal", None, None,
     z.Metadata, 200, [404]),
    ("post", "/authzen/{portal}/access/v1/evaluation",
     "AuthZEN Access Evaluation: the /v1/authorize decision, reasons in context", "authorize",
     z.EvaluationRequest, z.Decision, 200, AUTHZEN_ERRORS),
    ("post", "/authzen/{portal}/access/v1/evaluations",
     "AuthZEN Access Evaluations: defaults, execute_all / deny_on_first_deny / permit_on_first_permit, per-item "
     "errors", "authorize", z.EvaluationsRequest, z.EvaluationsResponse, 200, AUTHZEN_ERRORS),
    ("post", "/authzen/{portal}/access/v1/search/subject",
     "AuthZEN Subject Search: the accounts that may take the action on the resource (paged)", "authorize",
     z.SubjectSearchRequest, z.SearchResponse, 200, AUTHZEN_ERRORS),
    ("post", "/authzen/{portal}/access/v1/search/resource",
     "AuthZEN Resource Search: the organizations or accounts the subject may take the action on (paged)",
     "authorize", z.ResourceSearchRequest, z.SearchResponse, 200, AUTHZEN_ERRORS),
    ("post", "/authzen/{portal}/access/v1/search/action",
     "AuthZEN Action Search: the /v1/authorized-actions answer", "authorize", z.ActionSearchRequest,
     z.ActionSearchResponse, 200, AUTHZEN_ERRORS),
]


def _schemas(models: set[type[BaseModel]]) -> dict:
    out: dict = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def document() -> dict:
    paths: dict = {}
    models: set[type[BaseModel]] = {s.Problem}
    for method, path, summary, scope, req, resp, ok, errors in ENDPOINTS:
        op: dict = {"summary": summary, "responses": {}}
        if scope:
            op["security"] = [{"clientKey": [scope]}]
            op["x-scope"] = scope
        if req is not None:
            models.add(req)
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(req)}}}
        if isinstance(resp, str):  # a media type other than JSON
            content = {resp: {"schema": {"type": "string"}}}
        else:
            schema = {"type": "object"} if resp is None else _ref(resp)
            if resp is not None:
                models.add(resp)
            content = {"application/json": {"schema": schema}}
        op["responses"][str(ok)] = {"description": "OK", "headers": REQUEST_ID_HEADER, "content": content}
        for status in errors:
            op["responses"][str(status)] = {
                "description": "problem details",
                "headers": REQUEST_ID_HEADER,
                "content": {"application/problem+json": {"schema": _ref(s.Problem)}},
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "portal-authz", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": _schemas(models),
            "securitySchemes": {"clientKey": {"type": "http", "scheme": "bearer",
                                              "description": "a client key from `portal-authz clients add`"}},
            "headers": {"RequestId": {
                "description": "Every response: the request's X-Request-Id if well formed (1-128 of A-Z a-z 0-9 "
                               "._:- starting with a letter or digit), else a new one; also in the service's logs",
                "schema": {"type": "string"}}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
