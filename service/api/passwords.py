"""Passwords (scope `manage`): change (R18) and self-service recovery (R20).

A change is authenticated by the current password, not by a session, so an
account whose password has expired can still change it. A refused change is
recorded like a refused sign-in, in a transaction of its own (the change's own
transaction has rolled back): a wrong current password counts toward the
lockout (R19).
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from service.api.requests import parse, require_scope, services
from service.api.schemas import PasswordChangeBody, RecoveryBody, RecoveryConfirmBody
from service.domain import administration, recovery, sessions
from service.domain.decisions import profile_of

bp = Blueprint("passwords", __name__, url_prefix="/v1/portals/<portal>")

ACCEPTED = {"status": "accepted",
            "detail": "if the answers match the account's security answers, an email with a security code is on "
                      "its way"}


def _transaction(portal: str, work):
    s = services()
    profile = profile_of(s.config, portal)
    with s.database.transaction() as session:
        return work(administration.Context(session, profile, portal, s.policy, s.notifier, s.clock.now(),
                                           getattr(g, "client", None)))


def _password_set(account, profile) -> dict:
    expires = sessions.password_expires_at(account, profile)
    return {"username": account.username, "status": account.status,
            "password_expires_at": expires.isoformat() if expires else None}


@bp.put("/accounts/<username>/password")
@require_scope("manage")
def change_password(portal, username):
    body = parse(PasswordChangeBody)
    token = request.headers.get("X-Session-Token") or None
    try:
        return jsonify(_transaction(portal, lambda ctx: _password_set(
            recovery.change_password(ctx, username, body.current_password, body.new_password, token), ctx.profile)))
    except sessions.SignInRefused as refused:
        s = services()
        with s.database.transaction() as session:
            sessions.record_refusal(session, profile_of(s.config, portal), portal, username, refused.code,
                                    s.clock.now(), action="change_password", client=getattr(g, "client", None))
        raise


@bp.post("/password-recoveries")
@require_scope("manage")
def request_recovery(portal):
    body = parse(RecoveryBody)
    _transaction(portal, lambda ctx: recovery.request_recovery(ctx, body.username, body.answers))
    return jsonify(ACCEPTED), 202


@bp.post("/password-recoveries/confirm")
@require_scope("manage")
def confirm_recovery(portal):
    body = parse(RecoveryConfirmBody)
    return jsonify(_transaction(portal, lambda ctx: _password_set(
        recovery.confirm_recovery(ctx, body.username, body.code, body.new_password), ctx.profile)))
