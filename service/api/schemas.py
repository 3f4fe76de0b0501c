"""Request and response bodies. The same models validate requests and generate /openapi.json."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# The API's limits on a required text, one each: a name (a username, an organization key, a person's name, an
# address's parts), a line (an organization's name, an address line, a security answer), a secret (a password)
# and a one-time code. The console's forms state the same (service/console/templates/console/_forms.html).
Name = Annotated[str, Field(min_length=1, max_length=100)]
Line = Annotated[str, Field(min_length=1, max_length=200)]
Secret = Annotated[str, Field(min_length=1, max_length=256)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- Path and query parameters ----------------------------------------------------------------

class HealthPath(BaseModel):
    """No path parameters (declared so the operation says so)."""


class PortalPath(BaseModel):
    portal: str = Field(description="a portal profile id from config.yaml: ahcccs, qm, ahw, masshealth ship")


class OrgPath(PortalPath):
    org: str = Field(description="the organization key (Provider ID, TIN, PID/SL)")


class AccountPath(PortalPath):
    username: str = Field(description="case-insensitive")


class ActionPath(AccountPath):
    path_action: str = Field(
        description="approve, enable, disable, remove, upgrade, downgrade, unlock, send-password-recovery, "
                    "send-registration-email (any other is 404)",
        json_schema_extra={"enum": ["approve", "enable", "disable", "remove", "upgrade", "downgrade", "unlock",
                                    "send-password-recovery", "send-registration-email"]})


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AccountQuery(_Query):
    organization: str | None = Field(default=None, min_length=1, max_length=100,
                                     description="which membership to judge by, when the account has several")


class AccountsQuery(_Query):
    q: str | None = Field(default=None, max_length=100, description="substring of username, name or email")
    status: str | None = Field(default=None, max_length=40, description="only accounts with this status")
    manageable: bool = Field(default=False, description="only accounts the actor may act on")
    limit: int = Field(default=50, ge=1, le=200)
    after: str | None = Field(default=None, max_length=100, description="the `next` of the previous page")


class AuditQuery(_Query):
    organization: str | None = Field(default=None, max_length=100)
    account: str | None = Field(default=None, max_length=100, description="as actor or target")
    since: AwareDatetime | None = Field(default=None, description="an ISO 8601 instant with a zone")
    before: int | None = Field(default=None, ge=1, le=2**62, description="the `next` of the previous page")
    limit: int = Field(default=100, ge=1, le=500)


class OutboxQuery(_Query):
    to: str | None = Field(default=None, max_length=254, description="only notifications to this recipient")
    limit: int = Field(default=500, ge=1, le=5000)


class ResourceRef(_Body):
    type: Literal["organization", "account"]
    id: str = Field(min_length=1, max_length=100, description="organization key or username")
    organization: str | None = Field(default=None, min_length=1, max_length=100,
                                     description="org key, when an account belongs to several organizations")


class AuthorizeRequest(_Body):
    portal: Code
    actor: str = Field(min_length=1, max_length=100, description="the acting account's username")
    action: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    resource: ResourceRef
    context: dict[str, Any] = Field(default_factory=dict, description="grant/revoke: {\"permission\": ...}")
    explain: bool = Field(default=False, description=(
        "Also answer `explanation`: for each rule of the action, each requirement with its "
        "outcome, the reason code it is told as and the facts it read (as `portal-authz policy explain --json`)"))
    remedies: bool = Field(default=False, description=(
        "also answer `remedies`: for each failing requirement some change satisfies, the change and who in "
        "the organization may make it (docs/remedies.md); computed only when asked"))


class Check(_Body):
    action: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    resource: ResourceRef
    context: dict[str, Any] = Field(default_factory=dict)


class BatchRequest(_Body):
    portal: Code
    actor: Name
    checks: list[Check] = Field(min_length=1, max_length=100)
    remedies: bool = Field(default=False, description=(
        "also answer `remedies`: for each failing requirement some change satisfies, the change and who in "
        "the organization may make it (docs/remedies.md); computed only when asked"))


class AuthorizedActionsRequest(_Body):
    portal: Code
    actor: Name
    resource: ResourceRef


class Reason(BaseModel):
    code: str
    message: str


class RemedyChange(BaseModel):
    action: str = Field(description="an account action of the API (grant, unlock, approve, enable, ...), or "
                                    "change_password, accept_terms, activate (made by the account's own person)")
    account: str = Field(description="the account changed: the actor's own")
    organization: str | None = Field(default=None, description="where the change is made (absent for a "
                                                                 "self-service change)")
    permission: str | None = Field(default=None, description="the function, for a grant")


class Remedy(BaseModel):
    """What would allow a denial: the change that satisfies one failing requirement and who may make it."""

    code: str = Field(description="the reason code of the failing requirement")
    change: RemedyChange
    by: list[str] = Field(max_length=5, description=(
        "usernames of the organization's accounts the policy allows to make the change, delegates then "
        "admins, at most 5; only accounts of an organization where the actor's membership is its to see; "
        "empty when nobody in the organization can (then ask support, see `support`)"))
    support: bool = Field(description="whether portal support staff can make the change")


class AuthorizeResponse(BaseModel):
    allowed: bool
    reasons: list[Reason] = Field(description="empty when allowed, never empty when denied")
    policy_version: str


class ExplainedRequirement(BaseModel):
    name: str
    holds: bool | None = Field(description="null when it reads a fact withheld from the actor (see `withheld`)")
    told_as: str | None = Field(description="the reason code this failing requirement is told as; null if untold")
    reads: dict[str, Any] = Field(description="the facts the requirement reads, by name (actor.status, target.role, ...)")


class ExplainedRule(BaseModel):
    kind: Literal["rule", "unknown_action"] = Field(description="a rule that may allow, or one that only explains "
                                                                "the denial of an action no rule knows")
    holds: bool
    requirements: list[ExplainedRequirement]


class Explanation(BaseModel):
    allowed: bool
    reasons: list[str]
    policy_version: str
    action: str
    rules: list[ExplainedRule] = Field(description="empty when no rule is about the action (denied: fail closed)")
    facts: dict[str, Any] = Field(description="the actor's and the resource's facts the policy decided on, as far "
                                              "as the actor may read them (the read scoping of every read)")
    withheld: list[str] = Field(default_factory=list, description=(
        "the resource's facts the actor may not read (target.role, target.status, organization.active_admins, "
        "...): left out of `facts` and `reads`"))


class AuthorizeExplainedResponse(AuthorizeResponse):
    explanation: Explanation | None = Field(
        default=None, description="only with `explain: true`; null if the policy could not be evaluated")
    remedies: list[Remedy] | None = Field(default=None, description="only with `remedies: true`; empty when allowed")


class CheckError(BaseModel):
    status: int = Field(description="the HTTP status /v1/authorize would answer this check with (404, 422)")
    code: str = Field(description="the problem's stable code (not_found, validation_error)")
    message: str = Field(description="what is wrong, naming the check: checks[2]: ...")
    errors: list[dict[str, str]] | None = Field(None, description="field errors ({field, code, message}), if any")


class BatchResult(AuthorizeResponse):
    remedies: list[Remedy] | None = Field(default=None, description="only with `remedies: true`")
    error: CheckError | None = Field(
        None, description="only on a check that names something unknown or impossible: that check's problem, "
                          "answered in its place as a denial (reasons carry its code); the other checks are decided")


class BatchResponse(BaseModel):
    results: list[BatchResult] = Field(description="one answer per check, in order")


class AuthorizedActionsResponse(BaseModel):
    actions: list[str]
    policy_version: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    policy_version: str | None
    database: Literal["ok", "unavailable"]


class FieldError(BaseModel):
    field: str
    code: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None
    reasons: list[Reason] | None = None


class ClockRequest(_Body):
    advance: str | None = Field(default=None, description="an ISO 8601 duration, e.g. P16D or PT15M")
    now: str | None = Field(default=None, description="an ISO 8601 instant with a time zone")



# --- Enrolment (scope `enroll`) ---------------------------------------------------------------

class AddressBody(_Body):
    id: Name
    line1: Line
    city: Name
    state: str = Field(min_length=1, max_length=50)
    zip: str = Field(min_length=1, max_length=20)


class OrganizationBody(_Body):
    key: Name
    name: Line
    addresses: list[AddressBody] = Field(default_factory=list, max_length=50)
    business_type: str | None = Field(default=None, max_length=50)
    region: str | None = Field(default=None, max_length=100)


class AdminSummary(BaseModel):
    username: str
    name: str
    email: str
    phone: str | None
    status: str


class OrganizationView(BaseModel):
    key: str
    name: str
    business_type: str | None
    region: str | None
    addresses: list[dict[str, str]]
    admins: list[AdminSummary]
    warnings: list[str] = Field(description="single_admin (R3: keep a backup admin), no_active_admin")


class SupportStaffBody(_Body):
    username: Name
    first_name: Name
    last_name: Name
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: Secret


class SecurityQuestion(_Body):
    question: Line
    answer: Line


class ContractRegistrationFields(_Body):
    """The registration fields api-v1.md lets admin and subordinate bodies carry.

    `organization`, when sent, must be the organization of the path (else 422 `organization_mismatch`);
    `accepted_terms: false` is 422 `terms_not_accepted`. The others are checked for shape and
    otherwise ignored: they describe self-registration (the correspondence address of an activation
    letter, the business type and region set at enrolment, security questions that the account's own
    person sets), and no profile uses them for an account made by support staff or a Primary User.
    """

    organization: str | None = Field(default=None, min_length=1, max_length=100,
                                      description="if sent, the organization of the path")
    security_questions: list[SecurityQuestion] = Field(default_factory=list, max_length=5,
                                                       description="accepted and ignored")
    accepted_terms: bool | None = Field(default=None, description="false is refused (R7)")
    address_id: str | None = Field(default=None, max_length=100, description="accepted and ignored")
    business_type: str | None = Field(default=None, max_length=50, description="accepted and ignored")
    region: str | None = Field(default=None, max_length=100, description="accepted and ignored")

    def check_organization(self, org: str) -> None:
        from service.api.problems import Problem

        if self.organization is not None and self.organization != org:
            raise Problem(422, "validation_error", "Invalid request",
                          f"organization {self.organization!r} is not the organization of the path ({org!r})",
                          errors=[{"field": "organization", "code": "organization_mismatch",
                                   "message": f"must be {org!r}, the organization of the path"}])
        if self.accepted_terms is False:
            raise Problem(422, "terms_not_accepted", "Invalid request", "the terms of use must be accepted (R7)",
                          errors=[{"field": "accepted_terms", "code": "terms_not_accepted", "message": "must be true"}])


class AdminBody(ContractRegistrationFields):
    username: Name
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=40)
    password: str | None = Field(default=None, min_length=1, max_length=256,
                                 description="temporary: the new admin sets its own at first sign-in")
    accepted_terms: bool | None = Field(
        default=None, description="true when the person accepted the terms of use (R7); otherwise the account "
                                  "accepts them at its first sign-in (POST .../sessions with accepted_terms)")
    existing_account: bool = Field(
        default=False, description="true to make an existing active member of this organization its admin "
                                   "(send only the username); without it an existing username is 409 "
                                   "username_taken")


class AccountCreated(BaseModel):
    username: str
    status: str
    support: bool = True


class AdminDesignated(BaseModel):
    username: str
    organization: str
    role: Literal["admin"]
    status: str


# --- Accounts (scope `manage`) ----------------------------------------------------------------

Email = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class NewPerson(_Body):
    """The person a new account is for, as self-registration and a Primary User's subordinate both ask."""

    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
    first_name: Name
    last_name: Name
    email: str = Email
    phone: str | None = Field(default=None, max_length=40)
    password: Secret


