"""Sign-in and what a first sign-in asks: the activation code (R10), a new password for a temporary or expired
one (R18), the terms of use (R7); "Forgot your password?" (R20); sign-out.

Each form calls the same domain function as its API route, in the same unit of work with the same refusal
record: a wrong password here counts toward the lockout (R19) exactly as over the API.
"""
from __future__ import annotations

from flask import flash, g, redirect, request, session, url_for
from pydantic import ValidationError

from service.api.schemas import ActivationBody, PasswordChangeBody, RecoveryBody, RecoveryConfirmBody, SignInBody
from service.console.common import begin, bp, error_words, form_text, page, run, token
from service.domain import recovery, registration, sessions
from service.domain.errors import DomainError

# What a refused sign-in tells the person, in plain words (the codes are the API's, api-v1.md).
REFUSALS = {
    "invalid_credentials": "The username or password is not correct.",
    "account_locked": ("Your account is locked. Contact your administrator to unlock it, or use "
                       "Forgot your password?"),
    "account_disabled": "Your account is disabled. Contact your administrator.",
    "pending_approval": "Your account is awaiting approval by your administrator.",
    "unverified": "Your account is not verified yet: complete your registration from the email you received.",
    "account_removed": "This account has been removed.",
}


@bp.get("/")
def sign_in_form():
    if token() is not None:
        return redirect(url_for("console.home"))
    return page("sign_in.html")


@bp.post("/sign-in")
def sign_in():
    username, password = form_text("username"), form_text("password")
    accepted = True if request.form.get("accepted_terms") == "yes" else None
    try:
        body = SignInBody(username=username, password=password, accepted_terms=accepted)
    except ValidationError:
        return page("sign_in.html", 422, errors=["Enter your username and password."], username=username)

    def record(ctx, refused):
        sessions.record_refusal(ctx.session, ctx.profile, ctx.portal, body.username, refused.code, ctx.now)

    try:
        signed = run(lambda ctx: sessions.sign_in(ctx.session, ctx.profile, ctx.portal, body.username,
                                                  body.password, ctx.now, accepted_terms=body.accepted_terms),
                     refused=(sessions.SignInRefused,), record_refusal=record,
                     ahead=lambda ctx: sessions.sign_in_ahead(ctx, body.username, body.password))
    except sessions.SignInRefused as refused:
        if refused.code == "terms_not_accepted":
            return page("sign_in.html", 401, username=username, terms=True,
                        errors=["Please read the terms of use and select I Agree to continue."])
        if refused.code == "password_expired":
            flash("Your password is temporary or has expired: choose a new one.", "error")
            return redirect(url_for("console.password_form", username=body.username))
        if refused.code == "pending_activation":
            flash("Enter the authentication code from your activation letter to activate your account.", "error")
            return redirect(url_for("console.activation_form", username=body.username))
        return page("sign_in.html", 401, username=username,
                    errors=[REFUSALS.get(refused.code, "The sign-in was refused.")])
    begin(signed.token)
    return redirect(url_for("console.home"))


@bp.post("/sign-out")
def sign_out():
    current = token()
    if current is not None:
        run(lambda ctx: sessions.sign_out(ctx.session, current, ctx.now))
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("console.sign_in_form"))


# The forms a letter, a refusal or the step before links to with the username filled in (the query's
# `username`), by endpoint: each shown by one view.
USERNAME_FORMS = {"activation_form": ("/activate", "activate.html"), "password_form": ("/password", "password.html"),
                  "recovery_confirm_form": ("/recover/confirm", "recover_confirm.html")}


def _username_form(template: str):
    return lambda: page(template, username=request.args.get("username", ""))


for _endpoint, (_rule, _template) in USERNAME_FORMS.items():
    bp.get(_rule, endpoint=_endpoint)(_username_form(_template))


def _submitted(template: str, username: str, act, done: str):
    """`act()` validates the form and runs its unit of work, answering where to go next. Refused, the form is
    shown again (422) with the username kept and the refusal in words; done, `done` is flashed on the way."""
    try:
        where = act()
    except (ValidationError, DomainError) as exc:
        return page(template, 422, username=username, errors=error_words(exc))
    flash(done, "info")
    return redirect(where)


@bp.post("/activate")
def activate():
    fields = {k: form_text(k) for k in ("username", "code", "temporary_password", "new_password")}

    def act():
        body = ActivationBody(**fields)
        run(lambda ctx: registration.activate(ctx.session, ctx.profile, ctx.portal, now=ctx.now, **body.model_dump()),
            ahead=lambda ctx: registration.activate_ahead(ctx, **body.model_dump()))
        return url_for("console.sign_in_form")

    return _submitted("activate.html", fields["username"], act,
                      "Your account is activated. Sign in with your new password.")


@bp.post("/password")
def change_password():
    """A new password for a temporary or expired one, authenticated by the current one (PUT .../password)."""
    username = form_text("username")
    try:
        body = PasswordChangeBody(current_password=form_text("current_password"),
                                  new_password=form_text("new_password"))
    except ValidationError as exc:
        return page("password.html", 422, username=username, errors=error_words(exc))

    def record(ctx, refused):
        sessions.record_refusal(ctx.session, ctx.profile, ctx.portal, username, refused.code, ctx.now,
                                action="change_password", client=ctx.client)

    try:
        run(lambda ctx: recovery.change_password(ctx, username, body.current_password, body.new_password, token()),
            refused=(sessions.SignInRefused,), record_refusal=record,
            ahead=lambda ctx: recovery.change_password_ahead(ctx, username, body.current_password,
                                                             body.new_password))
    except sessions.SignInRefused as refused:
        return page("password.html", 401, username=username,
                    errors=[REFUSALS.get(refused.code, "The password change was refused.")])
    except DomainError as exc:
        return page("password.html", 422, username=username, errors=error_words(exc))
    flash("Your password is changed.", "info")
    return redirect(url_for("console.home" if token() else "console.sign_in_form"))


@bp.get("/recover")
def recovery_form():
    return page("recover.html")


@bp.post("/recover")
def request_recovery():
    """R20: the same answer whatever the answers were (no account is revealed by it)."""
    username = form_text("username")
    answers = [form_text(f"answer{i}") for i in range(1, g.profile.recovery.security_questions + 1)]

    def act():
        body = RecoveryBody(username=username, answers=answers)
        run(lambda ctx: recovery.request_recovery(ctx, body.username, body.answers),
            ahead=lambda ctx: recovery.request_recovery_ahead(ctx, body.username, body.answers))
        return url_for("console.recovery_confirm_form", username=body.username)

    return _submitted("recover.html", username, act,
                      "If the answers match your account's security answers, an email with a security code is on "
                      "its way.")


@bp.post("/recover/confirm")
def confirm_recovery():
    username = form_text("username")

    def act():
        body = RecoveryConfirmBody(username=username, code=form_text("code"), new_password=form_text("new_password"))
        run(lambda ctx: recovery.confirm_recovery(ctx, body.username, body.code, body.new_password),
            ahead=lambda ctx: recovery.confirm_recovery_ahead(ctx, body.username, body.code, body.new_password))
        return url_for("console.sign_in_form")

    return _submitted("recover_confirm.html", username, act, "Your password is changed. Sign in with your new password.")

