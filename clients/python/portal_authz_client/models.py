"""What the service answers, as frozen dataclasses read strictly from its JSON.

Each class names the `/openapi.json` schemas it is written against (`SCHEMA`); the repository's test
`tests/test_client_contract.py` fails when a schema's properties and a class's fields part ways, and
when the document itself changes from the snapshot the clients are built from (`clients/openapi.json`).
A property the class does not read is listed in `IGNORED` with the reason, so nothing is dropped silently;
a field of the client's own (not in the document) is listed in `LOCAL`.

Reading is strict: a field of the wrong type is an `UnexpectedResponse`, which `Client.authorize`
turns into a denial. Properties added to the document later are ignored (an API minor version adds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from portal_authz_client.errors import UnexpectedResponse


def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False,
         where: str = "") -> Any:
    value = data.get(name) if isinstance(data, Mapping) else None
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind is int:  # JSON true is not a number
        value = None
    if not isinstance(value, kind):
        raise UnexpectedResponse(f"{where or 'answer'}: `{name}` is missing or not {_name(kind)}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


@dataclass(frozen=True)
class Reason:
    """Why a decision was denied: `code` is stable (shared/api-v1.md's list, or one of this client's:
    `unavailable`, `unexpected_response`, `incompatible_service`, or the problem code the service answered)."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("Reason",)
    IGNORED: ClassVar[dict[str, str]] = {}

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Any, where: str = "reason") -> Reason:
        return cls(_get(data, "code", str, where=where), _get(data, "message", str, where=where))


@dataclass(frozen=True)
class CheckError:
    """One check of a batch that named something unknown or impossible: its problem, answered as a denial."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("CheckError",)
    IGNORED: ClassVar[dict[str, str]] = {}

    status: int
    code: str
    message: str
    errors: tuple[Mapping[str, str], ...] | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = "error") -> CheckError:
        errors = _get(data, "errors", list, optional=True, where=where)
        return cls(_get(data, "status", int, where=where), _get(data, "code", str, where=where),
                   _get(data, "message", str, where=where), tuple(errors) if errors is not None else None)


@dataclass(frozen=True)
class Decision:
    """One answer to "may this actor do that?". Its truth value is `allowed`, so `if decision:` is safe.

    `policy_version` is None when the service did not decide (the client denied for it: see `reasons`)."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("AuthorizeExplainedResponse", "BatchResult")  # /v1/authorize, a batch's item
    IGNORED: ClassVar[dict[str, str]] = {"explanation": "answered only to `explain: true`, which this client never sends",
                                         "remedies": "answered only to `remedies: true`, which this client never sends"}

    allowed: bool
    reasons: tuple[Reason, ...] = ()
    policy_version: str | None = None
    error: CheckError | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def decided(self) -> bool:
        """True when the service decided; False when the client denied because it could not ask."""
        return self.policy_version is not None

    @classmethod
    def from_json(cls, data: Any, where: str = "decision") -> Decision:
        allowed = _get(data, "allowed", bool, where=where)
        reasons = tuple(Reason.from_json(r, f"{where}.reasons") for r in _get(data, "reasons", list, where=where))
        if not allowed and not reasons:
            raise UnexpectedResponse(f"{where}: a denial without reasons")
        error = data.get("error")
        return cls(allowed, reasons, _get(data, "policy_version", str, where=where),
                   CheckError.from_json(error, f"{where}.error") if error is not None else None)

    @classmethod
    def denied(cls, code: str, message: str) -> Decision:
        """The client's own denial, when the service did not give a decision."""
        return cls(False, (Reason(code, message),), None)


@dataclass(frozen=True)
class Actions:
    """Every action an actor may take on a resource. Empty, with `error`, when the service did not answer."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("AuthorizedActionsResponse",)
    IGNORED: ClassVar[dict[str, str]] = {}
    LOCAL: ClassVar[tuple[str, ...]] = ("error",)  # the client's own: why it has no answer

    actions: frozenset[str]
    policy_version: str | None = None
    error: Reason | None = None

    def __contains__(self, action: object) -> bool:
        return action in self.actions

    @classmethod
    def from_json(cls, data: Any) -> Actions:
        actions = _get(data, "actions", list, where="actions")
        if not all(isinstance(a, str) for a in actions):
            raise UnexpectedResponse("actions: not a list of strings")
        return cls(frozenset(actions), _get(data, "policy_version", str, where="actions"))


@dataclass(frozen=True)
class Membership:
    SCHEMA: ClassVar[tuple[str, ...]] = ("MembershipView",)
    IGNORED: ClassVar[dict[str, str]] = {}

    organization: str
    role: str
    status: str
    permissions: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Any) -> Membership:
        w = "membership"
        return cls(_get(data, "organization", str, where=w), _get(data, "role", str, where=w),
                   _get(data, "status", str, where=w), tuple(_get(data, "permissions", list, where=w)))


@dataclass(frozen=True)
class Account:
    """An account as the service shows it to the caller (only the memberships the actor may see)."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("AccountView",)
    IGNORED: ClassVar[dict[str, str]] = {}

    username: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    status: str
    support: bool
    last_login_at: str | None
    password_expires_at: str | None
    memberships: tuple[Membership, ...] = field(default=())

    @classmethod
    def from_json(cls, data: Any) -> Account:
        w = "account"
        return cls(
            _get(data, "username", str, where=w), _get(data, "first_name", str, where=w),
            _get(data, "last_name", str, where=w), _get(data, "email", str, where=w),
            _get(data, "phone", str, optional=True, where=w), _get(data, "status", str, where=w),
            _get(data, "support", bool, where=w), _get(data, "last_login_at", str, optional=True, where=w),
            _get(data, "password_expires_at", str, optional=True, where=w),
            tuple(Membership.from_json(m) for m in _get(data, "memberships", list, where=w)))


@dataclass(frozen=True)
class AccountPage:
    SCHEMA: ClassVar[tuple[str, ...]] = ("AccountPage",)
    IGNORED: ClassVar[dict[str, str]] = {}

    accounts: tuple[Account, ...]
    next: str | None

    @classmethod
    def from_json(cls, data: Any) -> AccountPage:
        return cls(tuple(Account.from_json(a) for a in _get(data, "accounts", list, where="page")),
                   _get(data, "next", str, optional=True, where="page"))


@dataclass(frozen=True)
class SignedIn:
    """A person's session: `token` goes in X-Session-Token (the client's `session_token=` arguments)."""

    SCHEMA: ClassVar[tuple[str, ...]] = ("SessionView",)
    IGNORED: ClassVar[dict[str, str]] = {}

    token: str
    expires_at: str
    password_expires_at: str | None

    def __repr__(self) -> str:  # a token in a log is a session anyone can use
        return f"SignedIn(token='***', expires_at={self.expires_at!r})"

    @classmethod
    def from_json(cls, data: Any) -> SignedIn:
        w = "session"
        return cls(_get(data, "token", str, where=w), _get(data, "expires_at", str, where=w),
                   _get(data, "password_expires_at", str, optional=True, where=w))


MODELS = (Reason, CheckError, Decision, Actions, Membership, Account, AccountPage, SignedIn)
