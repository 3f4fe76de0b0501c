"""What the service answers, as frozen dataclasses read strictly from its JSON.

Each class names the `/openapi.json` schemas it is written against (`SCHEMA`); the repository's test
`tests/test_client_contract.py` fails when a schema's properties and a class's fields part ways, and
when the document itself changes from the snapshot the clients are built from (`clients/openapi.json`).
A property the class does not read is listed in `IGNORED` with the reason, so nothing is dropped silently;
a field of the client's own (not in the document) is listed in `LOCAL`.

Every class reads its JSON the same way, from its fields' types (`_Model.from_json`): `str`, `int`, `bool`;
`X | None`, which may be null or absent; a tuple or frozenset of items, from a list; another model, from an
object. Reading is strict: a field or an item of the wrong type is an `UnexpectedResponse`, which
`Client.authorize` turns into a denial. Properties added to the document later are ignored (an API minor
version adds).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from types import UnionType
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from portal_authz_client.errors import UnexpectedResponse

M = TypeVar("M", bound="_Model")


def answered() -> Any:
    """A field the service always answers: never read as null; None only in the client's own denial."""
    return field(default=None, metadata={"answered": True})


def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False,
         where: str = "") -> Any:
    value = data.get(name) if isinstance(data, Mapping) else None
    if value is None and optional:
        return None
    if not _is(value, kind):
        raise UnexpectedResponse(f"{where or 'answer'}: `{name}` is missing or not {_name(kind)}")
    return value


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not (isinstance(value, bool) and kind is int)  # JSON true is not a number


def _name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", list: "a list", dict: "an object",
             Mapping: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


@dataclass(frozen=True)
class _Model:
    """What every model shares: the schemas it is written against, and reading itself from its fields' types."""

    SCHEMA: ClassVar[tuple[str, ...]] = ()
    IGNORED: ClassVar[dict[str, str]] = {}  # properties of its schemas it does not read, with the reason
    LOCAL: ClassVar[tuple[str, ...]] = ()  # fields of the client's own, never read from the answer

    @classmethod
    def from_json(cls: type[M], data: Any, where: str = "") -> M:
        where = where or cls.__name__
        return cls(**{name: read(data, where) for name, read in _readers(cls)})


Reader = Callable[[Any, str], Any]  # (the answer's object, where it stands) -> one field's value


@cache
def _readers(model: type[_Model]) -> tuple[tuple[str, Reader], ...]:
    """How `from_json` reads each field of a model, made once from the field's type."""
    hints = get_type_hints(model)
    return tuple((f.name, _reader(f.name, hints[f.name], f.metadata.get("answered", False))) for f in fields(model)
                 if f.name not in model.LOCAL)


def _reader(name: str, kind: Any, always: bool) -> Reader:
    """Reads the property `name` as the field's type `kind` says (`always`: an `answered()` field)."""
    optional = False
    if get_origin(kind) in (Union, UnionType) and type(None) in get_args(kind):
        (kind,) = (k for k in get_args(kind) if k is not type(None))
        optional = not always
    collection = get_origin(kind)
    if collection in (tuple, frozenset):  # tuple[X, ...] or frozenset[X]: a JSON list of X
        item = get_args(kind)[0]
        model_items = isinstance(item, type) and issubclass(item, _Model)
        item_kind = get_origin(item) or item  # Mapping[str, str]: an object

        def read_list(data: Any, where: str) -> Any:
            values = _get(data, name, list, optional=optional, where=where)
            if values is None:
                return None
            if model_items:
                return collection(item.from_json(v, f"{where}.{name}[{i}]") for i, v in enumerate(values))
            if not all(_is(v, item_kind) for v in values):
                raise UnexpectedResponse(f"{where}: `{name}` holds an item that is not {_name(item_kind)}")
            return collection(values)
        return read_list
    if isinstance(kind, type) and issubclass(kind, _Model):
        def read_model(data: Any, where: str) -> Any:
            value = data.get(name) if isinstance(data, Mapping) else None
            return None if value is None and optional else kind.from_json(value, f"{where}.{name}")
        return read_model
    return lambda data, where: _get(data, name, kind, optional=optional, where=where)


@dataclass(frozen=True)
class Reason(_Model):
    """Why a decision was denied: `code` is stable (shared/api-v1.md's list, or one of this client's:
    `unavailable`, `unexpected_response`, `incompatible_service`, or the problem code the service answered)."""

    SCHEMA = ("Reason",)

    code: str
    message: str


@dataclass(frozen=True)
class CheckError(_Model):
    """One check of a batch that named something unknown or impossible: its problem, answered as a denial."""

    SCHEMA = ("CheckError",)

    status: int
    code: str
    message: str
    errors: tuple[Mapping[str, str], ...] | None = None


@dataclass(frozen=True)
class Decision(_Model):
    """One answer to "may this actor do that?". Its truth value is `allowed`, so `if decision:` is safe.

    `policy_version` is None when the service did not decide (the client denied for it: see `reasons`)."""

    SCHEMA = ("AuthorizeExplainedResponse", "BatchResult")  # /v1/authorize, a batch's item
    IGNORED = {"explanation": "answered only to `explain: true`, which this client never sends",
               "remedies": "answered only to `remedies: true`, which this client never sends"}

    allowed: bool
    reasons: tuple[Reason, ...] = ()
    policy_version: str | None = answered()
    error: CheckError | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def decided(self) -> bool:
        """True when the service decided; False when the client denied because it could not ask."""
        return self.policy_version is not None

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Decision:
        decision = super().from_json(data, where)
        if not decision.allowed and not decision.reasons:
            raise UnexpectedResponse(f"{where or cls.__name__}: a denial without reasons")
        return decision

    @classmethod
    def denied(cls, code: str, message: str) -> Decision:
        """The client's own denial, when the service did not give a decision."""
        return cls(False, (Reason(code, message),), None)


@dataclass(frozen=True)
class Actions(_Model):
    """Every action an actor may take on a resource. Empty, with `error`, when the service did not answer."""

    SCHEMA = ("AuthorizedActionsResponse",)
    LOCAL = ("error",)  # the client's own: why it has no answer

    actions: frozenset[str]
    policy_version: str | None = answered()
    error: Reason | None = None

    def __contains__(self, action: object) -> bool:
        return action in self.actions


@dataclass(frozen=True)
class Membership(_Model):
    SCHEMA = ("MembershipView",)

    organization: str
    role: str
    status: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class Account(_Model):
    """An account as the service shows it to the caller (only the memberships the actor may see)."""

    SCHEMA = ("AccountView",)

    username: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    status: str
    support: bool
    last_login_at: str | None
    password_expires_at: str | None
    memberships: tuple[Membership, ...] = ()


@dataclass(frozen=True)
class AccountPage(_Model):
    SCHEMA = ("AccountPage",)

    accounts: tuple[Account, ...]
    next: str | None


@dataclass(frozen=True)
class SignedIn(_Model):
    """A person's session: `token` goes in X-Session-Token (the client's `session_token=` arguments)."""

    SCHEMA = ("SessionView",)

    token: str
    expires_at: str
    password_expires_at: str | None

    def __repr__(self) -> str:  # a token in a log is a session anyone can use
        return f"SignedIn(token='***', expires_at={self.expires_at!r})"


MODELS = (Reason, CheckError, Decision, Actions, Membership, Account, AccountPage, SignedIn)
