"""Secrets every replica over one database shares, made once (the first replica to need one creates it)."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.storage.database import Database
from service.storage.models import ServerSecret


def shared_secret(database: Database, name: str, now: datetime) -> bytes:
    """The secret called `name`; created at random if there is none yet. Two replicas creating it at once
    both end up with the one that was stored first."""
    with database.sessions() as session:
        value = session.scalar(select(ServerSecret.value).where(ServerSecret.name == name))
    if value is None:
        try:
            with database.transaction() as session:
                session.add(ServerSecret(name=name, value=secrets.token_hex(32), created_at=now))
        except IntegrityError:
            pass  # another replica stored it first: read theirs
        with database.sessions() as session:
            value = session.scalar(select(ServerSecret.value).where(ServerSecret.name == name))
    return value.encode()
