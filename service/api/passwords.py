"""Passwords (scope `manage`): change (R18) and self-service recovery (R20).

A change is authenticated by the current password, not by a session, so an
account whose password has expired can still change it. A refused change is
recorded like a refused sign-in, in a transaction of its own (the change's own
transaction has rolled back): a wrong current password counts toward the
lockout (R19).
"""
from __future__ import annotations

from flask import jsonify, request

from service.api.changes import transaction
from service.api.declare import Routes
from service.api.schemas import (AccountPath, PasswordChangeBody, PasswordSet, PortalPath, RecoveryAccepted,
                                 RecoveryBody, RecoveryConfirmBody)
from service.domain import recovery, sessions

bp = Routes("passwords", __name__, url_prefix="/v1/portals/<portal>")

ACCEPTED = {"status": "accepted",
            "detail": "if the answers match the account's security answers, an email with a security code is on "
                      "its way"}


def _password_set(account, profile) -> dict:
    expires = sessions.password_expires_at(account, profile)
    return {"username": account.username, "status": account.status,
            "password_expires_at": expires.isoformat() if expires else None}


@bp.put("/accounts/<username>/password", operation_id="changePassword",
        summary="The account changes its own password, also when expired (R17, R18); a wrong current password "
                "counts (R19)", scope="manage", ok=(200, PasswordSet), problems=(403, 404))
def change_password(path: AccountPath, body: PasswordChangeBody):
    portal, username = path.portal, path.username
    token = request.headers.get("X-Session-Token") or None

    def record(ctx, refused):
        sessions.record_refusal(ctx.session, ctx.profile, ctx.portal, username, refused.code, ctx.now,
                                action="change_password", client=ctx.client)

    return jsonify(transaction(portal, lambda ctx: _password_set(
        recovery.change_password(ctx, username, body.current_password, body.new_password, token), ctx.profile),
        refused=(sessions.SignInRefused,), record_refusal=record,
        ahead=lambda ctx: recovery.change_password_ahead(ctx, username, body.current_password, body.new_password)))


@bp.post("/password-recoveries", operation_id="requestRecovery",
         summary="Self-service recovery by security answers: 202 whatever the answers (R20)", scope="manage",
         ok=(202, RecoveryAccepted), problems=(403,))
def request_recovery(path: PortalPath, body: RecoveryBody):
    transaction(path.portal, lambda ctx: recovery.request_recovery(ctx, body.username, body.answers),
                ahead=lambda ctx: recovery.request_recovery_ahead(ctx, body.username, body.answers))
    return jsonify(ACCEPTED), 202


@bp.post("/password-recoveries/confirm", operation_id="confirmRecovery",
         summary="Set a new password with the emailed code; unlocks a locked account (R19, R20)", scope="manage",
         ok=(200, PasswordSet), problems=(403,))
def confirm_recovery(path: PortalPath, body: RecoveryConfirmBody):
    return jsonify(transaction(path.portal, lambda ctx: _password_set(
        recovery.confirm_recovery(ctx, body.username, body.code, body.new_password), ctx.profile),
        ahead=lambda ctx: recovery.confirm_recovery_ahead(ctx, body.username, body.code, body.new_password)))
