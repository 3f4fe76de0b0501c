"""A stateful search for sequences of real API calls that break the system's invariants: each decision
was right alone, so what is searched for is a composition of them that is not.

Every single decision can be right while a sequence of allowed steps is not (link, then change the
email, then recover: a takeover). So a hypothesis `RuleBasedStateMachine` drives random sequences of
the API itself (register, approve, link, create, grant, upgrade, downgrade, disable, enable, remove,
unlock, email change, recovery, password change, wrong passwords until lockout, the sweep with the
clock moved, access requests asked, listed, approved and declined) by admins, delegates, members and support staff of three organizations, in one portal
profile per sequence, and after every step compares the database before and after with an oracle
written here, independently of the policy:

1. Reach: an account-wide change (status, email, name, phone) was made by the account itself (its
   own credentials), by the system (sweep, lockout), or by an actor with authority over the account
   in EVERY organization where it had an active link; an email change by a delegate also needed
   every function the account held. A change to one link (role, grants, the link itself) needed
   authority in that organization. So nobody takes over an account through another organization.
2. Functions: every grant that exists was given by an admin or support staff of that organization,
   or a delegate holding it (R15); a role changes only by an admin or support staff (R2, R15). No
   account gains a role or a function it was not given.
3. R3: no organization with active members loses its last active admin, except through the sweep
   or the lockout, and then the same step reported it (`no_active_admin` audit record, and an email
   to support staff when any is active).
4. R27: every change and every policy denial is in the audit.
5. Parity: `/v1/authorize`, asked the same question just before, predicts each change's answer
   (allowed, or denied with the same reasons).
6. A non-member learns only `not_member`.
7. Designating an admin never adopts an account: it creates one, or upgrades an active member of that
   organization that the request names explicitly; registrants are told only active
   admins.
8. Access requests: a request is opened only by its own requester, an active member without the
   function; at most one is open per member, organization and function; only the ask that opened one
   tells anyone, at most five accounts, each one who may grant it or support staff. A listing shows
   exactly the open, unexpired requests the lister may grant. A request changes status only by its
   own approval or decline (by one who may grant it at that moment) or by expiry (once past it).
   Approving adds exactly the function asked to what the link held, and only for a requester that could
   still ask for it (not disabled, locked, removed or made admin since); a decline changes no link.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule
from sqlalchemy import event, func, select

from service.app import create_app
from service.domain import sessions
from service.storage.models import AccessRequest, Account, AuditRecord, Grant, Membership, Notification, Organization
from tests.fixtures.world import PASSWORD, World

ORGS = ("O1", "O2", "O3")
NEW_PASSWORDS = ("Fresh#Garden42", "Other#Meadow73", "Third#Harbor19")  # taken in turn, from the first, per search

# Per profile: the functions used, the delegate function, whether links and subordinates exist.
PROFILES = {
    "masshealth": {"functions": ("claims_submission_and_status", "manage_referrals", "manage_subordinate_accounts"),
                   "delegate": "manage_subordinate_accounts"},
    "ahw": {"functions": ("claims", "health_records", "manage_account"), "delegate": "manage_account"},
}
ACTIONS = ("approve", "enable", "disable", "remove", "upgrade", "downgrade", "unlock", "send-password-recovery")
ACCOUNT_FIELDS = ("email", "status", "first_name", "last_name", "phone")
# What an approval or decline may answer when the decider may grant: the request is not open, or its
# requester could no longer ask for it.
REQUEST_REFUSALS = ("request_closed", "target_status", "already_held")
FOLLOW_UPS = ("email", "disable", "enable", "unlock", "send-password-recovery", "approve", "remove", "upgrade")


@dataclass
class Snapshot:
    accounts: dict[str, dict]
    links: dict[tuple[str, str], dict]     # (username, org) -> role, status, permissions
    audit: int
    notices: list[tuple[str, str]]         # (recipient, organization) of orphan notices
    orphan_reports: list[str]              # organizations of `no_active_admin` audit records
    # access requests: id -> username, organization, permission, status, expires_at; and whom each ask told
    requests: dict[int, dict] = field(default_factory=dict)
    told: list[tuple[str, int]] = field(default_factory=list)  # (recipient, request id) of `access_requested`

    def active_links(self, username: str) -> list[str]:
        return [org for (user, org), link in self.links.items() if user == username and link["status"] == "active"]

    def link(self, username: str, org: str) -> dict | None:
        return self.links.get((username, org))

    def active(self, username: str) -> bool:
        return self.accounts.get(username, {}).get("status") == "active"

    def support(self, username: str) -> bool:
        return bool(self.accounts.get(username, {}).get("support"))

    def role_in(self, username: str, org: str) -> str | None:
        link = self.link(username, org)
        return link["role"] if link and link["status"] == "active" else None

    def admin_in(self, actor: str, org: str) -> bool:
        return self.active(actor) and self.role_in(actor, org) == "admin"

    def delegate_in(self, actor: str, org: str, delegate: str) -> bool:
        link = self.link(actor, org)
        return (self.active(actor) and self.role_in(actor, org) == "member" and delegate in link["permissions"])

    def holds(self, actor: str, org: str, function: str) -> bool:
        link = self.link(actor, org)
        return self.admin_in(actor, org) or (self.role_in(actor, org) == "member" and function in link["permissions"])

    def counts(self, org: str) -> tuple[int, int]:
        """(active admins, active members) of an organization: R3's facts."""
        admins = members = 0
        for (user, key), link in self.links.items():
            if key == org and link["status"] == "active" and self.active(user):
                if link["role"] == "admin":
                    admins += 1
                else:
                    members += 1
        return admins, members


