"""The one clock. Injected into the app so tests and the BDD suite can move time.

The settable clock keeps its time in the database, not in the process, so
every gunicorn worker and every replica sees the same moment.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlalchemy import select

from service.storage.database import Database
from service.storage.models import TestingClock


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """An in-memory clock for unit tests: stands still until moved."""

    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


# The stored moment, built once: the clock is read two or three times in every request a QA server answers.
_FROZEN_AT = select(TestingClock.frozen_at).where(TestingClock.id == 1)


class SettableClock:
    """Real time until first set; from then on it stands still at the stored moment until moved again."""

    def __init__(self, database: Database):
        self._database = database

    def now(self) -> datetime:
        # One prebuilt statement on a read connection: no ORM session to build for a single value.
        with self._database.reading() as connection:
            frozen = connection.execute(_FROZEN_AT).scalar()
        return frozen or datetime.now(timezone.utc)

    def set(self, moment: datetime) -> None:
        with self._database.transaction() as session:
            row = session.get(TestingClock, 1, with_for_update=True)
            if row is None:
                session.add(TestingClock(id=1, frozen_at=moment))
            else:
                row.frozen_at = moment

    def advance(self, delta: timedelta) -> None:
        with self._database.transaction() as session:
            row = session.get(TestingClock, 1, with_for_update=True)
            if row is None:
                session.add(TestingClock(id=1, frozen_at=datetime.now(timezone.utc) + delta))
            else:
                row.frozen_at = row.frozen_at + delta
