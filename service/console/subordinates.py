"""MassHealth's subordinate pages (R13): New Subordinate and Link Subordinate, from the Subordinates Search.

The Provider list, Search, Update Subordinate (Available / Assigned Services, Submit, Reset Password, Remove)
and the Confirmation are the user list and the account page in this portal's words. Both forms here post
to the domain functions of POST .../organizations/{org}/accounts and .../links; the pages are offered where
the policy's authorized actions on the organization name `create_account` or `link_account`.
"""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from pydantic import ValidationError

from service.api.schemas import LinkBody, SubordinateBody
from service.console.common import bp, error_words, page, person, reason_words, run, signed_in
from service.domain import roster
from service.domain.decisions import Resource
from service.domain.errors import DomainError, NotFound

FIELDS = ("last_name", "first_name", "username", "email", "phone", "password")


def _offered(ctx, me, organization: str) -> list[str]:
    return ctx.decider().authorized_actions(
        me.username, Resource("organization", organization))


@bp.get("/organizations/<organization>/new-subordinate")
@signed_in
def new_subordinate_form(organization: str):
    def work(ctx):
        me = person(ctx)
        if "create_account" not in _offered(ctx, me, organization):
            return None
        return roster.grantable_on_creation(ctx, me, organization)

    try:
        services = run(work)
    except NotFound:
        abort(404)
    if services is None:
        abort(404)  # not offered to this person: as absent as its button
    return page("new_subordinate.html", organization=organization, services=services, values={}, checked=[])


@bp.post("/organizations/<organization>/new-subordinate")
@signed_in
def new_subordinate(organization: str):
    values = {k: request.form.get(k, "").strip() for k in FIELDS}
    values["password"] = request.form.get("password", "")
    permissions = [p for p in request.form.getlist("permission") if p]
    comment = request.form.get("comment") or None
    try:
        body = SubordinateBody(**{k: v for k, v in values.items() if v or k != "phone"}, permissions=permissions,
                               comment=comment)
        details = body.model_dump(include={"username", "first_name", "last_name", "email", "phone", "password"})
        outcome = run(lambda ctx: roster.create_subordinate(ctx, person(ctx), organization, details,
                                                            body.permissions, body.comment))
    except (ValidationError, DomainError) as exc:
        if isinstance(exc, NotFound):
            abort(404)
        return _again(organization, values, permissions, error_words(exc))
    if not outcome.decision.allowed:
        return _again(organization, values, permissions, reason_words(outcome.decision))
    flash(f"New Subordinate: {body.username} is created. Give them their temporary password; they choose their "
          f"own at their first sign-in.", "confirmation")
    return redirect(url_for("console.account", username=body.username, organization=organization))


def _again(organization: str, values: dict, checked: list[str], errors: list[str]):
    services = run(lambda ctx: roster.grantable_on_creation(ctx, person(ctx), organization))
    values = {k: v for k, v in values.items() if k != "password"}
    return page("new_subordinate.html", 422, organization=organization, services=services, values=values,
                checked=checked, errors=errors)


@bp.get("/organizations/<organization>/link-subordinate")
@signed_in
def link_subordinate_form(organization: str):
    try:
        offered = run(lambda ctx: _offered(ctx, person(ctx), organization))
    except NotFound:
        abort(404)
    if "link_account" not in offered:
        abort(404)
    return page("link_subordinate.html", organization=organization)


@bp.post("/organizations/<organization>/link-subordinate")
@signed_in
def link_subordinate(organization: str):
    username = request.form.get("username", "").strip()
    try:
        body = LinkBody(username=username, comment=request.form.get("comment") or None)
        outcome = run(lambda ctx: roster.link_account(ctx, person(ctx), organization, body.username, body.comment))
    except (ValidationError, DomainError) as exc:
        return page("link_subordinate.html", 422, organization=organization, username=username,
                    errors=error_words(exc) if not isinstance(exc, NotFound) else ["There is no such account."])
    if not outcome.decision.allowed:
        return page("link_subordinate.html", 403, organization=organization, username=username,
                    errors=reason_words(outcome.decision))
    flash(f"Link Subordinate: {body.username} now acts for {organization}.", "confirmation")
    return redirect(url_for("console.account", username=body.username, organization=organization))
