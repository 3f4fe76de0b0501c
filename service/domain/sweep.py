"""The inactivity sweep (R22, R23): warn, lock, disable and delete idle accounts, set-based.

One run per portal applies that profile's `inactivity` block. Every step is one
SQL statement over the portal's accounts (UPDATE ... WHERE, INSERT ... SELECT,
DELETE ... WHERE id IN (SELECT ...)); no account is loaded into Python.

Days inactive
    The reference moment is `last_activity_at`, or `created_at` for an account
    that has never been active (signing in sets `last_activity_at`, so it resets
    the clock; so does an Account Manager's `enable`). Days inactive are counted
    in whole UTC calendar days: `today - date(reference)`, both dates in UTC.
    Calendar days, not `floor(now - reference)`, so that every run on the same
    UTC day sees the same number for every account: that is what makes a second
    run on the same day change nothing, whatever the hour.

Boundaries (the first day the action happens, T)
    - lock_days N (qm, R22 "more than 60 days"): locked when days inactive > N,
      i.e. on day T = N + 1 (61). Day 60: not yet locked.
    - delete_days N (qm, R22 "more than 120 days"): deleted on day T = N + 1 (121).
    - disable_days N (ahw, R23 "90 days of inactivity"): disabled when days
      inactive >= N, i.e. on day T = N (90). Day 89: still active.
    - warning_days W: one email on each of the W days before T, i.e. days
      T-W .. T-1 (qm lock: 56..60, days_left 5..1; qm delete: 116..120), to the
      accounts the action would hit. Template `inactivity_<action>_warning`,
      payload {username, first_name, action, days_left, happens_on}.
    A day on which the sweep does not run is a day without its warning; the
    first run over old data acts on accounts already past T without warnings.

Who is swept
    Every account of the portal, support staff included (an idle
    support account, which acts across every organization, is exactly what
    should not linger; an operator re-enables one with
    POST .../support-staff/{username}/enable). Never accounts awaiting
    activation, approval or verification (pending_activation, pending_approval,
    unverified): their one-time codes expire on their own rules (R10, R12).
    lock: active -> locked.  disable: active or locked -> disabled.
    delete: active, locked or disabled -> removed.
    Strongest first (delete, disable, lock), so an account changes at most once a run.

Deletion is a soft delete, kept for the audit trail: the account becomes
`removed` (it can no longer sign in: account_removed), every membership is
marked `removed`, its grants are deleted and its sessions ended -- exactly what
the admin `remove` action leaves behind when an account loses its last link.
Locking and disabling end the account's open sessions too.

Idempotency per day
    Status changes are idempotent by construction (the WHERE clause names the
    statuses an action starts from). Warnings are inserted into the outbox with
    INSERT ... SELECT ... WHERE NOT EXISTS (a notification in this portal to the
    same recipient, same template, created the same UTC day, whose payload names
    the same username). The lookup rides the existing (portal_id, recipient)
    index; the username is read from the JSON payload portably (json_extract on
    SQLite, ->> on PostgreSQL). No new table or column, so no migration.
    On PostgreSQL a run that queued >= 1000 warnings ends with ANALYZE notifications,
    so that a rerun minutes later (before autovacuum) still plans a hash anti-join.

Audit (R27): one `inactivity_<action>` record per changed account
(INSERT ... SELECT, actor none, client the caller), plus one `inactivity_sweep`
summary per portal when anything happened (nothing is written on a run that
changes nothing).

Access requests: an open request past its `expires_at` is closed as `expired`
by the same run (UPDATE ... WHERE), with one `access_request_expired` audit
record and one email to its requester each (INSERT ... SELECT), exactly as a request found expired when next
touched is (service/domain/access_requests.py), so an unattended request does
not stay open in the tables until someone looks. Counted in `expired`, which is
not one of the inactivity counts (`counts()`, `sweep_runs`, the API's answer).

Concurrency: on SQLite the transaction takes the write lock first (BEGIN
IMMEDIATE). On PostgreSQL each portal runs in one REPEATABLE READ transaction so
all statements see one snapshot (the audit rows name exactly the accounts the
UPDATE changes); a concurrent change to a swept row aborts it with a
serialization failure and the portal is swept again.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from time import perf_counter

from sqlalchemy import JSON, String, and_, case, delete, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import GenericFunction

from service.config import Config, PortalProfile
from service.domain import orphans
from service.domain.errors import NotFound
from service.kernel.catalog import Status, Role
from service.storage.models import (AccessRequest, Account, AuditRecord, Grant, Membership, Notification,
                                    Organization, SessionToken, SweepRun, UTCDateTime)

ACCOUNTS = Account.__table__
NOTIFICATIONS = Notification.__table__
AUDIT = AuditRecord.__table__
MEMBERSHIPS = Membership.__table__
GRANTS = Grant.__table__
SESSIONS = SessionToken.__table__
REQUESTS = AccessRequest.__table__
ORGANIZATIONS = Organization.__table__
RETRIES = 5
ANALYZE_AFTER = 1000  # warnings inserted in one run before PostgreSQL re-analyzes the outbox


class json_object(GenericFunction):
    """JSON object built in SQL from alternating key, value arguments (both backends)."""

    type = JSON()
    inherit_cache = True


@compiles(json_object)
def _json_object_default(element, compiler, **kw):
    return f"json_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "postgresql")
def _json_object_postgresql(element, compiler, **kw):
    return f"json_build_object({compiler.process(element.clauses, **kw)})"


@dataclass
class SweepResult:
    warned: int = 0
    locked: int = 0
    disabled: int = 0
    deleted: int = 0
    expired: int = 0     # access requests closed as expired (not an inactivity count)
    portals: dict[str, SweepResult] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """The inactivity counts, by name (every field but the per-portal parts and the expired requests)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("portals", "expired")}

    def add(self, portal: str, part: SweepResult) -> None:
        self.portals[portal] = part
        for name, count in part.counts().items():
            setattr(self, name, getattr(self, name) + count)
        self.expired += part.expired


