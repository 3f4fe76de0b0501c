"""Sessions (scope `manage`): sign in for a session token that carries a person's changes, sign out.

A refused sign-in is recorded in a transaction of its own (the domain's unit of work): its audit record
and a wrong password's counted failure (R19) are kept although the sign-in rolled back.
"""
from __future__ import annotations

from flask import jsonify, request

from service.api.changes import acting, iso, transaction
from service.api.declare import Routes
from service.api.schemas import PortalPath, SessionView, SignInBody
from service.domain import sessions

bp = Routes("sessions", __name__, url_prefix="/v1/portals/<portal>", tag="accounts")

# The sign-in's token is the X-Session-Token of a person's changes.
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


@bp.post("/sessions", operation_id="signIn", summary="Sign in: a session token for a person's changes",
         scope="manage", ok=(201, SessionView), links=SIGNED_IN)
def sign_in(path: PortalPath, body: SignInBody):
    def record(ctx, refused):
        # The refusal's audit record (and a wrong password's counted failure, R19) commit on their own.
        sessions.record_refusal(ctx.session, ctx.profile, ctx.portal, body.username, refused.code, ctx.now)

    signed = transaction(path.portal, lambda ctx: sessions.sign_in(
        ctx.session, ctx.profile, ctx.portal, body.username, body.password, ctx.now,
        accepted_terms=body.accepted_terms), refused=(sessions.SignInRefused,), record_refusal=record,
        ahead=lambda ctx: sessions.sign_in_ahead(ctx, body.username, body.password))
    return jsonify(token=signed.token, expires_at=iso(signed.expires_at),
                   password_expires_at=iso(signed.password_expires_at)), 201


@bp.delete("/sessions/current", operation_id="signOut", summary="Sign out: end the session", scope="manage",
           session="required", ok=204)
def sign_out(path: PortalPath):
    def work(ctx):
        acting(ctx)
        sessions.sign_out(ctx.session, request.headers["X-Session-Token"], ctx.now)

    transaction(path.portal, work)
    return "", 204