# The statements of a snapshot, built once: columns only, read on a connection without an ORM session (the
# search takes a snapshot before and after nearly every step; an ORM session's reads were most of their cost).
_ACCOUNTS = select(Account.username, Account.is_support, Account.password_hash,
                   *(getattr(Account, f) for f in ACCOUNT_FIELDS))
_GRANTS = select(Grant.membership_id, Grant.permission)
_LINKS = (select(Account.username, Organization.key, Membership.id, Membership.role, Membership.status)
          .join(Membership, Membership.account_id == Account.id)
          .join(Organization, Organization.id == Membership.organization_id))
_AUDIT = select(func.count()).select_from(AuditRecord)
_ORPHAN_NOTICES = select(Notification.recipient, Notification.payload).where(
    Notification.template == "organization_without_admin")
_ORPHAN_REPORTS = select(AuditRecord.organization).where(AuditRecord.action == "no_active_admin")
_REQUESTS = (select(AccessRequest.id, Account.username, Organization.key, AccessRequest.permission,
                    AccessRequest.status, AccessRequest.expires_at)
             .join(Account, Account.id == AccessRequest.account_id)
             .join(Organization, Organization.id == AccessRequest.organization_id))
_TOLD = select(Notification.recipient, Notification.payload).where(Notification.template == "access_requested")


def snapshot(database) -> Snapshot:
    """The whole state the checks compare, in eight statements (taken before and after every step)."""
    with database.reading() as connection:
        accounts = {row.username: {**{f: getattr(row, f) for f in ACCOUNT_FIELDS}, "support": row.is_support,
                                   "password_hash": row.password_hash}
                    for row in connection.execute(_ACCOUNTS)}
        granted: dict[int, set[str]] = {}
        for membership_id, permission in connection.execute(_GRANTS):
            granted.setdefault(membership_id, set()).add(permission)
        links = {}
        for username, org, link_id, role, status in connection.execute(_LINKS):
            links[(username, org)] = {"role": role, "status": status, "permissions": granted.get(link_id, set())}
        audit = connection.execute(_AUDIT).scalar()
        notices = [(recipient, payload.get("organization")) for recipient, payload in connection.execute(_ORPHAN_NOTICES)]
        reports = list(connection.execute(_ORPHAN_REPORTS).scalars())
        requests = {row.id: {"username": row.username, "organization": row.key, "permission": row.permission,
                             "status": row.status, "expires_at": row.expires_at}
                    for row in connection.execute(_REQUESTS)}
        told = [(recipient, payload.get("request")) for recipient, payload in connection.execute(_TOLD)]
    return Snapshot(accounts, links, audit, notices, reports, requests, told)


def counted_writes(database) -> list[int]:
    """A count of the statements sent to the database that may write: every one but a SELECT (BEGIN IMMEDIATE
    and any CTE counted too, to be safe). While it stands still, the stored rows stand still."""
    writes = [0]

    def count(_conn, _cursor, statement, *_):
        if not statement.lstrip()[:6].upper() == "SELECT":
            writes[0] += 1

    for engine in database.engines:  # on PostgreSQL the reads have a pool of their own
        event.listen(engine, "before_cursor_execute", count)
    return writes


@dataclass
class Step:
    """What a rule did, for the checks: who acted (None: the system), through which kind of call."""

    kind: str                      # "admin" | "self" | "system" | "registration" | "enroll"
    actor: str | None = None
    response: object = None
    authorize: tuple | None = None  # (allowed, reasons) from /v1/authorize just before
    organization: str | None = None
    target: str | None = None
    about_account: bool = True      # False: a question about the organization (link, create)
    request: int | None = None      # the access request approved or declined (`decision`)
    decision: str | None = None     # "approve" | "decline"
    permission: str | None = None   # the function an access request is for


class Violation(AssertionError):
    pass


