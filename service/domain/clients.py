"""Client keys of calling services.

A key is `pak_<key id>_<secret>`: 256 bits from `secrets`. Only a SHA-256
digest of the secret is stored. Passwords and other human-chosen or
human-typed secrets are hashed with argon2; a 256-bit random key cannot be
guessed, so a slow hash would add ~40 ms to every request and no security.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.storage.models import ClientKey

SCOPES = ("authorize", "manage", "enroll")
PREFIX = "pak_"


class UnknownScope(ValueError):
    pass


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UnknownScope(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def create_client(session: Session, name: str, scopes: tuple[str, ...], now: datetime) -> str:
    """Store a new client and return its key, which is shown only this once."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(ClientKey(key_id=key_id, name=name, secret_digest=_digest(secret),
                          scopes=",".join(scopes), created_at=now))
    return f"{PREFIX}{key_id}_{secret}"


@dataclass(frozen=True)
class Client:
    name: str
    scopes: str  # comma-separated


@cache
def _key_statement():
    """Built once: every request authenticates, and building the statement cost more than running it."""
    return select(ClientKey.name, ClientKey.scopes, ClientKey.secret_digest).where(
        ClientKey.key_id == bindparam("key_id"), ClientKey.revoked_at.is_(None))


def authenticate(session: Session, presented: str) -> Client | None:
    """The client a key belongs to, or None; compares digests in constant time."""
    if not presented.startswith(PREFIX):
        return None
    key_id, _, secret = presented[len(PREFIX):].partition("_")
    if not key_id or not secret:
        return None
    row = session.connection().execute(_key_statement(), {"key_id": key_id}).first()
    expected = row.secret_digest if row else _digest("")
    if hmac.compare_digest(expected, _digest(secret)) and row is not None:
        return Client(row.name, row.scopes)
    return None
