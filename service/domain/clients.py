"""Client keys of calling services: add, list, revoke, rotate, expire, and the check on every request.

A key is `pak_<key id>_<secret>`: 256 bits from `secrets`. Only a SHA-256
digest of the secret is stored. Passwords and other human-chosen or
human-typed secrets are hashed with argon2; a 256-bit random key cannot be
guessed, so a slow hash would add tens of milliseconds to every request and no security
(bench/README.md).

A client is a name; it may hold several keys at once. `rotate` adds a key with
the same name and scopes and gives the old ones an expiry (the grace period,
default none: they stop at once). `revoke` stops every key of the name (or one
key id) at once. A key's state is `revoked` (revoked_at set), `expired`
(expires_at reached by the service clock) or `active`.

Key operations are audited (R27) as service-wide records: portal `*`
(SERVICE_WIDE), actor the operating-system user who ran the command, target the
client's name, action `client_key_<operation>`. `/metrics` counts them from
those records (service.observe.metrics), so a command run on any host counts.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.domain import audit
from service.storage import facts as stored
from service.storage.database import retry_once_if_dead
from service.storage.models import ClientKey

SCOPES = ("authorize", "manage", "enroll")
PREFIX = "pak_"
SERVICE_WIDE = "*"  # the audit portal of operations that belong to no portal (client keys)
LAST_USED_EVERY = timedelta(minutes=1)
OPERATIONS = ("add", "revoke", "rotate")  # audited as client_key_<operation>
log = logging.getLogger(__name__)


class UnknownScope(ValueError):
    pass


class BadName(ValueError):
    pass


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")


def check_name(name: str) -> str:
    """A client's name: 1-100 letters, digits and . _ : @ - (it is logged with every request and audited)."""
    if not NAME.fullmatch(name):
        raise BadName(f"client names are 1-100 letters, digits and . _ : @ -, starting with a letter or digit; "
                      f"got {name!r}")
    return name


class NoSuchClient(LookupError):
    pass


