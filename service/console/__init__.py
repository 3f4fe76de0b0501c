"""The User Management console: the portals' admin screens under /console/{portal}/, server-rendered.

Views only (HTTP, forms, sessions, CSRF, rendering): every form calls the domain function its API route
calls, and every action a page offers is one the policy's authorized actions name. The browser's session
is a cookie of its own (`HttpOnly`, `SameSite=Strict`, `Secure` when configured), used under /console/
only; it carries a session of the domain's sign-in, so lockout, expiry and "sessions end on disable" hold
as for the API. Every POST carries a CSRF token (Flask-WTF); every page is sent with a
Content-Security-Policy that allows no inline script or style, and framed only where the portal says.
"""
from __future__ import annotations

from flask import Blueprint, Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from service.api.requests import services
from service.domain.errors import DomainError
from service.storage.secrets import shared_secret

PREFIX = "/console/"
SECRET_NAME = "console_session_key"
COOKIE = "portal_authz_console"

csrf = CSRFProtect()
assets = Blueprint("console_assets", __name__, static_folder="static", static_url_path="/static",
                   url_prefix="/console")


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the console's paths only: the API never reads or sets a cookie.

    The signing key is the database's shared console key (made once, the same on every replica and worker),
    read at the first console request rather than when the app is built (the schema may not exist yet)."""

    def open_session(self, app, request_):
        if not request_.path.startswith(PREFIX):
            return None
        if not app.secret_key:
            s = services()
            app.secret_key = shared_secret(s.database, SECRET_NAME, s.clock.now()).decode()
        return super().open_session(app, request_)


def content_security_policy(frame_ancestors: tuple[str, ...]) -> str:
    ancestors = " ".join(frame_ancestors) or "'none'"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")


def _headers(response):
    profile = g.get("profile")
    ancestors = tuple(profile.console.frame_ancestors) if profile is not None else ()
    response.headers["Content-Security-Policy"] = content_security_policy(ancestors)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def install(app: Flask) -> None:
    """Register the console on the app: its blueprints, cookie, CSRF protection and headers."""
    config = app.extensions["portal_authz"].config
    secure = config.console.secure_cookie
    if secure is None:  # on, except on a QA server whose clock the tests move (plain http on loopback)
        secure = config.testing.clock != "settable"
    app.session_interface = ConsoleSessions()
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_PATH=PREFIX, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=secure,
                      WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    app.jinja_env.autoescape = True  # every template, whatever its name
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(assets)


from service.console import access, accounts, signin, subordinates  # noqa: E402,F401 - their routes join the blueprint
from service.console.common import bp, error_words, page  # noqa: E402


@bp.before_request
def _csrf():
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@bp.errorhandler(CSRFError)
def _refused(exc):
    return page("denied.html", 400, title="Form refused",
                reasons=["The form could not be verified (it is out of date or did not come from this "
                         "console). Reload the page and try again."])


@bp.errorhandler(DomainError)
def _domain(exc):
    return page("denied.html", exc.status, reasons=error_words(exc))


@bp.errorhandler(404)
def _missing(exc):
    if "words" not in g:  # no such portal: nothing of any portal's to render it in
        return "Not found: no such portal.", 404, {"Content-Type": "text/plain; charset=utf-8"}
    return page("denied.html", 404, title="Not found", reasons=["There is no such page or account."])


bp.after_request(_headers)
assets.after_request(_headers)
