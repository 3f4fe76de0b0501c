"""Accounts (scope `manage`): registration, activation, sessions and admin actions.

Changes made on behalf of a person carry their session token in X-Session-Token;
the actor is always the session's account, never a field of the body.
"""
from __future__ import annotations

from flask import g, jsonify, request
from sqlalchemy import select

from service.api.declare import Routes
from service.api.problems import Problem
from service.api.requests import services
from service.api.schemas import (
    AccountPage,
    AccountPath,
    AccountQuery,
    AccountsQuery,
    AccountView,
    ActionBody,
    ActionPath,
    ActivationBody,
    ActivationCodeBody,
    ActivationCodeQueued,
    CommentView,
    ConfirmBody,
    LinkBody,
    OrgPath,
    PermissionsBody,
    PortalPath,
    ProfileBody,
    RegistrationBody,
    RegistrationResult,
    SessionView,
    SignInBody,
    SubordinateBody,
)
from service.domain import administration, registration, roster, sessions
from service.domain.decisions import Decider, Question, Resource, profile_of
from service.storage.models import Comment

bp = Routes("accounts", __name__, url_prefix="/v1/portals/<portal>")

# Links let a client (and schemathesis's stateful phase) chain calls: the registered username
# feeds the account reads; the sign-in's token is the X-Session-Token of a person's changes.
REGISTERED = {"GetRegisteredAccount": {"operationId": "getAccount", "parameters": {
    "portal": "$request.path.portal", "username": "$response.body#/username"}}}
SIGNED_IN = {
    "GetAccountAsSession": {"operationId": "getAccount", "parameters": {
        "portal": "$request.path.portal", "username": "$request.body#/username",
        "header.X-Session-Token": "$response.body#/token"}},
    "ListCommentsAsSession": {"operationId": "listComments", "parameters": {
        "portal": "$request.path.portal", "username": "$request.body#/username",
        "header.X-Session-Token": "$response.body#/token"}},
    "SignOut": {"operationId": "signOut", "parameters": {
        "portal": "$request.path.portal", "header.X-Session-Token": "$response.body#/token"}},
}
CHANGE = (403, 404, 409, 422)
ACTION_PATHS = {a.replace("_", "-"): a for a in administration.ACTIONS}


def iso(moment):
    return moment.isoformat() if moment else None


def account_view(account, profile, organization: str | None = None) -> dict:
    """The account; seen through one organization (`organization`), only that organization's membership."""
    memberships = [m for m in account.memberships if organization is None or m.organization.key == organization]
    return {
        "username": account.username, "first_name": account.first_name, "last_name": account.last_name,
        "email": account.email, "phone": account.phone, "status": account.status, "support": account.is_support,
        "last_login_at": iso(account.last_login_at),
        "password_expires_at": iso(sessions.password_expires_at(account, profile)),
        "memberships": [{"organization": m.organization.key, "role": m.role, "status": m.status,
                         "permissions": sorted(gr.permission for gr in m.grants)} for m in memberships],
    }


def _seen_through(actor, target, organization: str | None) -> str | None:
    """Whose view: the account itself and support staff see every organization; others only the one decided on."""
    if actor.is_support or actor.id == target.id:
        return None
    return organization


def _transaction(portal: str, work):
    """Run `work(ctx)` in one transaction: all of it is committed, or none."""
    s = services()
    profile = profile_of(s.config, portal)
    with s.database.transaction() as session:
        ctx = administration.Context(session, profile, portal, s.policy, s.notifier, s.clock.now(),
                                     getattr(g, "client", None))
        return work(ctx)


def _actor(ctx):
    return sessions.account_for(ctx.session, ctx.portal, request.headers.get("X-Session-Token"), ctx.now)


def _answer(outcome):
    """Render an Outcome; a denial is raised only after its audit record was committed."""
    if not outcome.decision.allowed:
        if outcome.decision.reasons == ("last_admin",):
            # Allowed but for R3's invariant: the contract makes that a conflict, not a denial.
            raise Problem(409, "last_admin", "Conflict",
                          "the organization would be left with active members and no active admin",
                          reasons=outcome.decision.reason_objects())
        raise Problem(403, "forbidden", "Forbidden", "the policy denies this change",
                      reasons=outcome.decision.reason_objects())
    return jsonify(outcome.view)


def _run(portal: str, change):
    def work(ctx):
        actor = _actor(ctx)
        outcome = change(ctx, actor)
        if outcome.account is not None:
            ctx.session.flush()
            ctx.session.refresh(outcome.account)
            outcome.view = account_view(outcome.account, ctx.profile,
                                        _seen_through(actor, outcome.account, outcome.organization))
        return outcome

    outcome = _transaction(portal, work)
    return _answer(outcome)


# --- Registration and activation --------------------------------------------------------------

@bp.post("/registrations", operation_id="register", summary="Self-registration (R6-R9, R11, R12)", scope="manage",
         ok=(201, RegistrationResult), problems=(403, 409), links=REGISTERED)