class _RegistrationOrganization(_Body):
    organization: Name


# Pydantic takes the last base's fields first: `organization` stays the body's first field (its errors first).
class RegistrationBody(NewPerson, _RegistrationOrganization):
    security_questions: list[SecurityQuestion] = Field(default_factory=list, max_length=5)
    accepted_terms: bool | None = Field(default=None, description="must be true (R7)")
    address_id: str | None = Field(default=None, max_length=100)
    business_type: str | None = Field(default=None, max_length=50)
    region: str | None = Field(default=None, max_length=100)


class RegistrationResult(BaseModel):
    username: str
    organization: str
    role: Literal["admin", "member"]
    status: str
    admins: list[dict[str, str | None]]


class ActivationBody(_Body):
    username: Name
    code: Code
    temporary_password: Secret
    new_password: Secret


class ConfirmBody(_Body):
    username: Name
    code: Code


class SignInBody(_Body):
    username: Name
    password: Secret
    accepted_terms: bool | None = Field(
        default=None, description="required (true) only for an account that has not yet accepted the terms of "
                                  "use (R7): an admin set up without them, a masshealth subordinate; otherwise "
                                  "401 terms_not_accepted")


class SessionView(BaseModel):
    token: str
    expires_at: str
    password_expires_at: str | None


class MembershipView(BaseModel):
    organization: str
    role: str
    status: str
    permissions: list[str]