@dataclass(frozen=True)
class Rule:
    action: str          # "delete" | "disable" | "lock"
    first_day: int       # T: the first day (days inactive) on which the action happens
    after_days: int      # the configured number, for the audit trail
    from_statuses: tuple[str, ...]
    to_status: str
    counter: str         # SweepResult field

    @property
    def template(self) -> str:
        return f"inactivity_{self.action}_warning"


def rules_for(profile: PortalProfile) -> list[Rule]:
    """The profile's actions, strongest first."""
    rules: list[Rule] = []
    rule = profile.inactivity
    if rule.delete_days is not None:
        rules.append(Rule("delete", rule.delete_days + 1, rule.delete_days, (Status.ACTIVE, Status.LOCKED, Status.DISABLED),
                          "removed", "deleted"))
    if rule.disable_days is not None:
        rules.append(Rule("disable", rule.disable_days, rule.disable_days, (Status.ACTIVE, Status.LOCKED),
                          "disabled", "disabled"))
    if rule.lock_days is not None:
        rules.append(Rule("lock", rule.lock_days + 1, rule.lock_days, (Status.ACTIVE,), "locked", "locked"))
    return rules


class _Days:
    """Calendar-day arithmetic for one run: `days inactive >= k` as a timestamp comparison."""

    def __init__(self, now: datetime):
        self.now = now
        self.today: date = now.astimezone(timezone.utc).date()

    def start_of(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=timezone.utc)

    def before(self, k: int) -> datetime:
        """days inactive >= k  <=>  reference < before(k) (the start of the UTC day k-1 days ago)."""
        return self.start_of(self.today - timedelta(days=k - 1))


def _reference():
    return func.coalesce(ACCOUNTS.c.last_activity_at, ACCOUNTS.c.created_at)


