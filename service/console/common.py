"""The console's plumbing: its blueprint, the signed-in person, the unit of work of a form, and rendering.

Views here are HTTP only: they read a form, call the same domain function the API route calls, through
the same unit of work (`service.domain.work.run`), and render. Who may do what is never decided here:
the actions a page offers come from the policy's `authorized-actions` through the same `Decider`.
"""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from pydantic import ValidationError

from service.api.requests import services
from service.console import labels
from service.domain import sessions, work

bp = Blueprint("console", __name__, url_prefix="/console/<portal>", template_folder="templates")

# The audit records name the console as the channel of a person's change (R27), as they name an API client.
CLIENT = "console"


@bp.url_value_preprocessor
def _portal(endpoint, values):
    portal = (values or {}).pop("portal", None)
    profile = services().config.portal(portal) if portal else None
    if profile is None:
        abort(404)
    g.portal, g.profile = portal, profile
    g.words = labels.words(portal, profile)


@bp.url_defaults
def _portal_default(endpoint, values):
    if "portal" not in values and "portal" in g:
        values["portal"] = g.portal


@bp.context_processor
def _signed_in_flag():
    return {"console_signed_in": token() is not None}


def token() -> str | None:
    """The session token of the person signed in to this portal's console, if any."""
    signed = session.get("signed_in")
    return signed["token"] if isinstance(signed, dict) and signed.get("portal") == g.portal else None


def begin(signed_token: str) -> None:
    """A fresh console session for a person just signed in (a new cookie, so a new CSRF token too)."""
    session.clear()
    session["signed_in"] = {"portal": g.portal, "token": signed_token}


def run(work_, **refusals):
    """`work_(ctx)` in the domain's unit of work, as the API runs a change: committed whole, or not at all."""
    return work.run(services(), g.portal, CLIENT, work_, **refusals)


def person(ctx):
    """The account of the console session (InvalidSession when none is live)."""
    return sessions.account_for(ctx.session, ctx.portal, token(), ctx.now)


def signed_in(view):
    """Send anyone without a live console session to the sign-in form (the session is checked again in each
    unit of work: an account disabled meanwhile is signed out at once)."""
    @wraps(view)
    def guarded(**kwargs):
        if token() is None:
            return redirect(url_for("console.sign_in_form"))
        try:
            return view(**kwargs)
        except sessions.InvalidSession:
            session.clear()
            flash("Your session has ended. Please sign in again.", "error")
            return redirect(url_for("console.sign_in_form"))
    return guarded


def reason_words(decision) -> list[str]:
    """Each reason of a denial in plain words, as the policy that decided states them (reasons.polar)."""
    return [reason["message"] for reason in decision.reason_objects()]


def error_words(exc: Exception) -> list[str]:
    """A refusal in plain words: the domain's detail and each field's message."""
    if isinstance(exc, ValidationError):
        return [f"{labels.field_name('.'.join(str(p) for p in e['loc']))}: {e['msg']}" for e in exc.errors()]
    words = [getattr(exc, "detail", str(exc))]
    words += [e.get("message", "") for e in (getattr(exc, "extra", {}) or {}).get("errors", [])]
    if getattr(exc, "extra", {}).get("reasons"):
        words += [r["message"] for r in exc.extra["reasons"]]
    return [w for w in words if w]


def flash_errors(exc: Exception) -> None:
    for line in error_words(exc):
        flash(line, "error")


def form_text(name: str) -> str:
    return request.form.get(name, "")


def form_optional(name: str) -> str | None:
    value = request.form.get(name, "").strip()
    return value or None


def page(template: str, code: int = 200, **context):
    return render_template(f"console/{template}", **context), code


__all__ = ["bp", "CLIENT", "begin", "error_words", "flash_errors", "page", "person",
           "reason_words", "run", "signed_in", "token"]
