"""Shared HTTP plumbing of the account routes (registration, sessions, accounts, roster): the unit of work
of a request, the acting person's session, and how an account and a decision are rendered.

Changes made on behalf of a person carry their session token in X-Session-Token;
the actor is always the session's account, never a field of the body.
"""
from __future__ import annotations

from collections.abc import Collection

from flask import jsonify, request

from service.api.problems import Problem
from service.api.requests import client_name, services
from service.domain import administration, sessions, work
from service.kernel.catalog import Status

CHANGE = (403, 404, 409, 422)


def iso(moment):
    return moment.isoformat() if moment else None


def account_view(account, profile, visible: Collection[str] | None) -> dict:
    """The account and its current memberships (where it belongs; history is the audit's): those in `visible`,
    the organizations whose membership the reader may see (`administration.visible_organizations`), or every
    one (None: a calling service's own read, R26)."""
    memberships = [m for m in account.memberships if m.status != Status.REMOVED
                   and (visible is None or m.organization.key in visible)]
    return {
        "username": account.username, "first_name": account.first_name, "last_name": account.last_name,
        "email": account.email, "phone": account.phone, "status": account.status, "support": account.is_support,
        "last_login_at": iso(account.last_login_at),
        "password_expires_at": iso(sessions.password_expires_at(account, profile)),
        "memberships": [{"organization": m.organization.key, "role": m.role, "status": m.status,
                         "permissions": sorted(gr.permission for gr in m.grants)} for m in memberships],
    }


def transaction(portal: str, work_, **refusals):
    """Run `work_(ctx)` in the domain's unit of work: all of it is committed, or none."""
    return work.run(services(), portal, client_name(), work_, **refusals)


def acting(ctx):
    """The account of the request's session (401 without a live one)."""
    return sessions.account_for(ctx.session, ctx.portal, request.headers.get("X-Session-Token"), ctx.now)


def answer(outcome):
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


def run_change(portal: str, change, ahead=None):
    """A person's change: `change(ctx, actor)` decides and applies; the account it returns is rendered.

    `ahead(ctx)`: its argon2 work, before the write transaction (service.domain.work.run)."""
    def work_(ctx):
        person = acting(ctx)
        outcome = change(ctx, person)
        if outcome.account is not None:
            account = administration.as_it_stands(ctx, outcome.account)
            outcome.view = account_view(account, ctx.profile, administration.visible_organizations(
                ctx, person.username, account))
        return outcome

    return answer(transaction(portal, work_, ahead=ahead))