def _eligible(portal: str, statuses: tuple[str, ...]):
    return and_(ACCOUNTS.c.portal_id == portal, ACCOUNTS.c.status.in_(statuses))


def _json(value) -> object:
    return literal(value, JSON())


def _warn(conn, portal: str, rule: Rule, warning_days: int, days: _Days) -> int:
    """One email per account for each of the `warning_days` days before the action; none twice a day."""
    first = max(rule.first_day - warning_days, 0)
    last = rule.first_day - 1
    if warning_days <= 0 or last < first:
        return 0
    ref = _reference()
    # days_left = T - days inactive; days inactive == d  <=>  before(d + 1) <= ref < before(d)
    whens = [(ref >= days.before(d + 1), rule.first_day - d) for d in range(first, last + 1)]
    days_left = case(*whens, else_=0)
    happens_on = case(*[(cond, (days.today + timedelta(days=left)).isoformat()) for cond, left in whens],
                      else_="")
    day_start = days.start_of(days.today)
    already = exists().where(
        NOTIFICATIONS.c.portal_id == portal,
        NOTIFICATIONS.c.recipient == ACCOUNTS.c.email,
        NOTIFICATIONS.c.template == rule.template,
        NOTIFICATIONS.c.created_at >= day_start,
        NOTIFICATIONS.c.created_at < day_start + timedelta(days=1),
        NOTIFICATIONS.c.payload["username"].as_string() == ACCOUNTS.c.username,
    )
    payload = json_object(literal("username", String()), ACCOUNTS.c.username,
                          literal("first_name", String()), ACCOUNTS.c.first_name,
                          literal("action", String()), literal(rule.action, String()),
                          literal("days_left", String()), days_left,
                          literal("happens_on", String()), happens_on)
    chosen = select(
        literal(portal, String()), literal("email", String()), ACCOUNTS.c.email, literal(rule.template, String()),
        payload, literal(days.now, UTCDateTime()), literal("queued", String()),
    ).where(_eligible(portal, rule.from_statuses), ref < days.before(first), ref >= days.before(last + 1),
            ~already)
    statement = insert(NOTIFICATIONS).from_select(
        ["portal_id", "channel", "recipient", "template", "payload", "created_at", "status"], chosen)
    return conn.execute(statement).rowcount


def _act(conn, portal: str, rule: Rule, days: _Days, client: str | None, rule_name: str) -> int:
    """Apply one action to every account past its first day; audit each; end sessions; returns how many."""
    predicate = and_(_eligible(portal, rule.from_statuses), _reference() < days.before(rule.first_day))
    targets = select(ACCOUNTS.c.id).where(predicate)
    detail = {"rule": rule_name, "action": rule.action, "after_days": rule.after_days,
              "days_inactive_at_least": rule.first_day, "sweep_day": days.today.isoformat()}
    audit_rows = select(
        literal(portal, String()), literal(days.now, UTCDateTime()), literal(None, String()),
        literal(client, String()), literal(f"inactivity_{rule.action}", String()), ACCOUNTS.c.username,
        literal(None, String()), literal("done", String()), _json(["inactivity"]), _json(detail),
        literal(None, String()),
    ).where(predicate)
    conn.execute(insert(AUDIT).from_select(
        ["portal_id", "occurred_at", "actor", "client", "action", "target", "organization", "outcome", "reasons",
         "detail", "comment"], audit_rows))
    conn.execute(update(SESSIONS).where(SESSIONS.c.ended_at.is_(None), SESSIONS.c.account_id.in_(targets))
                 .values(ended_at=days.now))
    if rule.to_status == Status.REMOVED:
        links = select(MEMBERSHIPS.c.id).where(MEMBERSHIPS.c.account_id.in_(targets))
        conn.execute(delete(GRANTS).where(GRANTS.c.membership_id.in_(links)))
        conn.execute(update(MEMBERSHIPS).where(MEMBERSHIPS.c.account_id.in_(targets),
                                               MEMBERSHIPS.c.status != Status.REMOVED).values(status=Status.REMOVED))
    return conn.execute(update(ACCOUNTS).where(predicate).values(status=rule.to_status)).rowcount


