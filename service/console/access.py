"""Access requests at the console: a member asks for a function it lacks (on its home page), and whoever may
grant it approves or declines it (**Access Requests**, per organization).

Views only: the functions offered are those `access_requests.request_access` accepts (the domain's
`requestable`, the policy's answer to each), the requests listed are the domain's `list_open` (those the
person may decide), and each form posts to the same domain function the API route calls, in the same unit
of work, so the audit, the outbox, R3 and the reach rules hold exactly as over HTTP.
"""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for

from service.console import labels
from service.console.common import bp, flash_errors, form_optional, form_text, page, person, reason_words, run, \
    signed_in
from service.domain import access_requests, sessions
from service.domain.errors import DomainError, NotFound


def _refused(exc: DomainError) -> None:
    """A refusal in plain words: the console's sentence for a known refusal, else the domain's own words."""
    words = labels.REFUSAL_WORDS.get(getattr(exc, "code", None))
    if words:
        flash(words, "error")
    else:
        flash_errors(exc)


@bp.post("/organizations/<organization>/request-access")
@signed_in
def request_access(organization: str):
    """POST .../organizations/{org}/access-requests with the console's session; the answer names whom the
    request went to exactly as far as the remedy tells the requester (the accounts named, or support staff)."""
    permission, note = form_text("permission"), form_optional("note")

    def work(ctx):
        me = person(ctx)
        outcome, made = access_requests.request_access(ctx, me, organization, permission, note)
        remedy = access_requests.remedy_of(ctx, me, organization, permission) if made is not None else None
        return outcome, made is not None, remedy

    try:
        outcome, made, remedy = run(work)
    except DomainError as exc:
        if isinstance(exc, sessions.InvalidSession):
            raise
        _refused(exc)
        return redirect(url_for("console.home"))
    if not made:
        for line in reason_words(outcome.decision):
            flash(line, "error")
        return redirect(url_for("console.home"))
    function = g.words.permission(permission)
    flash(f"Request Access: your request for {function} in {organization} is sent.", "confirmation")
    named = list(remedy["by"]) if remedy else []
    if named:
        flash(f"Sent to: {', '.join(named)}.", "confirmation")
    elif remedy is None or remedy["support"]:
        flash("Nobody in your organization can grant it: it is sent to support staff.", "confirmation")
    return redirect(url_for("console.home"))


@bp.get("/organizations/<organization>/access-requests")
@signed_in
def access_request_list(organization: str):
    """GET .../organizations/{org}/access-requests: the open requests the person may decide."""
    def work(ctx):
        decision, found = access_requests.list_open(ctx, person(ctx), organization)
        if not decision.allowed:
            return {"denied": reason_words(decision)}
        return {"requests": [access_requests.view(r) for r in found]}

    try:
        found = run(work)
    except NotFound:
        abort(404)
    if "denied" in found:
        return page("denied.html", 403, reasons=found["denied"])
    return page("access_requests.html", organization=organization, **found)


DECISIONS = {"approve": (access_requests.approve, "Approve"), "decline": (access_requests.decline, "Decline")}


@bp.post("/organizations/<organization>/access-requests")
@signed_in
def decide_access_request(organization: str):
    """The row's button: POST .../access-requests/{id}/approve (the grant itself) or .../decline."""
    back = redirect(url_for("console.access_request_list", organization=organization))
    chosen = DECISIONS.get(form_text("action"))
    try:
        request_id = int(form_text("request"))
    except ValueError:
        request_id = None
    if chosen is None or request_id is None:
        flash("Choose one of the page's buttons.", "error")
        return back
    decide, label = chosen
    comment = request.form.get("comment") or None
    try:
        outcome = run(lambda ctx: decide(ctx, person(ctx), organization, request_id, comment))
    except DomainError as exc:
        if isinstance(exc, sessions.InvalidSession):
            raise
        _refused(exc)
        return back
    if not outcome.decision.allowed:
        for line in reason_words(outcome.decision):
            flash(line, "error")
        return back
    flash(f"{label}: done for request {request_id}.", "confirmation")
    return back
