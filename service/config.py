"""Loads and validates config.yaml.

An invalid file must stop the service at start with a message naming the key,
the value found and what was expected, so the models below forbid unknown keys
and every error is rewritten into that form.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.kernel.catalog import ORGANIZATION_ACTIONS

DATABASE_URL_ENV = "PORTAL_AUTHZ_DATABASE_URL"
CONFIG_ENV = "PORTAL_AUTHZ_CONFIG"
# The settings that hold secrets, and the environment variable that overrides each. Every one can also be
# read from a file named by the same variable with `_FILE` appended (a mounted secret), so that no secret
# needs to be written in config.yaml.
SECRET_SETTINGS = {
    ("database", "url"): DATABASE_URL_ENV,
    ("delivery", "smtp", "username"): "PORTAL_AUTHZ_SMTP_USERNAME",
    ("delivery", "smtp", "password"): "PORTAL_AUTHZ_SMTP_PASSWORD",
}
PERMISSION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Actions that organization resources already use; a catalog entry may not shadow them.
RESERVED_ORGANIZATION_ACTIONS = frozenset(ORGANIZATION_ACTIONS)


def _snake_case(name: str, what: str) -> None:
    """A permission's name and a portal's id are snake_case: the policy, the URLs and the metrics' labels carry them."""
    if not PERMISSION_NAME.match(name):
        raise ValueError(f"{what} {name!r} must be snake_case (a-z, 0-9, _)")