def _expire_requests(conn, portal: str, now: datetime, client: str | None) -> int:
    """Close the portal's open access requests past their expiry, each audited as the lazy path audits it."""
    due = and_(REQUESTS.c.portal_id == portal, REQUESTS.c.status == "open", REQUESTS.c.expires_at <= now)
    detail = json_object(literal("id", String()), REQUESTS.c.id, literal("permission", String()), REQUESTS.c.permission)
    # Each due request with its requester and organization, oldest first: one audit record and one email each.
    requests = (REQUESTS.join(ACCOUNTS, ACCOUNTS.c.id == REQUESTS.c.account_id)
                .join(ORGANIZATIONS, ORGANIZATIONS.c.id == REQUESTS.c.organization_id))
    audit_rows = (select(
        literal(portal, String()), literal(now, UTCDateTime()), literal(None, String()), literal(client, String()),
        literal("access_request_expired", String()), ACCOUNTS.c.username, ORGANIZATIONS.c.key,
        literal("done", String()), _json([]), detail, literal(None, String()))
        .select_from(requests).where(due).order_by(REQUESTS.c.id))
    conn.execute(insert(AUDIT).from_select(
        ["portal_id", "occurred_at", "actor", "client", "action", "target", "organization", "outcome", "reasons",
         "detail", "comment"], audit_rows))
    told = (select(
        literal(portal, String()), literal("email", String()), ACCOUNTS.c.email,
        literal("access_request_expired", String()),
        # access_requests.expiry_email's payload (tests/test_sweep.py holds the two together)
        json_object(literal("request", String()), REQUESTS.c.id, literal("organization", String()), ORGANIZATIONS.c.key,
                    literal("permission", String()), REQUESTS.c.permission),
        literal(now, UTCDateTime()), literal("queued", String()))
        .select_from(requests).where(due).order_by(REQUESTS.c.id))
    conn.execute(insert(NOTIFICATIONS).from_select(
        ["portal_id", "channel", "recipient", "template", "payload", "created_at", "status"], told))
    return conn.execute(update(REQUESTS).where(due).values(status="expired", decided_at=REQUESTS.c.expires_at)).rowcount


def sweep_portal(session: Session, portal: str, profile: PortalProfile, now: datetime,
                 client: str | None = None) -> SweepResult:
    """One portal's sweep inside the caller's transaction."""
    # rowcount of INSERT ... SELECT is only kept on PostgreSQL (psycopg) when asked for
    conn = session.connection().execution_options(preserve_rowcount=True)
    days = _Days(now)
    result = SweepResult()
    rule_name = {"lock": "R22", "delete": "R22", "disable": "R23"}
    # R3, R4: the organizations whose active admins this run may lock, disable or delete (few; one query).
    swept = [ACCOUNTS.c.id.in_(select(ACCOUNTS.c.id).where(_eligible(portal, rule.from_statuses),
                                                           _reference() < days.before(rule.first_day)))
             for rule in rules_for(profile)]
    reach = set(conn.execute(select(MEMBERSHIPS.c.organization_id).distinct().where(
        MEMBERSHIPS.c.role == Role.ADMIN, MEMBERSHIPS.c.status == Status.ACTIVE,
        MEMBERSHIPS.c.account_id.in_(select(ACCOUNTS.c.id).where(or_(*swept)))))
        .scalars()) if swept else set()
    before = orphans.orphaned(session, reach)
    told = orphans.support_staff(session, portal) if reach else []  # read before this run may disable them
    for rule in rules_for(profile):
        changed = _act(conn, portal, rule, days, client, rule_name[rule.action])
        setattr(result, rule.counter, getattr(result, rule.counter) + changed)
    # The sweep proceeds even where it takes an organization's last admin (docs/policy.md: "Why the sweep
    # and the lockout proceed"): support staff are told in the same transaction.
    orphans.report_new_orphans(session, portal, reach, before, now, cause="inactivity_sweep", client=client,
                               support=told)
    for rule in rules_for(profile):
        result.warned += _warn(conn, portal, rule, profile.inactivity.warning_days, days)
    result.expired = _expire_requests(conn, portal, now, client)
    if result.warned >= ANALYZE_AFTER and conn.dialect.name == "postgresql":
        # Fresh statistics for the next run's NOT EXISTS: with the outbox's just-grown size unknown to the
        # planner, a rerun minutes later picks a nested loop over every warning sent today (quadratic).
        conn.execute(text("ANALYZE notifications"))
    if any(result.counts().values()):
        conn.execute(insert(AUDIT).values(
            portal_id=portal, occurred_at=now, actor=None, client=client, action="inactivity_sweep",
            target=None, organization=None, outcome="done", reasons=[],
            detail={**result.counts(), "sweep_day": days.today.isoformat()}, comment=None))
    return result