def register(path: PortalPath, body: RegistrationBody):
    portal = path.portal
    registrant = registration.Registrant(
        **body.model_dump(exclude={"security_questions"}),
        security_questions=[(q.question, q.answer) for q in body.security_questions])

    def work(ctx):
        account, role, admins = registration.register(ctx.session, ctx.profile, portal, registrant, ctx.notifier,
                                                      ctx.now, ctx.client)
        return {"username": account.username, "organization": body.organization, "role": role,
                "status": account.status,
                "admins": [{"name": f"{a.first_name} {a.last_name}", "email": a.email, "phone": a.phone}
                           for a in admins if a.id != account.id]}

    return jsonify(_transaction(portal, work)), 201


@bp.post("/activations", operation_id="activate", summary="Activate a master with the letter's code (R10)",
         scope="manage", ok=(200, AccountView), problems=(409,))
def activate(path: PortalPath, body: ActivationBody):
    portal = path.portal
    view = _transaction(portal, lambda ctx: account_view(
        registration.activate(ctx.session, ctx.profile, portal, now=ctx.now, **body.model_dump()), ctx.profile))
    return jsonify(view)


@bp.post("/registrations/confirm", operation_id="confirmRegistration",
         summary="Complete registration with the emailed code (R12)", scope="manage", ok=(200, AccountView),
         problems=(409,))
def confirm(path: PortalPath, body: ConfirmBody):
    portal = path.portal
    view = _transaction(portal, lambda ctx: account_view(
        registration.confirm_registration(ctx.session, portal, now=ctx.now, **body.model_dump()), ctx.profile))
    return jsonify(view)


@bp.post("/organizations/<org>/activation-codes", operation_id="reissueActivationCode",
         summary="Support staff: a new activation letter for an expired code (R10)", scope="manage",
         session="required", ok=(201, ActivationCodeQueued), problems=CHANGE)
def reissue_activation_code(path: OrgPath, body: ActivationCodeBody):
    """R10: support staff only, for an expired code; decided by the policy (`issue_activation_code`)."""
    portal, org = path.portal, path.org

    def work(ctx):
        actor = _actor(ctx)
        decision = Decider(ctx.session, ctx.profile, ctx.policy, portal, ctx.now).decide(
            actor.username, Question("issue_activation_code", Resource("organization", org)))
        if not decision.allowed:
            return administration.record_denial(ctx, actor.username, "issue_activation_code", body.username, org,
                                                decision, None)
        registration.reissue_activation_code(ctx.session, ctx.profile, portal, org, body.username, ctx.notifier,
                                             ctx.now)
        outcome = administration.Outcome(decision)
        outcome.view = {"username": body.username, "organization": org, "letter": "queued"}
        return outcome

    outcome = _transaction(portal, work)
    return _answer(outcome) if not outcome.decision.allowed else (jsonify(outcome.view), 201)


# --- Sessions ---------------------------------------------------------------------------------

@bp.post("/sessions", operation_id="signIn", summary="Sign in: a session token for a person's changes",
         scope="manage", ok=(201, SessionView), links=SIGNED_IN)
def sign_in(path: PortalPath, body: SignInBody):
    portal = path.portal
    s = services()
    profile = profile_of(s.config, portal)
    try:
        with s.database.transaction() as session:
            signed = sessions.sign_in(session, profile, portal, body.username, body.password, s.clock.now(),
                                      accepted_terms=body.accepted_terms)
    except sessions.SignInRefused as refused:
        # The refusal's audit record (and a wrong password's counted failure, R19) commit on their own.
        with s.database.transaction() as session:
            sessions.record_refusal(session, profile, portal, body.username, refused.code, s.clock.now())
        raise
    return jsonify(token=signed.token, expires_at=iso(signed.expires_at),
                   password_expires_at=iso(signed.password_expires_at)), 201


@bp.delete("/sessions/current", operation_id="signOut", summary="Sign out: end the session", scope="manage",
           session="required", ok=204)
def sign_out(path: PortalPath):
    def work(ctx):
        _actor(ctx)
        sessions.sign_out(ctx.session, request.headers["X-Session-Token"], ctx.now)

    _transaction(path.portal, work)
    return "", 204


# --- Accounts ---------------------------------------------------------------------------------

def _read_account(portal: str, username: str, organization: str | None, render):
    """A read about one account. With a session, decided as `view` (denied reads audited); without one,
    the calling service's `manage` key is the authority (a portal's back office, R26). No lock taken."""

    def work(ctx):
        if not request.headers.get("X-Session-Token"):
            outcome = administration.service_read(ctx, username)
            outcome.view = render(ctx, outcome.account, None)  # the calling service sees every organization
            return outcome
        actor = _actor(ctx)
        if organization is not None:
            # A non-member of the named organization learns nothing, not even whether the account is in it
            # (issue 18 item 5): the same denial whether the account is there, elsewhere or nowhere.
            decision = administration.not_member_of(ctx, actor, organization)
            if decision is not None:
                return administration.record_denial(ctx, actor.username, "view", username, organization, decision,
                                                    None)
        decided = administration.decide(ctx, actor.username, "view", username, organization)
        target = decided.target
        if not decided.decision.allowed:
            return administration.record_denial(ctx, actor.username, "view", target.username,
                                                decided.organization, decided.decision, None)
        outcome = administration.Outcome(decided.decision, target)
        outcome.view = render(ctx, target, _seen_through(actor, target, decided.organization))
        return outcome

    return _answer(_transaction(portal, work))


