"""The unit of work: one change, one transaction, owned by the domain.

`unit_of_work` opens the transaction and yields the `Context` every domain function takes (session,
portal profile, policy, notifier, the time of the change, the calling client). `run` does that for
`work(ctx)`; when the work is refused with one of the given exceptions, its transaction has rolled
back (nothing half-written is left), and the refusal is recorded once, in a transaction of its own
(R19: a wrong password still counts; R27: a refused change is still audited), then raised again.
The HTTP layer only parses requests, calls `run` and renders what it returns.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from service.clock import Clock
from service.config import Config, PortalProfile
from service.domain import passwords
from service.domain.decisions import Decider, profile_of
from service.domain.notify import Notifier
from service.policy import Policy
from service.storage.database import Database, busy

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    session: Session
    profile: PortalProfile
    portal: str
    policy: Policy
    notifier: Notifier
    now: datetime
    client: str | None

    def decider(self) -> Decider:
        """The Decider of this unit of work: the same facts and policy /v1/authorize decides on, read in its
        transaction."""
        return Decider(self.session, self.profile, self.policy, self.portal, self.now)


class Services(Protocol):
    """The injected collaborators of the app (service/app.py `Services`)."""

    config: Config
    database: Database
    policy: Policy
    clock: Clock
    notifier: Notifier


@contextmanager
def unit_of_work(services: Services, portal: str, client: str | None) -> Iterator[Context]:
    """One transaction for one portal (404 for an unknown portal): committed when the block ends, else none."""
    profile = profile_of(services.config, portal)
    with services.database.transaction() as session:
        yield Context(session, profile, portal, services.policy, services.notifier, services.clock.now(), client)


def run(services: Services, portal: str, client: str | None, work: Callable[[Context], T], *,
        refused: tuple[type[Exception], ...] = (),
        record_refusal: Callable[[Context, Any], None] | None = None,
        ahead: Callable[[Context], None] | None = None) -> T:
    """`work(ctx)` in one transaction; a refusal rolls it back and is recorded in its own transaction, once.

    `ahead(ctx)`, when given, runs first on a read-only session, outside any write transaction: it does
    the change's argon2 work (service.domain.passwords) so that the write lock is held for milliseconds,
    not for the hashing. A refusal's record is retried while the database is busy: a wrong password is
    counted (R19) before its answer is given, never dropped because writers were queueing.
    """
    with passwords.worked_ahead():
        if ahead is not None:
            profile = profile_of(services.config, portal)
            with services.database.reads() as session:
                ahead(Context(session, profile, portal, services.policy, services.notifier, services.clock.now(),
                              client))
        try:
            with unit_of_work(services, portal, client) as ctx:
                return work(ctx)
        except refused as refusal:
            if record_refusal is not None:
                _record(services, portal, client, record_refusal, refusal)
            raise


REFUSAL_ATTEMPTS = 3


def _record(services: Services, portal: str, client: str | None, record_refusal, refusal) -> None:
    for attempt in range(1, REFUSAL_ATTEMPTS + 1):
        try:
            with unit_of_work(services, portal, client) as ctx:
                record_refusal(ctx, refusal)
            return
        except Exception as exc:
            if attempt == REFUSAL_ATTEMPTS or not busy(exc):
                raise