def _portals(config: Config, portal: str | None) -> list[str]:
    if portal is None:
        return list(config.portals)
    if config.portal(portal) is None:
        raise NotFound(f"unknown portal {portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    return [portal]


def _is_serialization_failure(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


def _in_own_transaction(database, portal: str, profile: PortalProfile, now: datetime,
                        client: str | None) -> SweepResult:
    if database.is_sqlite:
        with database.transaction() as session:
            return sweep_portal(session, portal, profile, now, client)
    for attempt in range(RETRIES):
        try:
            with database.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with Session(bind=conn) as session, session.begin():
                    return sweep_portal(session, portal, profile, now, client)
        except DBAPIError as exc:
            if attempt == RETRIES - 1 or not _is_serialization_failure(exc):
                raise
    raise AssertionError("unreachable")


def sweep(database_or_session, config: Config, now: datetime, portal: str | None = None,
          client: str | None = None) -> SweepResult:
    """Sweep one portal, or every configured portal; totals plus `portals[id]` per portal.

    Given a Database, each portal is swept in its own transaction; given a Session,
    everything runs in the caller's transaction (the caller commits).
    """
    result = SweepResult()
    portals = _portals(config, portal)
    started = perf_counter()
    run_id = _run_started(database_or_session, portal, client, now)
    for portal_id in portals:
        profile = config.portals[portal_id]
        if isinstance(database_or_session, Session):
            part = sweep_portal(database_or_session, portal_id, profile, now, client)
        else:
            part = _in_own_transaction(database_or_session, portal_id, profile, now, client)
        result.add(portal_id, part)
    _run_finished(database_or_session, run_id, now, perf_counter() - started, result)
    return result


def _in_session(database_or_session, work):
    if isinstance(database_or_session, Session):
        return work(database_or_session)
    with database_or_session.transaction() as session:
        return work(session)


def _run_started(database_or_session, portal: str | None, client: str | None, now: datetime) -> int:
    """A run is written when it starts, in its own transaction (given a Database), so one that never
    finishes is seen as started and not finished (GET /metrics: the sweep's timestamps)."""
    def work(session: Session) -> int:
        run = SweepRun(portal_id=portal, client=client, started_at=now)
        session.add(run)
        session.flush()
        return run.id

    return _in_session(database_or_session, work)


def _run_finished(database_or_session, run_id: int, now: datetime, seconds: float, result: SweepResult) -> None:
    def work(session: Session) -> None:
        session.execute(update(SweepRun).where(SweepRun.id == run_id).values(
            finished_at=now + timedelta(seconds=seconds), duration_seconds=seconds, **result.counts()))

    _in_session(database_or_session, work)