@bp.get("/accounts/<username>", operation_id="getAccount",
        summary="An account: status, last sign-in, memberships (R26); a person's session must be allowed `view`",
        scope="manage", session="optional", ok=(200, AccountView), problems=(403,))
def get_account(path: AccountPath, query: AccountQuery):
    return _read_account(path.portal, path.username, query.organization,
                         lambda ctx, target, through: account_view(target, ctx.profile, through))


@bp.patch("/accounts/<username>", operation_id="updateAccount", summary="Update profile fields or email (R21)",
          scope="manage", session="required", ok=(200, AccountView), problems=CHANGE)
def patch_account(path: AccountPath, body: ProfileBody):
    changes = body.model_dump(exclude_unset=True, exclude={"organization", "comment"})
    return _run(path.portal, lambda ctx, actor: administration.update_profile(
        ctx, actor, path.username, body.organization, changes, body.comment))


@bp.post("/accounts/<username>/<path_action>", operation_id="actOnAccount",
         summary="An admin action: approve, enable, disable, remove, upgrade, downgrade, unlock, "
                 "send-password-recovery, send-registration-email (R5); the body may be empty",
         scope="manage", session="required", ok=(200, AccountView), problems=CHANGE, body_optional=True)
def act(path: ActionPath, body: ActionBody):
    action = ACTION_PATHS.get(path.path_action)
    if action is None:
        raise Problem(404, "not_found", "Not found",
                      f"unknown action {path.path_action!r}; one of {', '.join(ACTION_PATHS)}")
    return _run(path.portal, lambda ctx, actor: administration.perform(
        ctx, actor, action, path.username, body.organization, body.comment))


@bp.put("/accounts/<username>/permissions", operation_id="setPermissions",
        summary="Replace granted functions (R14, R15)", scope="manage", session="required", ok=(200, AccountView),
        problems=CHANGE)
def put_permissions(path: AccountPath, body: PermissionsBody):
    return _run(path.portal, lambda ctx, actor: administration.set_permissions(
        ctx, actor, path.username, body.organization, body.permissions, body.comment))


@bp.get("/accounts/<username>/comments", operation_id="listComments",
        summary="Comment history, oldest first (R25); a person's session must be allowed `view`", scope="manage",
        session="optional", ok=(200, list[CommentView]), problems=(403,))
def comments(path: AccountPath, query: AccountQuery):
    """R25: the history, oldest first, as plain JSON strings (never markup)."""

    def render(ctx, target, through):
        history = select(Comment).where(Comment.account_id == target.id)
        if through is not None:  # an organization's admins read the comments written there only
            history = history.where(Comment.organization == through)
        rows = ctx.session.scalars(history.order_by(Comment.id))
        return [{"action": c.action, "actor": c.actor, "organization": c.organization, "date": iso(c.created_at),
                 "text": c.text} for c in rows]

    return _read_account(path.portal, path.username, query.organization, render)


# --- The organization's roster (R13, R24) -----------------------------------------------------

@bp.post("/organizations/<org>/accounts", operation_id="createSubordinate",
         summary="Create a subordinate account (R13); takes the registration fields of the contract",
         scope="manage", session="required", ok=(201, AccountView), problems=CHANGE)
def create_subordinate(path: OrgPath, body: SubordinateBody):
    body.check_organization(path.org)
    details = body.model_dump(include={"username", "first_name", "last_name", "email", "phone", "password"})
    outcome = _run(path.portal, lambda ctx, actor: roster.create_subordinate(
        ctx, actor, path.org, details, body.permissions, body.comment))
    return outcome, 201


@bp.post("/organizations/<org>/links", operation_id="linkAccount",
         summary="Link an account of another organization (R13)", scope="manage", session="required",
         ok=(201, AccountView), problems=CHANGE)
def link(path: OrgPath, body: LinkBody):
    return _run(path.portal, lambda ctx, actor: roster.link_account(
        ctx, actor, path.org, body.username, body.comment)), 201


@bp.get("/organizations/<org>/accounts", operation_id="listAccounts",
        summary="Accounts the actor may see, filtered in the database (R24)", scope="manage", session="required",
        ok=(200, AccountPage), problems=(403,))
def list_accounts(path: OrgPath, query: AccountsQuery):
    def work(ctx):
        actor = _actor(ctx)
        decision, rows, following = roster.list_accounts(
            ctx, actor, path.org, q=query.q or None, status=query.status or None, manageable=query.manageable,
            limit=query.limit, after=query.after or None)
        outcome = administration.Outcome(decision)
        outcome.view = {"accounts": [account_view(a, ctx.profile) for a in rows], "next": following}
        return outcome

    return _answer(_transaction(path.portal, work))