class AccountView(BaseModel):
    username: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    status: str
    support: bool
    last_login_at: str | None
    password_expires_at: str | None
    memberships: list[MembershipView]


class ActionBody(_Body):
    model_config = ConfigDict(extra="forbid", openapi_extra={"required": False})

    organization: str | None = Field(default=None, min_length=1, max_length=100)
    comment: str | None = Field(default=None, description="at most the portal's comment length (R25)")


class PermissionsBody(_Body):
    organization: str | None = Field(default=None, min_length=1, max_length=100)
    permissions: list[str] = Field(max_length=100)
    comment: str | None = None


class ProfileBody(_Body):
    organization: str | None = Field(default=None, min_length=1, max_length=100)
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    comment: str | None = None


class CommentView(BaseModel):
    action: str
    actor: str
    organization: str | None
    date: str
    text: str


class ActivationCodeBody(_Body):
    username: Name


class SubordinateBody(NewPerson, ContractRegistrationFields):
    permissions: list[str] = Field(default_factory=list, max_length=100)
    comment: str | None = None


class ActivationCodeQueued(BaseModel):
    username: str
    organization: str
    letter: Literal["queued"]


class LinkBody(_Body):
    username: Name
    comment: str | None = None


class AccountPage(BaseModel):
    accounts: list[AccountView]
    next: str | None = Field(description="pass as ?after= for the next page; null on the last page")


