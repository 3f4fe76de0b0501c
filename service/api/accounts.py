"""Accounts (scope `manage`): registration, activation, sessions and admin actions.

Changes made on behalf of a person carry their session token in X-Session-Token;
the actor is always the session's account, never a field of the body.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from service.api.problems import Problem
from service.api.requests import parse, require_scope, services
from service.api.schemas import (
    ActionBody,
    ActivationBody,
    ActivationCodeBody,
    ConfirmBody,
    PermissionsBody,
    ProfileBody,
    RegistrationBody,
    LinkBody,
    SignInBody,
    SubordinateBody,
)
from service.domain import administration, registration, roster, sessions
from service.domain.decisions import Decider, profile_of
from service.storage.facts import actor_facts
from service.storage.models import Comment

bp = Blueprint("accounts", __name__, url_prefix="/v1/portals/<portal>")
ACTION_PATHS = {a.replace("_", "-"): a for a in administration.ACTIONS}


def iso(moment):
    return moment.isoformat() if moment else None


def account_view(account, profile) -> dict:
    return {
        "username": account.username, "first_name": account.first_name, "last_name": account.last_name,
        "email": account.email, "phone": account.phone, "status": account.status, "support": account.is_support,
        "last_login_at": iso(account.last_login_at),
        "password_expires_at": iso(sessions.password_expires_at(account, profile)),
        "memberships": [{"organization": m.organization.key, "role": m.role, "status": m.status,
                         "permissions": sorted(gr.permission for gr in m.grants)} for m in account.memberships],
    }


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
        outcome = change(ctx, _actor(ctx))
        if outcome.account is not None:
            ctx.session.flush()
            ctx.session.refresh(outcome.account)
            outcome.view = account_view(outcome.account, ctx.profile)
        return outcome

    outcome = _transaction(portal, work)
    return _answer(outcome)


# --- Registration and activation --------------------------------------------------------------

@bp.post("/registrations")
@require_scope("manage")
def register(portal):
    body = parse(RegistrationBody)
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


@bp.post("/activations")
@require_scope("manage")
def activate(portal):
    body = parse(ActivationBody)
    view = _transaction(portal, lambda ctx: account_view(
        registration.activate(ctx.session, ctx.profile, portal, now=ctx.now, **body.model_dump()), ctx.profile))
    return jsonify(view)


@bp.post("/registrations/confirm")
@require_scope("manage")
def confirm(portal):
    body = parse(ConfirmBody)
    view = _transaction(portal, lambda ctx: account_view(
        registration.confirm_registration(ctx.session, portal, now=ctx.now, **body.model_dump()), ctx.profile))
    return jsonify(view)


@bp.post("/organizations/<org>/activation-codes")
@require_scope("manage")
def reissue_activation_code(portal, org):
    """R10: support staff only, for an expired code; decided by the policy (`issue_activation_code`)."""
    body = parse(ActivationCodeBody)

    def work(ctx):
        actor = _actor(ctx)
        organization = Decider(ctx.session, ctx.profile, ctx.policy, portal, ctx.now).organization(org)
        decision = ctx.policy.decide(actor_facts(actor, actor.username, ctx.profile, ctx.now),
                                     "issue_activation_code", organization)
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

@bp.post("/sessions")
@require_scope("manage")
def sign_in(portal):
    body = parse(SignInBody)
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


@bp.delete("/sessions/current")
@require_scope("manage")
def sign_out(portal):
    def work(ctx):
        _actor(ctx)
        sessions.sign_out(ctx.session, request.headers["X-Session-Token"], ctx.now)

    _transaction(portal, work)
    return "", 204


# --- Accounts ---------------------------------------------------------------------------------

def _read_account(portal: str, username: str, render):
    """A read about one account: decided as `view`, denied reads audited, no lock taken."""

    def work(ctx):
        actor = _actor(ctx)
        decision, target, link = administration.decide(ctx, actor, "view", username, request.args.get("organization"))
        if not decision.allowed:
            return administration.record_denial(ctx, actor.username, "view", target.username,
                                                link.organization.key, decision, None)
        outcome = administration.Outcome(decision, target)
        outcome.view = render(ctx, target)
        return outcome

    return _answer(_transaction(portal, work))


@bp.get("/accounts/<username>")
@require_scope("manage")
def get_account(portal, username):
    return _read_account(portal, username, lambda ctx, target: account_view(target, ctx.profile))


@bp.patch("/accounts/<username>")
@require_scope("manage")
def patch_account(portal, username):
    body = parse(ProfileBody)
    changes = body.model_dump(exclude_unset=True, exclude={"organization", "comment"})
    return _run(portal, lambda ctx, actor: administration.update_profile(
        ctx, actor, username, body.organization, changes, body.comment))


@bp.post("/accounts/<username>/<path_action>")
@require_scope("manage")
def act(portal, username, path_action):
    action = ACTION_PATHS.get(path_action)
    if action is None:
        raise Problem(404, "not_found", "Not found",
                      f"unknown action {path_action!r}; one of {', '.join(ACTION_PATHS)}")
    body = parse(ActionBody) if request.content_length else ActionBody()
    return _run(portal, lambda ctx, actor: administration.perform(
        ctx, actor, action, username, body.organization, body.comment))


@bp.put("/accounts/<username>/permissions")
@require_scope("manage")
def put_permissions(portal, username):
    body = parse(PermissionsBody)
    return _run(portal, lambda ctx, actor: administration.set_permissions(
        ctx, actor, username, body.organization, body.permissions, body.comment))


@bp.get("/accounts/<username>/comments")
@require_scope("manage")
def comments(portal, username):
    """R25: the history, oldest first, as plain JSON strings (never markup)."""

    def render(ctx, target):
        rows = ctx.session.scalars(select(Comment).where(Comment.account_id == target.id).order_by(Comment.id))
        return [{"action": c.action, "actor": c.actor, "organization": c.organization, "date": iso(c.created_at),
                 "text": c.text} for c in rows]

    return _read_account(portal, username, render)


# --- The organization's roster (R13, R24) -----------------------------------------------------

@bp.post("/organizations/<org>/accounts")
@require_scope("manage")
def create_subordinate(portal, org):
    body = parse(SubordinateBody)
    details = body.model_dump(exclude={"permissions", "comment"})
    outcome = _run(portal, lambda ctx, actor: roster.create_subordinate(ctx, actor, org, details, body.permissions,
                                                                        body.comment))
    return outcome, 201


@bp.post("/organizations/<org>/links")
@require_scope("manage")
def link(portal, org):
    body = parse(LinkBody)
    return _run(portal, lambda ctx, actor: roster.link_account(ctx, actor, org, body.username, body.comment)), 201


@bp.get("/organizations/<org>/accounts")
@require_scope("manage")
def list_accounts(portal, org):
    args = request.args
    try:
        limit = int(args.get("limit", 50))
    except ValueError:
        raise Problem(422, "validation_error", "Invalid request", "limit must be a whole number",
                      errors=[{"field": "limit", "code": "int_parsing", "message": "a whole number"}]) from None
    manageable = args.get("manageable", "false").lower() in ("1", "true", "yes")

    def work(ctx):
        actor = _actor(ctx)
        decision, rows, following = roster.list_accounts(
            ctx, actor, org, q=args.get("q") or None, status=args.get("status") or None, manageable=manageable,
            limit=limit, after=args.get("after") or None)
        outcome = administration.Outcome(decision)
        outcome.view = {"accounts": [account_view(a, ctx.profile) for a in rows], "next": following}
        return outcome

    return _answer(_transaction(portal, work))