class ConfigError(Exception):
    """The configuration file cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleNames(_Strict):
    admin: str
    member: str


class PasswordRules(_Strict):
    """R17/R18: composition, history and expiry, per portal."""

    min_length: int = Field(ge=1, le=256)
    require_lowercase: bool
    require_uppercase: bool
    require_digit: bool
    special_characters: str = Field(description="at least one of these is required; empty: none required")
    max_repeated: int | None = Field(default=None, ge=1, description="longest run of one character, ignoring case")
    username_overlap: int | None = Field(default=None, ge=1, description="shortest run shared with the username that is refused")
    history: int = Field(default=1, ge=0, description="how many previous passwords may not be reused")
    expiry_days: int | None = Field(default=None, ge=1)


class Lockout(_Strict):
    """R19: failed sign-ins within a sliding window lock the account."""

    max_failures: int = Field(ge=1)
    window_minutes: int = Field(ge=1)


class Recovery(_Strict):
    """R20: security questions asked at recovery and the emailed code's life.

    Wrong answers are counted like failed sign-ins: `max_failures` within `window_minutes` (default: the
    profile's lockout numbers), after which even right answers send nothing until the window has passed
    or an admin acts (unlock, or sends recovery).
    """

    security_questions: int = Field(ge=0, le=5)
    code_minutes: int = Field(ge=1)
    max_failures: int | None = Field(default=None, ge=1, description="default: lockout.max_failures")
    window_minutes: int | None = Field(default=None, ge=1, description="default: lockout.window_minutes")


class Inactivity(_Strict):
    """R22/R23: days without activity before an account is locked, disabled or deleted."""

    lock_days: int | None = Field(default=None, ge=1)
    delete_days: int | None = Field(default=None, ge=1)
    disable_days: int | None = Field(default=None, ge=1)
    warning_days: int = Field(default=0, ge=0)


FRAME_SOURCE = re.compile(r"^('self'|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?)$")


class PortalConsole(_Strict):
    """The console of one portal (service/console): who may frame its pages."""

    frame_ancestors: tuple[str, ...] = Field(
        default=(), description="CSP frame-ancestors sources ('self' or https://host[:port]) allowed to embed the "
                                "console; empty: none may")

    @field_validator("frame_ancestors")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for source in value:
            if not FRAME_SOURCE.match(source):
                raise ValueError(f"frame ancestor {source!r} must be 'self' or an origin such as https://portal.example.org")
        return value


class PortalProfile(_Strict):
    """One portal's vocabulary, catalog and lifecycle numbers."""

    name: str
    roles: RoleNames
    organization_key: str
    registration: Literal["first_registrant_is_admin", "payer_verified_admin", "admin_created"]
    activation_code_days: int = Field(ge=1)
    business_types: list[str] | None = None
    permissions: dict[str, str] = Field(min_length=1, description="the catalog of grantable portal functions (R14)")
    delegate_permission: str | None = None
    password: PasswordRules
    lockout: Lockout
    recovery: Recovery
    inactivity: Inactivity
    links: bool = Field(default=False, description="R13: admins may link accounts of other organizations (masshealth)")
    admin_created_accounts: bool = Field(
        default=False, description="R13: admins create accounts for their staff (masshealth's subordinates)")
    comment_max_length: int = Field(default=200, ge=1)
    access_request_days: int = Field(default=14, ge=1, le=365,
                                     description="an open access request expires after this many days")
    session_minutes: int = Field(default=480, ge=1, le=24 * 60)
    console: PortalConsole = PortalConsole()

    @field_validator("permissions")
    @classmethod
    def _permission_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _snake_case(name, "permission name")
            if name in RESERVED_ORGANIZATION_ACTIONS:
                raise ValueError(f"permission name {name!r} is reserved for an organization action")
        return value

    @model_validator(mode="after")
    def _delegate_in_catalog(self) -> PortalProfile:
        if self.delegate_permission is not None and self.delegate_permission not in self.permissions:
            raise ValueError(
                f"delegate_permission {self.delegate_permission!r} is not in this portal's permissions"
            )
        return self

    @property
    def catalog(self) -> tuple[str, ...]:
        return tuple(self.permissions)

    @property
    def recovery_limit(self) -> tuple[int, int]:
        """(max wrong answers, window minutes) for self-service recovery: its own numbers, else the lockout's."""
        return (self.recovery.max_failures or self.lockout.max_failures,
                self.recovery.window_minutes or self.lockout.window_minutes)


class Database(_Strict):
    url: str | None = None


class Server(_Strict):
    """How `portal-authz serve` serves: the WSGI server, its processes and threads, the pid file."""

    engine: Literal["granian", "gunicorn"] = "granian"
    workers: int | None = Field(default=None, ge=1, le=64, description="processes; null sizes to the machine")
    threads: int | None = Field(default=None, ge=1, le=64,
                                description="Python threads per worker; gunicorn: 1 is a sync worker, more gthread")
    pid_file: Path | None = Field(default=None, description="relative to the config file; null: one per port")
    max_body_bytes: int = Field(default=65536, ge=1024)


class Testing(_Strict):
    clock: Literal["system", "settable"] = "system"
    # "cheap": argon2 at the cost the in-process test runs use, so features against a live QA server take
    # about as long as in-process. Weak hashes: allowed only on a QA server (with the settable clock).
    hashing: Literal["production", "cheap"] = "production"

    @model_validator(mode="after")
    def _cheap_only_on_a_qa_server(self) -> Testing:
        if self.hashing == "cheap" and self.clock != "settable":
            raise ValueError("hashing: cheap is allowed only together with clock: settable (a QA server, never "
                             "production)")
        return self


class Console(_Strict):
    """The console's browser session (service/console)."""

    secure_cookie: bool | None = Field(
        default=None, description="send the console's cookie over https only; null: on, except with testing.clock "
                                  "settable (a QA server on plain http)")


class Demo(_Strict):
    """The demo organization: never created unless asked for (`serve --demo`, or `enabled: true`)."""

    enabled: bool = False
    portal: str = "ahcccs"


class Smtp(_Strict):
    """Where the delivery worker hands emails over."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    from_address: str = "no-reply@portal-authz.local"
    timeout_seconds: float = Field(default=30.0, gt=0)


class Delivery(_Strict):
    """The outbox worker: retries with doubling backoff, leases on claimed rows, the letters folder."""

    smtp: Smtp = Smtp()
    max_attempts: int = Field(default=5, ge=1)
    backoff_seconds: int = Field(default=60, ge=0, description="doubles with each failed attempt")
    batch_size: int = Field(default=100, ge=1)
    lease_seconds: int = Field(default=300, ge=1)
    letters_dir: Path = Field(default=Path("letters"), description="relative to the config file")
    in_serve: bool = Field(default=False, description="`serve` also runs the delivery loop in a child process")
    interval_seconds: float = Field(default=10.0, gt=0, description="between batches of the loop in `serve`")
    by_caller: bool | None = Field(
        default=None,
        description="the calling service delivers notifications itself, so GET .../outbox shows their secrets "
                    "(activation codes, temporary passwords); false: it withholds them and `deliver` sends them. "
                    "null: true only with testing.clock settable (a test suite plays the caller) or `serve --demo`")

    @model_validator(mode="after")
    def _one_deliverer(self) -> Delivery:
        if self.by_caller and self.in_serve:
            raise ValueError("by_caller: true (the caller delivers) contradicts in_serve: true (serve delivers)")
        return self


class Logging(_Strict):
    """How the served process logs: JSON lines on stderr by default, one per request (see service/observe)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    access_log: bool = True


class DecisionLog(_Strict):
    """An optional JSON Lines record of the decision endpoints' answers, for "why was this denied?"."""

    mode: Literal["off", "sampled", "all"] = "off"
    sample_rate: float = Field(default=0.01, ge=0, le=1, description="the share of requests logged when sampled")
    path: Path = Field(default=Path("decisions.jsonl"), description="relative to the config file")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false


class AuthZen(_Strict):
    """OpenID AuthZEN: where callers reach this service, for the PDP identifiers and endpoint URLs."""

    base_url: str | None = Field(
        default=None, description=("e.g. https://pdp.example.org; null: the address `serve` binds "
                                   "(http://HOST:PORT), never a request's Host header"))

    page_token_key: str | None = Field(
        default=None, min_length=32, description=(
            "the key that signs search page tokens (at least 32 characters), the same on every replica; "
            "null: a random key made once and kept in the database, which every replica over it shares"))

    @field_validator("base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an absolute http(s) URL with no query or fragment")
        return value.rstrip("/")


# `portal-authz serve`'s default address (its --host and --port).
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def served_base_url(host: str, port: int) -> str:
    """The AuthZEN base URL of an unset `authzen.base_url`: the address `serve` binds, from configuration only."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Config(_Strict):
    database: Database = Database()
    authzen: AuthZen = AuthZen()
    delivery: Delivery = Delivery()
    logging: Logging = Logging()
    decision_log: DecisionLog = DecisionLog()
    server: Server = Server()
    testing: Testing = Testing()
    demo: Demo = Demo()
    console: Console = Console()
    portals: dict[str, PortalProfile] = Field(min_length=1)
    # Where the file was read from; relative paths (the SQLite default) hang off it.
    base_dir: Path = Path(".")
    # The file's name without its suffix ("config" for config.yaml): what sets one server's pid file apart.
    config_name: str = "config"
    # The Polar files and their decision tables; relative to the config file.
    policy_dir: Path = Path("policies")

    @field_validator("portals")
    @classmethod
    def _portal_ids(cls, value: dict[str, PortalProfile]) -> dict[str, PortalProfile]:
        for portal_id in value:
            _snake_case(portal_id, "portal id")
        return value

    @model_validator(mode="after")
    def _demo_portal_exists(self) -> Config:
        if self.demo.portal not in self.portals:  # checked even when off: `serve --demo` may ask for it
            raise ValueError(f"demo.portal {self.demo.portal!r} is not one of the portals {sorted(self.portals)}")
        return self

    @property
    def database_url(self) -> str:
        """The environment wins over the file; the default is a SQLite file beside the config."""
        url = os.environ.get(DATABASE_URL_ENV) or _from_file(DATABASE_URL_ENV, os.environ) or self.database.url
        if url:
            return url
        return f"sqlite:///{(self.base_dir / 'portal-authz.db').resolve()}"

    @property
    def outbox_shows_secrets(self) -> bool:
        """Whether GET .../outbox hands `enroll` keys the notifications' secrets: only where the caller delivers."""
        if self.delivery.by_caller is not None:
            return self.delivery.by_caller
        return self.testing.clock == "settable"

    @property
    def policy_path(self) -> Path:
        return (self.base_dir / self.policy_dir).resolve()

    @property
    def letters_path(self) -> Path:
        return (self.base_dir / self.delivery.letters_dir).resolve()

    @property
    def decision_log_path(self) -> Path:
        return (self.base_dir / self.decision_log.path).resolve()

    def portal(self, portal_id: str) -> PortalProfile | None:
        return self.portals.get(portal_id)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (value {shown}); check the spelling against the documented keys"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {message} (found {shown})"


def parse_config(data: object, base_dir: Path = Path("."), config_name: str = "config") -> Config:
    """Validate an already-parsed mapping; raises ConfigError with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: the top level must be a mapping of keys, found {type(data).__name__}")
    try:
        return Config.model_validate({**data, "base_dir": base_dir, "config_name": config_name})
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _from_file(variable: str, environ) -> str | None:
    """The secret in the file `$<variable>_FILE` names (one trailing newline dropped), or None when unset."""
    name = environ.get(variable + "_FILE")
    if not name:
        return None
    try:
        value = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{variable}_FILE: cannot read {name}: {reason}") from None
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise ConfigError(f"{variable}_FILE: {name} is empty")
    return value


def secrets_from_environment(data: dict, environ=os.environ) -> dict:
    """`data` with every secret setting that the environment gives (SECRET_SETTINGS) put in place.

    `VAR` or `VAR_FILE`, never both (which one would win is a guess an operator should not have to make).
    The values are never part of an error message."""
    for keys, variable in SECRET_SETTINGS.items():
        direct = environ.get(variable)
        if direct and environ.get(variable + "_FILE"):
            raise ConfigError(f"{variable} and {variable}_FILE are both set: set one")
        value = direct or _from_file(variable, environ)
        if value is None:
            continue
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                break  # the file's own shape error is reported by validation
            node = child
        else:
            node[keys[-1]] = value
    return data


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read config.yaml (or $PORTAL_AUTHZ_CONFIG) and validate it."""
    path = Path(path or os.environ.get(CONFIG_ENV) or "config.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    try:
        if isinstance(data, dict):
            data = secrets_from_environment(data)
        return parse_config(data, base_dir=path.resolve().parent, config_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