class ClientExists(ValueError):
    pass


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UnknownScope(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; got {text!r}")
    return scopes


_SHORT = re.compile(r"^(\d+)([smhdw])$")
_ISO = re.compile(r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
                  r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `24h`, `7d`, `2w`, `0` or an ISO 8601 duration (`PT1H`, `P30D`; no months)."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    try:
        if match := _SHORT.match(text):
            value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        elif match := _ISO.match(text):
            value = timedelta(**{k: int(v) for k, v in match.groupdict().items() if v})
        else:
            raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 15m, 24h, 7d, 2w or ISO 8601 such as PT1H")
    except OverflowError:
        value = MAX_DURATION + timedelta(days=1)
    if value > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days (10 years)")
    return value


# The longest expiry, grace or clock step: ten years, far beyond any key's useful life, far below datetime's end.
MAX_DURATION = timedelta(days=3650)


def create_client(session: Session, name: str, scopes: tuple[str, ...], now: datetime,
                  expires_at: datetime | None = None) -> str:
    """Store a new key and return it, shown only this once (no checks, no audit: see add_client)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(ClientKey(key_id=key_id, name=name, secret_digest=_digest(secret), scopes=",".join(scopes),
                          created_at=now, expires_at=expires_at))
    return f"{PREFIX}{key_id}_{secret}"


# ---- the operator's operations (the CLI's `clients ...`)


@dataclass(frozen=True)
class KeyInfo:
    """What `clients list` shows of a key: never its secret or digest."""

    name: str
    key_id: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str  # "active" | "expired" | "revoked"

    def as_json(self) -> dict:
        def iso(moment):
            return moment.isoformat(timespec="seconds") if moment else None

        return {"name": self.name, "key_id": self.key_id, "scopes": list(self.scopes),
                "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at), "state": self.state}


def state_of(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def _info(row: ClientKey, now: datetime) -> KeyInfo:
    return KeyInfo(row.name, row.key_id, tuple(row.scopes.split(",")), row.created_at, row.last_used_at,
                   row.expires_at, row.revoked_at, state_of(row.revoked_at, row.expires_at, now))


def list_keys(session: Session, now: datetime) -> list[KeyInfo]:
    """Every key, live or not, by name then age (oldest first)."""
    rows = session.scalars(select(ClientKey).order_by(ClientKey.name, ClientKey.created_at, ClientKey.id))
    return [_info(row, now) for row in rows]


def _live(session: Session, name: str, now: datetime) -> list[ClientKey]:
    """The name's keys that still work, locked until the transaction ends (oldest first)."""
    return list(session.scalars(
        select(ClientKey).where(ClientKey.name == name, ClientKey.revoked_at.is_(None),
                                or_(ClientKey.expires_at.is_(None), ClientKey.expires_at > now))
        .order_by(ClientKey.created_at, ClientKey.id).with_for_update()))


def _audit(session: Session, operation: str, name: str, now: datetime, actor: str, detail: dict) -> None:
    audit.record(session, portal=SERVICE_WIDE, now=now, action=f"client_key_{operation}", outcome="done",
                 actor=actor, target=name, detail={"via": "cli", **detail})


def add_client(session: Session, name: str, scopes: tuple[str, ...], now: datetime, *, actor: str,
               expires_in: timedelta | None = None) -> str:
    """A new client's key (printed once). A name that still has a working key is refused: rotate it instead."""
    check_name(name)
    if _live(session, name, now):
        raise ClientExists(f"client {name!r} already has a working key; use `clients rotate {name}` for a new one")
    expires_at = now + expires_in if expires_in else None
    key = create_client(session, name, scopes, now, expires_at)
    _audit(session, "add", name, now, actor, {"key_id": key.split("_")[1], "scopes": list(scopes),
                                              "expires_at": expires_at.isoformat() if expires_at else None})
    return key


def revoke(session: Session, name: str, now: datetime, *, actor: str, key_id: str | None = None) -> list[str]:
    """Stop every key of `name` (or only `key_id`) now; returns the key ids revoked (empty if all were already).

    NoSuchClient when no key has that name (or that id under that name).
    """
    query = select(ClientKey).where(ClientKey.name == name)
    if key_id is not None:
        query = query.where(ClientKey.key_id == key_id)
    rows = list(session.scalars(query.order_by(ClientKey.id).with_for_update()))
    if not rows:
        raise NoSuchClient(f"no client {name!r}" + (f" with key id {key_id!r}" if key_id else ""))
    revoked = [row.key_id for row in rows if row.revoked_at is None]
    for row in rows:
        if row.revoked_at is None:
            row.revoked_at = now
    _audit(session, "revoke", name, now, actor, {"key_ids": revoked, "already_revoked": len(rows) - len(revoked)})
    return revoked


@dataclass(frozen=True)
class Rotated:
    key: str                    # the new key, shown once
    old_key_ids: list[str]
    old_until: datetime         # when the old keys stop (now, with no grace)
    expires_at: datetime | None = None  # the new key's expiry


def rotate(session: Session, name: str, now: datetime, *, actor: str, grace: timedelta = timedelta(0),
           expires_in: timedelta | None = None) -> Rotated:
    """A new key with the name and scopes of its newest working key; the old keys work `grace` longer.

    An old key that would expire sooner keeps its earlier expiry. The new key lives as long as the
    newest working key was given to live (`add --expires 90d` rotates into another 90 days) unless
    `expires_in` says otherwise: a rotation must not turn a key with a fixed life into one without.
    NoSuchClient when the name has no working key (a revoked or expired client is added again, not rotated).
    """
    live = _live(session, name, now)
    if not live:
        raise NoSuchClient(f"client {name!r} has no working key to rotate")
    newest = live[-1]
    scopes = tuple(newest.scopes.split(","))
    if expires_in is None and newest.expires_at is not None:
        expires_in = newest.expires_at - newest.created_at
    until = now + grace
    for row in live:
        if grace <= timedelta(0):
            row.revoked_at = now
        elif row.expires_at is None or row.expires_at > until:
            row.expires_at = until
    expires_at = now + expires_in if expires_in else None
    key = create_client(session, name, scopes, now, expires_at)
    old = [row.key_id for row in live]
    _audit(session, "rotate", name, now, actor, {
        "key_id": key.split("_")[1], "old_key_ids": old, "grace_seconds": int(grace.total_seconds()),
        "old_until": until.isoformat(), "scopes": list(scopes),
        "expires_at": expires_at.isoformat() if expires_at else None})
    return Rotated(key, old, until, expires_at)


# ---- the check on every request


@dataclass(frozen=True)
class Client:
    name: str
    scopes: str  # comma-separated
    key_id: str = ""
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    client: Client | None
    refusal: str | None  # None | "malformed" | "unknown" | "revoked" | "expired"


def check(session: Session | Connection, presented: str, now: datetime, read=None) -> Verdict:
    """The client a key belongs to, or why it is refused. One prepared statement, read fresh every time.

    Revocation and expiry take effect on the very next request on every worker of every server
    that shares the database, because nothing about a key is kept in a process: the row is read
    on each request and its expiry compared with the service clock's `now`.

    A cache in front of this statement (the speed work) must preserve exactly that:
    - a revoke or rotate made by any process is seen by the next request everywhere: a cached
      answer must be revalidated against something every revoke changes (e.g. a generation
      counter or the row's revoked_at read in the request's one facts statement), never trusted
      for a time-to-live;
    - expiry is compared with the clock at each request, not when the entry was cached (a
      rotated key's grace ends on time, also under the settable test clock);
    - a wrong secret never matches (constant-time digest comparison) and is never cached as good;
    - last_used_at keeps being written at most once a minute per key (note_use reads it from here).

    `read(key_id)`, when given, reads the key's row instead of the key statement: the decision
    endpoint reads it in the same statement as the decision's facts (one round trip), still fresh on
    every request. The row needs name, scopes, secret_digest, revoked_at, expires_at, last_used_at.
    """
    if not presented.startswith(PREFIX):
        return Verdict(None, "malformed")
    key_id, _, secret = presented[len(PREFIX):].partition("_")
    if not key_id or not secret:
        return Verdict(None, "malformed")
    # The first statement of every request that carries a key: a pooled connection found dead is retried once.
    if read is None:  # the facts statement's key branch alone: one statement text for the key, run on the driver
        def read(key_id: str):
            return stored.load_facts(session, "", set(), set(), key_id=key_id).client_key
    row = retry_once_if_dead(session, lambda: read(key_id))
    expected = row.secret_digest if row else _digest("")
    if not hmac.compare_digest(expected, _digest(secret)) or row is None:
        return Verdict(None, "unknown")
    state = state_of(row.revoked_at, row.expires_at, now)
    if state != "active":
        return Verdict(None, state)
    return Verdict(Client(row.name, row.scopes, key_id, row.last_used_at), None)


def authenticate(session: Session, presented: str, now: datetime) -> Client | None:
    """The client a working key belongs to, or None (unknown, revoked or expired alike)."""
    return check(session, presented, now).client


def use_is_due(client: Client, now: datetime) -> bool:
    """Whether this request should record the key's use: at most once a minute per key."""
    return client.last_used_at is None or now - client.last_used_at >= LAST_USED_EVERY


def note_use(database, key_id: str, now: datetime) -> bool:
    """Record a key's use in its own short transaction; True if this call wrote it.

    Called only when `use_is_due` (so at most about once a minute per key, not once per
    request). The WHERE makes concurrent callers on other workers a no-op once one of them
    wrote. A failure is logged, never the request's failure.
    """
    try:
        with database.engine.begin() as conn:
            changed = conn.execute(
                update(ClientKey).where(ClientKey.key_id == key_id,
                                        or_(ClientKey.last_used_at.is_(None),
                                            ClientKey.last_used_at <= now - LAST_USED_EVERY))
                .values(last_used_at=now))
            return changed.rowcount == 1
    except SQLAlchemyError:
        log.warning("could not record the use of client key %s", key_id, exc_info=True)
        return False