class PortalMachine(RuleBasedStateMachine):
    """Configured from outside (see `run_machine`): database factory, policy, config, clock, profile, apps."""

    make_database = None
    policy = None
    config = None
    clock = None
    portals: tuple[str, ...] = ("masshealth", "ahw")
    ran: dict = None
    apps: dict = None  # id(database) -> its app, for the whole search

    def __init__(self):
        super().__init__()
        self.database = None
        self.tokens: dict[str, str] = {}
        self.passwords: dict[str, str] = {}
        self.counter = itertools.count()
        self.step: Step | None = None
        self.before: Snapshot | None = None
        self.latest: tuple[int, Snapshot] | None = None  # the last snapshot, and the write count it was taken at
        self.writes: list[int] = [0]

    def teardown(self):
        self.database = None  # reset or disposed by its maker (`make_database`)

    # --- set-up -------------------------------------------------------------------------------

    @initialize(portal=st.sampled_from(("masshealth", "ahw")))
    def seed(self, portal):
        self.portal = portal if portal in self.portals else self.portals[0]
        profile = PROFILES[self.portal]
        self.functions, self.delegate = profile["functions"], profile["delegate"]
        self.database = type(self).make_database()
        # One app per database: the search's database is reset to the migrated template for each sequence, and
        # an app keeps nothing of a sequence but its metrics (building one compiles every route's URL rules again).
        apps = type(self).apps
        if id(self.database) not in apps:
            app = create_app(self.config, database=self.database, policy=self.policy, clock=self.clock)
            apps[id(self.database)] = app, counted_writes(self.database)
        self.app, self.writes = apps[id(self.database)]
        self.client = self.app.test_client()
        with self.database.transaction() as session:
            from service.domain import clients

            self.key = clients.create_client(session, "machine", clients.SCOPES, self.clock.now())
            world = World(session, self.portal, self.clock.now())
            f1, f2, _ = self.functions
            people = {
                "a1": {"O1": {"role": "admin"}}, "b1": {"O1": {"role": "admin"}},
                "a2": {"O2": {"role": "admin"}}, "a3": {"O3": {"role": "admin"}},
                "d1": {"O1": {"permissions": [self.delegate, f1]}},
                "m1": {"O1": {"permissions": [f1]}}, "m2": {"O1": {"permissions": [f2]}},
                "m3": {"O2": {"permissions": [f1]}}, "m4": {"O3": {}},
                # one person working for two organizations from the start (R1: one or more)
                "m5": {"O2": {"permissions": [f2]}, "O3": {"permissions": [f1]}},
            }
            for name, memberships in people.items():
                world.account(name, memberships=memberships)
            world.account("s1", support=True)
        self.accounts = [*people, "s1"]
        self.passwords = {name: PASSWORD for name in self.accounts}
        self.ran["sequences"] = self.ran.get("sequences", 0) + 1
        self.ran.setdefault("portals", set()).add(self.portal)

    # --- HTTP ---------------------------------------------------------------------------------

    def call(self, method, path, body=None, token=None):
        headers = {"Authorization": f"Bearer {self.key}"}
        if token:
            headers["X-Session-Token"] = token
        response = self.client.open(f"/v1/portals/{self.portal}{path}", method=method, json=body, headers=headers)
        assert response.status_code < 500, (method, path, response.status_code, response.get_data(as_text=True))
        self.ran["calls"] = self.ran.get("calls", 0) + 1
        kind = path.split("/")[-1] if path.startswith(("/accounts/", "/organizations/")) else path.split("/")[1]
        self.ran.setdefault("outcomes", Counter())[(method, kind, response.status_code)] += 1
        return response

    def token(self, account: str) -> str | None:
        """A live session for the account, signing in again when needed; None when it cannot sign in."""
        token = self.tokens.get(account)
        if token is not None and self.live(token):
            return token
        response = self.call("POST", "/sessions", {"username": account, "password": self.passwords[account]})
        if response.status_code == 401 and response.get_json()["code"] in ("password_expired", "terms_not_accepted"):
            # First sign-in of an account someone else made: its own password, the terms (R7).
            own = self.new_password()
            if response.get_json()["code"] == "password_expired" and self.call(
                    "PUT", f"/accounts/{account}/password",
                    {"current_password": self.passwords[account], "new_password": own}).status_code == 200:
                self.passwords[account] = own
            response = self.call("POST", "/sessions", {"username": account, "password": self.passwords[account],
                                                       "accepted_terms": True})
        if response.status_code != 201:
            self.tokens.pop(account, None)
            return None
        self.tokens[account] = response.get_json()["token"]
        return self.tokens[account]

    def new_password(self) -> str:
        """The next of NEW_PASSWORDS in the search's one cycle: what a search finds does not depend on the searches
        that ran before it in the process."""
        if "passwords" not in self.ran:
            self.ran["passwords"] = itertools.cycle(NEW_PASSWORDS)
        return next(self.ran["passwords"])

    def live(self, token: str) -> bool:
        """Whether the service would take the session token now: its own check (`sessions.account_for`, what
        every request with X-Session-Token runs first), asked directly rather than through a request."""
        with self.database.sessions() as session:
            try:
                sessions.account_for(session, self.portal, token, self.clock.now())
            except sessions.InvalidSession:
                return False
        return True

    def authorize(self, actor, action, target, org, **context):
        body = {"portal": self.portal, "actor": actor, "action": action,
                "resource": {"type": "account", "id": target, **({"organization": org} if org else {})}}
        if context:
            body["context"] = context
        response = self.client.post("/v1/authorize", json=body, headers={"Authorization": f"Bearer {self.key}"})
        if response.status_code != 200:
            return None
        answer = response.get_json()
        return answer["allowed"], sorted(r["code"] for r in answer["reasons"])

    def state(self) -> Snapshot:
        """The state the checks compare: the last snapshot again when no statement that may write has run on the
        database since it was taken (a snapshot is a function of the stored rows alone), else a new one."""
        if self.latest is None or self.latest[0] != self.writes[0]:
            self.latest = (self.writes[0], snapshot(self.database))
            self.ran["snapshots"] = self.ran.get("snapshots", 0) + 1
        return self.latest[1]

    def begin(self, step: Step) -> Step:
        self.check()  # a rule that makes several calls has each one checked
        self.before = self.state()
        self.step = step
        return step

    # --- rules --------------------------------------------------------------------------------

    accounts_ = st.sampled_from(("a1", "b1", "a2", "a3", "d1", "m1", "m2", "m3", "m4", "m5", "s1"))
    linked = Bundle("linked")

    # Choices lean towards what can succeed (an actor's own organization, an account there), so that a
    # sequence reaches deep states; a share of them stays arbitrary, so that denials are explored too.

    def orgs_of(self, account: str, admin_only: bool = False) -> list[str]:
        with self.database.sessions() as session:
            query = (select(Organization.key).join(Membership, Membership.organization_id == Organization.id)
                     .join(Account, Account.id == Membership.account_id)
                     .where(Account.username == account, Membership.status == "active"))
            if admin_only:
                query = query.where(Membership.role == "admin")
            return sorted(session.scalars(query))

    def members_of(self, org: str) -> list[str]:
        with self.database.sessions() as session:
            return sorted(session.scalars(
                select(Account.username).join(Membership, Membership.account_id == Account.id)
                .join(Organization, Organization.id == Membership.organization_id).where(Organization.key == org)))

    def lean(self, data, preferred: list, anything: list):
        """Mostly one of `preferred` (when there is any), sometimes anything at all."""
        if preferred and data.draw(st.integers(0, 4), label="lean") > 0:
            return data.draw(st.sampled_from(sorted(preferred)))
        return data.draw(st.sampled_from(sorted(anything, key=str)))

    def near(self, data, actor: str) -> tuple[str, str | None]:
        """An account and the organization to name: mostly one the actor shares, often none named."""
        orgs = self.orgs_of(actor) or list(ORGS)
        org = self.lean(data, orgs, list(ORGS))
        subject = self.lean(data, [m for m in self.members_of(org) if m != actor], self.accounts)
        named = data.draw(st.sampled_from((None, org, org, data.draw(st.sampled_from(ORGS)))), label="named")
        return subject, named

    @rule(actor=accounts_, action=st.sampled_from(ACTIONS), data=st.data())
    def admin_action(self, actor, action, data):
        subject, org = self.near(data, actor)
        self._admin_action(actor, subject, action, org)

    def _admin_action(self, actor, subject, action, org):
        token = self.token(actor)
        if token is None:
            return
        step = self.begin(Step("admin", actor, organization=org, target=subject))
        step.authorize = self.authorize(actor, action.replace("-", "_"), subject, org)
        step.response = self.call("POST", f"/accounts/{subject}/{action}",
                                  {"organization": org} if org else None, token=token)

    @rule(actor=accounts_, picks=st.sets(st.integers(0, 2), max_size=3), data=st.data())
    def set_permissions(self, actor, picks, data):
        subject, org = self.near(data, actor)
        org = org or data.draw(st.sampled_from(ORGS))
        token = self.token(actor)
        if token is None:
            return
        step = self.begin(Step("admin", actor, organization=org, target=subject))
        step.response = self.call("PUT", f"/accounts/{subject}/permissions",
                                  {"organization": org, "permissions": [self.functions[i] for i in sorted(picks)]},
                                  token=token)

    @rule(actor=accounts_, inbox=accounts_, then_recover=st.booleans(), data=st.data())
    def change_email(self, actor, inbox, then_recover, data):
        """Point an account's email at an inbox; then, half the time, the whole takeover chain: send
        recovery to the new address and let the inbox's owner set the password (link, change email,
        recover)."""
        subject, org = self.near(data, actor)
        self._change_email(actor, subject, org, inbox)
        if then_recover and self.step is not None and getattr(self.step.response, "status_code", None) == 200:
            self._admin_action(actor, subject, "send-password-recovery", org)
            self.recover_from_inbox(inbox, subject)

    def _change_email(self, actor, subject, org, inbox):
        token = self.token(actor)
        if token is None:
            return
        step = self.begin(Step("admin", actor, organization=org, target=subject))
        step.authorize = self.authorize(actor, "update_email", subject, org)
        body = {"email": f"{inbox}.alt@example.org", **({"organization": org} if org else {})}
        step.response = self.call("PATCH", f"/accounts/{subject}", body, token=token)

    @rule(target=linked, actor=accounts_, subject=accounts_, data=st.data())
    def link(self, actor, subject, data):
        org = self.lean(data, self.orgs_of(actor, admin_only=True), list(ORGS))
        token = self.token(actor)
        if token is None:
            return multiple()
        step = self.begin(Step("admin", actor, organization=org, target=subject, about_account=False))
        step.response = self.call("POST", f"/organizations/{org}/links", {"username": subject}, token=token)
        if step.response.status_code != 201:
            return multiple()
        # What an attacker tries next, at once: act on the account it just linked, through its organization.
        follow = data.draw(st.sampled_from((None, *FOLLOW_UPS)), label="follow-up")
        if follow is not None:
            self.act_through_link((actor, subject, org), follow)
        return (actor, subject, org)

    @rule(via=linked, action=st.sampled_from(FOLLOW_UPS))
    def act_through_link(self, via, action):
        """What the linking actor tries next on the account it linked, through its own organization."""
        actor, subject, org = via
        if action == "email":
            self._change_email(actor, subject, org, actor)
        else:
            self._admin_action(actor, subject, action, org)

    @rule(actor=accounts_, picks=st.sets(st.integers(0, 2), max_size=2), data=st.data())
    def create_subordinate(self, actor, picks, data):
        org = self.lean(data, self.orgs_of(actor), list(ORGS))
        token = self.token(actor)
        if token is None:
            return
        name = f"n{next(self.counter)}"
        step = self.begin(Step("admin", actor, organization=org, target=name, about_account=False))
        step.response = self.call("POST", f"/organizations/{org}/accounts", {
            "username": name, "first_name": "New", "last_name": name.title(), "email": f"{name}@example.org",
            "password": "Long#Enough#Pass1", "permissions": [self.functions[i] for i in sorted(picks)]}, token=token)
        if step.response.status_code == 201:
            self.accounts.append(name)
            self.passwords[name] = "Long#Enough#Pass1"

    @rule(org=st.sampled_from(ORGS))
    def register(self, org):
        name = f"r{next(self.counter)}"
        step = self.begin(Step("registration", None, organization=org, target=name))
        step.response = self.call("POST", "/registrations", {
            "organization": org, "username": name, "first_name": "Reg", "last_name": name.title(),
            "email": f"{name}@example.org", "phone": "602-555-0101", "password": "Long#Enough#Pass1",
            "security_questions": [], "accepted_terms": True})
        if step.response.status_code == 201:
            self.accounts.append(name)
            self.passwords[name] = "Long#Enough#Pass1"

    @rule(org=st.sampled_from(ORGS), subject=accounts_, existing=st.booleans(), fresh=st.booleans())
    def designate_admin(self, org, subject, existing, fresh):
        """Support staff or the payer designate an admin (R4, R12): never by adopting an account."""
        name = f"d{next(self.counter)}" if fresh else subject
        body = {"username": name, **({"existing_account": True} if existing and not fresh else {
            "first_name": "Des", "last_name": "Ignated", "email": f"{name}.des@example.org",
            "password": "Long#Enough#Pass1"})}
        step = self.begin(Step("enroll", None, organization=org, target=name))
        step.response = self.call("POST", f"/organizations/{org}/admins", body)
        if step.response.status_code == 201 and fresh:
            self.accounts.append(name)
            self.passwords[name] = "Long#Enough#Pass1"

    @rule(person=accounts_, subject=accounts_)
    def recover_from_inbox_rule(self, person, subject):
        self.recover_from_inbox(person, subject)

    def recover_from_inbox(self, person, subject):
        """Whoever reads the inbox a recovery code went to sets the password: the takeover's last step."""
        with self.database.sessions() as session:
            email = session.scalars(select(Notification).where(
                Notification.template == "password_recovery", Notification.recipient == f"{person}.alt@example.org")
                .order_by(Notification.id.desc())).first()
        if email is None or email.payload.get("username") != subject:
            return
        new = self.new_password()
        self.begin(Step("self", person, target=subject))
        response = self.call("POST", "/password-recoveries/confirm",
                             {"username": subject, "code": email.payload["security_code"], "new_password": new})
        self.step.response = response
        if response.status_code == 200:
            self.ran["recoveries"] = self.ran.get("recoveries", 0) + 1
            self.passwords[subject] = new
            self.tokens.pop(subject, None)

    @rule(account=accounts_)
    def change_password(self, account):
        token = self.token(account)
        if token is None:
            return
        new = self.new_password()
        self.begin(Step("self", account, target=account))
        response = self.call("PUT", f"/accounts/{account}/password",
                             {"current_password": self.passwords[account], "new_password": new}, token=token)
        self.step.response = response
        if response.status_code == 200:
            self.passwords[account] = new

    @rule(subject=accounts_)
    def guess_passwords(self, subject):
        """R19: wrong passwords until the lockout (a system change: the account's own safety)."""
        self.begin(Step("system", None, target=subject))
        for _ in range(3):
            self.call("POST", "/sessions", {"username": subject, "password": "Not#The#Password1"})
        self.tokens.pop(subject, None)

    @rule(days=st.sampled_from((1, 45, 91)))
    def sweep(self, days):
        """R22, R23: the clock moves and the inactivity sweep runs."""
        self.begin(Step("system"))
        self.clock.advance(timedelta(days=days))
        self.step.response = self.call("POST", "/maintenance/sweep", {})
        self.tokens.clear()  # sessions last hours, not days

    # --- access requests: ask, list, approve (the grant itself), decline; expiry comes with the sweep's clock --

    asked = Bundle("asked")

    # Mostly members (those who can ask), at times an admin (who holds everything) or support staff.
    requesters_ = st.sampled_from(("m1", "m2", "m3", "m4", "m5", "d1", "m1", "m3", "m4", "m5", "a1", "s1"))

    @rule(target=asked, actor=requesters_, function=st.integers(0, 2), twice=st.booleans(), data=st.data())
    def ask_access(self, actor, function, twice, data):
        """A member asks for a function (mostly in an organization of its own); at times twice, the second
        while the first is open. What was asked goes to the bundle, to be decided later, after whatever other
        steps came between (a disable, an upgrade, a removal, the clock)."""
        org = self.lean(data, self.orgs_of(actor), list(ORGS))
        token = self.token(actor)
        if token is None:
            return multiple()
        permission, made = self.functions[function], None
        for _ in range(2 if twice else 1):
            step = self.begin(Step("request", actor, organization=org, target=actor, permission=permission))
            step.response = self.call("POST", f"/organizations/{org}/access-requests", {"permission": permission},
                                      token=token)
            if step.response.status_code == 201:
                made = step.response.get_json()["id"]
        if made is None:
            return multiple()
        # Often decided at once (before the clock or anything else moves), else later from the bundle.
        now = data.draw(st.sampled_from((None, None, "approve", "decline")), label="decided at once")
        if now is not None:
            self._decide(org, made, now == "approve", data.draw(st.booleans(), label="listing"), data)
        return (org, made)

    def deciders_of(self, org: str) -> list[str]:
        """The organization's admins and delegates, and support staff: those who may mostly decide there."""
        with self.database.sessions() as session:
            delegates = select(Grant.membership_id).where(Grant.permission == self.delegate)
            return sorted({"s1", *session.scalars(
                select(Account.username).join(Membership, Membership.account_id == Account.id)
                .join(Organization, Organization.id == Membership.organization_id)
                .where(Organization.key == org, (Membership.role == "admin") | Membership.id.in_(delegates)))})

    @rule(asked=asked, approve=st.booleans(), listing=st.booleans(), data=st.data())
    def decide_access(self, asked, approve, listing, data):
        org, chosen = asked
        self._decide(org, chosen, approve, listing, data)

    def _decide(self, org, chosen, approve, listing, data):
        """Someone approves or declines a request: mostly one who administers its organization, sometimes
        anyone; half the time after listing the organization's requests, then mostly one listed to it."""
        actor = self.lean(data, self.deciders_of(org), self.accounts)
        token = self.token(actor)
        if token is None:
            return
        if listing:
            step = self.begin(Step("list", actor, organization=org, about_account=False))
            step.response = self.call("GET", f"/organizations/{org}/access-requests", token=token)
            listed = [r["id"] for r in (step.response.get_json() or {}).get("requests", [])]
            chosen = self.lean(data, listed, [chosen])
        step = self.begin(Step("admin", actor, organization=org, request=chosen,
                               decision="approve" if approve else "decline"))
        request = self.before.requests[chosen]
        step.target, step.permission = request["username"], request["permission"]
        step.authorize = self.authorize(actor, "grant", request["username"], org, permission=request["permission"])
        step.response = self.call("POST", f"/organizations/{org}/access-requests/{chosen}/{step.decision}", {},
                                  token=token)
        self.ran["access_decisions"] = self.ran.get("access_decisions", 0) + (step.response.status_code == 200)

    # --- the checks ---------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self):
        self.check()

    def check(self):
        if self.step is None or self.database is None:
            return
        before, after, step = self.before, self.state(), self.step
        self.step = None
        self.ran["steps"] = self.ran.get("steps", 0) + 1
        self._reach_and_grants(before, after, step)
        self._listed_admins(after, step)
        self._r3(before, after, step)
        self._audit(before, after, step)
        self._parity(before, step)
        self._non_member(before, step)
        self._access_requests(before, after, step)

    def fail(self, message: str):
        raise Violation(f"[{self.portal}] {message}")

    def _authority_over_link(self, s: Snapshot, actor: str, target: str, org: str) -> bool:
        if s.support(actor) and s.active(actor):
            return True
        if s.admin_in(actor, org):
            return True
        return s.delegate_in(actor, org, self.delegate) and s.role_in(target, org) == "member"

    def _authority_everywhere(self, s: Snapshot, actor: str, target: str) -> bool:
        return all(self._authority_over_link(s, actor, target, org) for org in s.active_links(target))

    def _may_capture(self, s: Snapshot, actor: str, target: str) -> bool:
        if s.support(actor) and s.active(actor):
            return True
        return all(s.admin_in(actor, org) or all(s.holds(actor, org, p) for p in s.link(target, org)["permissions"])
                   for org in s.active_links(target))

    def _designation(self, before: Snapshot, after: Snapshot, step: Step):
        """A designation creates a new account, or upgrades an active member of that organization."""
        for name, now in after.accounts.items():
            was = before.accounts.get(name)
            if was is not None and any(was[f] != now[f] for f in (*ACCOUNT_FIELDS, "password_hash")):
                self.fail(f"designating an admin of {step.organization} changed the existing account {name}")
        for (name, org), now in after.links.items():
            was = before.links.get((name, org))
            if was == now:
                continue
            if name != step.target or org != step.organization or now["role"] != "admin":
                self.fail(f"designating {step.target} admin of {step.organization} changed {name}'s link to {org}")
            if name in before.accounts and not (was and was["status"] == "active" and before.active(name)):
                self.fail(f"designation adopted {name}, which was not an active member of {org}")

    def _reach_and_grants(self, before: Snapshot, after: Snapshot, step: Step):
        if step.kind in ("system", "request", "list"):
            return  # access requests' own steps change no account: checked in _access_requests
        if step.kind == "enroll":
            return self._designation(before, after, step)
        actor = step.actor
        for name, now in after.accounts.items():
            was = before.accounts.get(name)
            if was is None:
                continue  # created in this step: checked through its links below
            changed = [f for f in ACCOUNT_FIELDS if was[f] != now[f]]
            if was["password_hash"] != now["password_hash"] and step.kind != "self":
                self.fail(f"{actor} changed the password of {name}")
            if not changed:
                continue
            if step.kind == "self" and actor == name:
                continue  # its own credentials: recovery with its code, a password change
            if actor == name and set(changed) <= {"first_name", "last_name", "phone"}:
                continue  # R21: its own profile
            if actor is None or not self._authority_everywhere(before, actor, name):
                self.fail(f"{actor} changed {changed} of {name} without authority in every organization of it "
                          f"{before.active_links(name)}: {was} -> {now}")
            if "email" in changed and not self._may_capture(before, actor, name):
                self.fail(f"{actor} pointed the email of {name} elsewhere without holding its functions")
        for key, now in after.links.items():
            was = before.links.get(key)
            name, org = key
            if was == now:
                continue
            if step.kind == "registration" and was is None and name == step.target:
                if now["role"] != "member" or now["permissions"]:
                    self.fail(f"a registration gave {name} {now}")
                continue
            if step.kind == "self":
                self.fail(f"{actor}'s own-credential step changed the link {key}: {was} -> {now}")
            if was is None or was["status"] == "removed":
                # a new or revived link: created or linked by an admin, delegate or support staff of org
                if not (before.support(actor) or before.admin_in(actor, org)
                        or before.delegate_in(actor, org, self.delegate)):
                    self.fail(f"{actor} added {name} to {org} without authority there")
                if now["role"] != "member":
                    self.fail(f"{name} joined {org} as {now['role']}")
                for p in now["permissions"]:
                    if not (before.support(actor) or before.holds(actor, org, p)):
                        self.fail(f"{actor} gave {name} {p} in {org} without holding it")
                continue
            if not self._authority_over_link(before, actor, name, org):
                self.fail(f"{actor} changed {name}'s link to {org} without authority there: {was} -> {now}")
            if was["role"] != now["role"] and not (before.support(actor) or before.admin_in(actor, org)):
                self.fail(f"{actor} changed {name}'s role in {org} without being its admin")
            if now["status"] == "removed":
                continue  # removing a link drops its grants with it: that is the removal, not a revoke
            for p in now["permissions"] ^ was["permissions"]:
                if not (before.support(actor) or before.holds(actor, org, p)):
                    self.fail(f"{actor} granted or revoked {p} for {name} in {org} without holding it")

    def _listed_admins(self, after: Snapshot, step: Step):
        """A registration lists only the organization's active admins (R11)."""
        if step.kind != "registration" or step.response is None or step.response.status_code != 201:
            return
        emails = {a["email"] for a in step.response.get_json().get("admins", [])}
        active = {after.accounts[u]["email"] for (u, org) in after.links
                  if org == step.organization and after.admin_in(u, org)}
        if not emails <= active:
            self.fail(f"registration in {step.organization} listed admins {emails - active} that are not active")

    def _r3(self, before: Snapshot, after: Snapshot, step: Step):
        for org in ORGS:
            admins_before, members_before = before.counts(org)
            admins_after, members_after = after.counts(org)
            if not (admins_before >= 1 and members_before >= 1 and admins_after == 0 and members_after >= 1):
                continue
            if step.kind != "system":
                self.fail(f"{org} lost its last active admin through {step.actor}'s change (R3)")
            if after.orphan_reports.count(org) <= before.orphan_reports.count(org):
                self.fail(f"{org} lost its last active admin through the sweep or lockout and nobody was told")
            support = [name for name, a in before.accounts.items() if a["support"] and after.active(name)]
            for name in support:
                notice = (before.accounts[name]["email"], org)
                if after.notices.count(notice) <= before.notices.count(notice):
                    self.fail(f"support staff {name} was not told that {org} has no active admin")

    def _audit(self, before: Snapshot, after: Snapshot, step: Step):
        response = step.response
        if response is None or step.kind in ("system", "list"):
            return
        body = response.get_json(silent=True) or {}
        audited = response.status_code in (200, 201) or (
            response.status_code in (403, 409) and body.get("code") in ("forbidden", "last_admin"))
        if audited and after.audit <= before.audit:
            self.fail(f"{step.actor}'s request answered {response.status_code} {body.get('code')} "
                      f"but left no audit record (R27)")

    def _parity(self, before: Snapshot, step: Step):
        if step.authorize is None or step.response is None:
            return
        allowed, reasons = step.authorize
        status, body = step.response.status_code, step.response.get_json(silent=True) or {}
        if allowed:
            # an approval or decline also needs the request open, and its requester still able to ask
            excused = ("email_taken",) + (REQUEST_REFUSALS if step.request is not None else ())
            if status != 200 and body.get("code") not in excused:
                self.fail(f"/v1/authorize allowed {step.actor} on {step.target} but the change answered {status} {body}")
        elif status in (403, 409) and body.get("code") in ("forbidden", "last_admin"):
            got = sorted(r["code"] for r in body.get("reasons", []))
            if got != reasons:
                self.fail(f"/v1/authorize said {reasons} but the change said {got}")
        elif status == 200:
            self.fail(f"/v1/authorize denied {step.actor} on {step.target} ({reasons}) but the change was made")

    def _non_member(self, before: Snapshot, step: Step):
        response = step.response
        if step.kind != "admin" or not step.about_account or response is None or response.status_code != 403:
            return
        body = response.get_json(silent=True) or {}
        if body.get("code") != "forbidden" or step.target not in before.accounts:
            return
        actor = step.actor
        org = step.organization
        if org is None:
            links = before.active_links(step.target)
            if len(links) != 1:
                return
            org = links[0]
        if before.support(actor) or before.role_in(actor, org) is not None or actor == step.target:
            return
        codes = [r["code"] for r in body.get("reasons", [])]
        if codes and codes != ["not_member"] and "unknown_actor" not in codes:
            self.fail(f"{actor}, not a member of {org}, was told {codes} about {step.target}")

    # --- the checks of access requests -----------------------------------------------------------------

    def _may_grant(self, s: Snapshot, actor: str, target: str, org: str, permission: str) -> bool:
        """Independently of the policy: who may grant a function (R5, R14, R15): support staff, an admin of
        the organization, or a delegate holding it, to a member of that organization, not to itself."""
        link = s.link(target, org)
        if actor == target or link is None or link["status"] == "removed" or not s.active(actor):
            return False
        if s.support(actor) or s.admin_in(actor, org):
            return True
        return s.delegate_in(actor, org, self.delegate) and link["role"] == "member" and s.holds(actor, org, permission)

    def _could_ask(self, s: Snapshot, username: str, org: str, permission: str) -> bool:
        """R16: an active member of the organization without the function."""
        link = s.link(username, org)
        return (s.active(username) and s.role_in(username, org) == "member"
                and permission not in link["permissions"])

    def _access_requests(self, before: Snapshot, after: Snapshot, step: Step):
        now = self.clock.now()
        response = step.response
        status = getattr(response, "status_code", None)
        body = (response.get_json(silent=True) or {}) if response is not None else {}
        decided = step.request is not None and status == 200
        # Asking or listing changes no account nor link.
        if step.kind in ("request", "list") and (before.accounts != after.accounts or before.links != after.links):
            self.fail(f"{step.actor}'s {step.kind} of access requests changed accounts or links")
        # Each request comes from its own requester's ask, and changes status only as its step says.
        for request_id, now_row in after.requests.items():
            was = before.requests.get(request_id)
            if was is None:
                if not (step.kind == "request" and status == 201 and now_row["username"] == step.actor
                        and now_row["organization"] == step.organization
                        and now_row["permission"] == step.permission and now_row["status"] == "open"):
                    self.fail(f"access request {now_row} appeared through {step.kind} by {step.actor}")
                if not self._could_ask(before, step.actor, step.organization, step.permission):
                    self.fail(f"{step.actor} opened a request for {step.permission} in {step.organization}, "
                              f"which it could not ask for: {before.link(step.actor, step.organization)}")
                continue
            if was["status"] == now_row["status"]:
                continue
            change = (was["status"], now_row["status"])
            if change == ("open", "expired"):
                if was["expires_at"] > now:
                    self.fail(f"access request {request_id} expired before {was['expires_at']}")
            elif change in (("open", "approved"), ("open", "declined")):
                expected = "approved" if step.decision == "approve" else "declined"
                if not (decided and step.request == request_id and now_row["status"] == expected):
                    self.fail(f"access request {request_id} became {now_row['status']} through {step.kind} "
                              f"by {step.actor}")
            else:
                self.fail(f"access request {request_id} went {change}")
        # One open request per member, organization and function.
        open_ = Counter((r["username"], r["organization"], r["permission"]) for r in after.requests.values()
                        if r["status"] == "open")
        if open_ and max(open_.values()) > 1:
            self.fail(f"more than one open request: {[k for k, n in open_.items() if n > 1]}")
        # Spam is bounded: only an ask that opened a request tells anyone, at most five accounts, each one who
        # may grant it or support staff; a second ask while one is open tells nobody.
        told = Counter(after.told) - Counter(before.told)
        if told:
            if not (step.kind == "request" and status == 201):
                self.fail(f"{step.kind} by {step.actor} told {sorted(told)} of an access request")
            if sum(told.values()) > 5:
                self.fail(f"an access request told {sum(told.values())} accounts")
            by_email = {a["email"]: name for name, a in before.accounts.items()}
            for email, _ in told:
                name = by_email.get(email)
                if name is None or not (self._may_grant(before, name, step.actor, step.organization, step.permission)
                                        or before.support(name)):
                    self.fail(f"{email} ({name}) was told of {step.actor}'s request for {step.permission} in "
                              f"{step.organization} and may not grant it")
        if step.kind == "request" and status == 409 and body.get("code") == "request_open":
            if not any(r["status"] == "open" and r["expires_at"] > now and
                       (r["username"], r["organization"], r["permission"]) == (step.actor, step.organization,
                                                                              step.permission)
                       for r in before.requests.values()):
                self.fail(f"{step.actor} was told a request for {step.permission} is open, and none was")
        # Listed: exactly the open, unexpired requests of the organization the lister may decide.
        if step.kind == "list" and status == 200:
            listed = {r["id"] for r in body.get("requests", [])}
            decidable = {i for i, r in before.requests.items() if r["organization"] == step.organization
                         and r["status"] == "open" and r["expires_at"] > now
                         and self._may_grant(before, step.actor, r["username"], step.organization, r["permission"])}
            if listed != decidable:
                self.fail(f"{step.actor} was listed {sorted(listed)} in {step.organization}; "
                          f"it may decide {sorted(decidable)}")
        if not decided:
            return
        # Approved or declined: an open, unexpired request, by one who may grant it at that moment.
        was = before.requests[step.request]
        requester, org, permission = was["username"], was["organization"], was["permission"]
        if was["status"] != "open" or was["expires_at"] <= now:
            self.fail(f"{step.actor} decided access request {step.request}, which was {was['status']} "
                      f"(expiring {was['expires_at']})")
        if not self._may_grant(before, step.actor, requester, org, permission):
            self.fail(f"{step.actor} decided {requester}'s request for {permission} in {org} without "
                      f"authority to grant it")
        if step.decision != "approve":
            if before.links != after.links:
                self.fail(f"declining access request {step.request} changed links")
            return
        # The grant itself: exactly the function asked, added to what the link held, for a requester that
        # could still have asked for it (not disabled, removed or made admin since).
        if not self._could_ask(before, requester, org, permission):
            self.fail(f"{requester}'s request for {permission} in {org} was approved though it could no longer "
                      f"ask for it: {before.accounts[requester]['status']}, {before.link(requester, org)}")
        held, now_held = before.link(requester, org)["permissions"], after.link(requester, org)["permissions"]
        if now_held != held | {permission}:
            self.fail(f"approving {requester}'s request for {permission} in {org} left {sorted(now_held)} "
                      f"(held {sorted(held)})")
        for key, link in after.links.items():
            if key != (requester, org) and before.links.get(key) != link:
                self.fail(f"approving {requester}'s request changed the link {key}")