class AuditView(BaseModel):
    id: int
    occurred_at: str
    actor: str | None
    client: str | None
    action: str
    target: str | None
    organization: str | None
    outcome: str
    reasons: list[str]
    detail: dict
    comment: str | None


class AuditPage(BaseModel):
    records: list[AuditView]
    next: int | None = Field(description="pass as ?before= for older records")


class NotificationView(BaseModel):
    channel: Literal["email", "letter"]
    to: str
    template: str
    created_at: str
    payload: dict
    status: str


class OutboxPage(BaseModel):
    notifications: list[NotificationView]


# --- Passwords: change, recovery (R17-R20) ----------------------------------------------------


class PasswordChangeBody(_Body):
    current_password: str = Field(min_length=1, max_length=256,
                                  description="proves who is asking; a wrong one counts as a failed sign-in (R19)")
    new_password: Secret


class RecoveryBody(_Body):
    username: Name
    answers: list[Line] = Field(
        min_length=1, max_length=5,
                               description="the security answers in the order they were chosen at registration")


class RecoveryConfirmBody(_Body):
    username: Name
    code: Code
    new_password: Secret


class RecoveryAccepted(BaseModel):
    status: Literal["accepted"]
    detail: str


class PasswordSet(BaseModel):
    username: str
    status: str
    password_expires_at: str | None


# --- Jobs and time ----------------------------------------------------------------------------

class SweepCounts(BaseModel):
    """What one sweep of one portal did (R22, R23); a second run on the same day answers all zeros."""

    model_config = ConfigDict(extra="forbid")
    warned: int
    locked: int
    disabled: int
    deleted: int


class ClockNow(BaseModel):
    now: str


# --- Access requests (scope `manage`) ---------------------------------------------------------

class AccessRequestPath(OrgPath):
    request_id: int = Field(ge=1, le=2**62, description="the id answered when the request was made")


class AccessRequestBody(_Body):
    permission: str = Field(min_length=1, max_length=100, description="the function asked for (a catalog entry)")
    note: str | None = Field(default=None, max_length=500, description="why, for whoever decides")


class AccessDecisionBody(_Body):
    model_config = ConfigDict(extra="forbid", openapi_extra={"required": False})

    comment: str | None = Field(default=None, description="at most the portal's comment length (R25)")


class AccessRequestCreated(BaseModel):
    id: int
    status: Literal["open"]


class AccessRequestDeclined(BaseModel):
    id: int
    status: Literal["declined"]


class AccessRequestView(BaseModel):
    id: int
    username: str = Field(description="who asked")
    organization: str
    permission: str
    note: str | None
    status: Literal["open", "approved", "declined", "expired"]
    created_at: str
    expires_at: str


class AccessRequestPage(BaseModel):
    requests: list[AccessRequestView] = Field(description="the open requests the session's actor may decide, "
                                                          "oldest first")
