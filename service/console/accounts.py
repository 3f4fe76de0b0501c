"""The signed-in person's pages: home, the admin's user list (R24), one account's page (R5, R14, R25, R26) and
"User Account", where a person maintains their own information and password (R21).

Every control a page shows is an action the policy's authorized actions name for that person on that
resource (`Decider.authorized_actions`, the engine behind POST /v1/authorized-actions); an action the
policy does not allow is absent. Every form posts to the domain function the API route calls.
"""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from pydantic import ValidationError

from service.api.schemas import PasswordChangeBody, ProfileBody
from service.console.common import bp, error_words, flash_errors, form_optional, form_text, page, person, \
    reason_words, run, signed_in, token
from service.domain import access_requests, administration, recovery, roster, sessions
from service.domain.decisions import Question, Resource
from service.domain.errors import DomainError, Invalid, NotFound
from service.kernel.catalog import PATH_ACTIONS, Status

PAGE_SIZE = 25
STATUS_FILTERS = ("pending_approval", "unverified", "active", "locked", "disabled")


def _live(account):
    return [m for m in account.memberships if m.status != Status.REMOVED]


@bp.get("/home")
@signed_in
def home():
    def work(ctx):
        me = person(ctx)
        organizations = [(m.organization.key, m.organization.name, m.role) for m in _live(me)]
        admin_of = [key for key, _, _ in organizations if roster.sees_others(ctx, me, key)]
        # Request Access: the functions the person may ask for in each organization (the domain's answer).
        askable = []
        for key, _, _ in organizations:
            functions, mine = access_requests.requestable(ctx, me, key)
            if functions:
                askable.append((key, [(p, mine.get(p)) for p in functions]))
        return {"me": me.username, "name": f"{me.first_name} {me.last_name}", "organizations": organizations,
                "admin_of": admin_of, "askable": askable}

    return page("home.html", **run(work))


def _organization_of(me, asked: str | None) -> str | None:
    if asked:
        return asked
    live = _live(me)
    return live[0].organization.key if len(live) == 1 else None


@bp.get("/admin")
@signed_in
def user_list():
    """The accounts the person administers in one organization, searched and paged in the database; each
    row's actions in one decision pass over the page (one facts statement, answers memoized by shape)."""
    q = request.args.get("q", "").strip()[:100] or None
    status = "pending_approval" if request.args.get("pending") == "yes" else request.args.get("status") or None
    if status is not None and status not in STATUS_FILTERS:
        status = None
    after = request.args.get("after") or None

    def work(ctx):
        me = person(ctx)
        organization = _organization_of(me, request.args.get("organization"))
        if organization is None:
            return {"choose": [(m.organization.key, m.organization.name) for m in _live(me)]}
        decision, rows, following = roster.list_accounts(ctx, me, organization, q=q, status=status, manageable=True,
                                                         limit=PAGE_SIZE, after=after)
        if not decision.allowed:
            return {"denied": reason_words(decision), "organization": organization}
        # The organization's own actions (New Subordinate, Link Subordinate) ride in the same pass.
        *each, offered = ctx.decider().authorized_actions_each(
            me.username, [*(Resource("account", a.username, organization) for a in rows),
                          Resource("organization", organization)])
        # The Provider list: where the person belongs (what each list shows is the policy's, once chosen).
        providers = [m.organization.key for m in _live(me)]
        return {"organization": organization, "next": following, "offered": offered, "providers": providers,
                "rows": [{"username": a.username, "name": f"{a.first_name} {a.last_name}", "email": a.email,
                          "status": _status_in(a, organization), "last_login_at": a.last_login_at,
                          "actions": [x for x in actions if x != "view"]}
                         for a, actions in zip(rows, each)]}

    try:
        found = run(work)
    except NotFound:
        abort(404)
    if "choose" in found:
        return page("choose.html", organizations=found["choose"], target="console.user_list")
    if "denied" in found:
        return page("denied.html", 403, reasons=found["denied"])
    return page("user_list.html", q=q or "", status=status or "", statuses=STATUS_FILTERS, **found)


def _status_in(account, organization: str) -> str:
    """The account's status as it stands in the organization: a removed link reads as removed."""
    for m in account.memberships:
        if m.organization.key == organization and m.status == Status.REMOVED:
            return Status.REMOVED
    return account.status


@bp.get("/accounts")
@signed_in
def select_account():
    """The "Active Users" list's selection: to the page of the account chosen."""
    username = request.args.get("username", "").strip()
    if not username:
        return redirect(url_for("console.user_list", organization=request.args.get("organization") or None))
    return redirect(url_for("console.account", username=username,
                            organization=request.args.get("organization") or None))


def _read(ctx, me, username: str, organization: str | None):
    """What GET .../accounts/{username} decides for a person's session: a non-member of the named organization
    learns nothing; otherwise `view`, its denial recorded (R27)."""
    if organization is not None:
        refused = administration.not_member_of(ctx, me, organization)
        if refused is not None:
            administration.record_denial(ctx, me.username, "view", username, organization, refused, None)
            return refused, None
    decided = administration.decide(ctx, me.username, "view", username, organization)
    if not decided.decision.allowed:
        administration.record_denial(ctx, me.username, "view", decided.target.username, decided.organization,
                                     decided.decision, None)
        return decided.decision, None
    return decided.decision, decided


@bp.get("/accounts/<username>")
@signed_in
def account(username: str):
    asked = request.args.get("organization") or None

    def work(ctx):
        me = person(ctx)
        decision, decided = _read(ctx, me, username, asked)
        if decided is None:
            return {"denied": reason_words(decision)}
        target, organization = decided.target, decided.organization
        decider = ctx.decider()
        resource = Resource("account", target.username, organization)
        actions = decider.authorized_actions(me.username, resource)
        visible = administration.visible_organizations(ctx, me.username, target)
        history = administration.visible_organizations(ctx, me.username, target, history=True)
        link = decided.link
        held = sorted(gr.permission for gr in link.grants) if link.status != Status.REMOVED else []
        # Which functions the person may tick or untick: a grant of each one not held, a revoke of each held.
        catalog = list(ctx.profile.catalog)
        questions = [Question("revoke" if p in held else "grant", resource, {"permission": p}) for p in catalog]
        answers = decider.decide_many(me.username, questions) if {"grant", "revoke"} & set(actions) else []
        editable = {p for p, answer in zip(catalog, answers) if answer.allowed}
        return {
            "target": target, "organization": organization, "actions": actions, "held": held,
            "editable": editable, "catalog": catalog, "self": target.id == me.id,
            "password_expires_at": sessions.password_expires_at(target, ctx.profile),
            "memberships": [(m.organization.key, m.role) for m in _live(target) if m.organization.key in visible],
            "comments": administration.comments_of(ctx.session, target.id, history),
            "status": Status.REMOVED if link.status == Status.REMOVED else target.status,
            "several": len(_live(target)) > 1,
        }

    try:
        found = run(work)
    except NotFound:
        abort(404)
    except Invalid:  # the account belongs to several organizations: the person says which
        return page("denied.html", 422, reasons=["This account belongs to several organizations: open it from the "
                                                 "user list of one of them."])
    if "denied" in found:
        return page("denied.html", 403, reasons=found["denied"])
    path_actions = [a for a in found["actions"] if a in PATH_ACTIONS]
    return page("account.html", path_actions=path_actions, **found)


def _back(username: str, organization: str | None):
    if request.form.get("back") == "user-account":  # the person's own page, where the form came from
        return redirect(url_for("console.user_account"))
    return redirect(url_for("console.account", username=username, organization=organization))


def _outcome(outcome, label: str, username: str, organization: str | None, after=None):
    """A change's answer: the Confirmation, or the policy's reasons in plain words."""
    if not outcome.decision.allowed:
        for line in reason_words(outcome.decision):
            flash(line, "error")
        return _back(username, organization)
    flash(f"{label}: done for {username}.", "confirmation")
    return after or _back(username, organization)


@bp.post("/accounts/<username>")
@signed_in
def act(username: str):
    """One form, as the documents' screens have it: a comment (R25) and the button pressed. Each button is an
    admin action (POST .../accounts/{username}/{action}) or the functions' save (PUT .../permissions)."""
    organization = form_optional("organization")
    comment = request.form.get("comment") or None
    action = form_text("action")
    words = g.words
    try:
        if action in PATH_ACTIONS:
            outcome = run(lambda ctx: administration.perform(ctx, person(ctx), action, username, organization,
                                                             comment),
                          ahead=lambda ctx: administration.perform_ahead(ctx, action))
            after = redirect(url_for("console.user_list", organization=organization)) if action == "remove" else None
            return _outcome(outcome, words.action(action), username, organization, after)
        if action == "permissions":
            wanted = [p for p in request.form.getlist("permission") if p]
            outcome = run(lambda ctx: administration.set_permissions(ctx, person(ctx), username, organization,
                                                                     wanted, comment))
            return _outcome(outcome, words.save_permissions, username, organization)
        if action == "profile":
            return _update_profile(username, organization, comment)
    except DomainError as exc:
        if isinstance(exc, sessions.InvalidSession):
            raise
        flash_errors(exc)
        return _back(username, organization)
    flash("Choose one of the page's buttons.", "error")
    return _back(username, organization)


def _update_profile(username: str, organization: str | None, comment: str | None):
    fields = {k: form_text(k).strip() for k in ("first_name", "last_name", "phone", "email") if k in request.form}
    try:
        body = ProfileBody(organization=organization, comment=comment, **fields)
    except ValidationError as exc:
        flash_errors(exc)
        return _back(username, organization)
    changes = body.model_dump(exclude_unset=True, exclude={"organization", "comment"})
    outcome = run(lambda ctx: administration.update_profile(ctx, person(ctx), username, organization, changes,
                                                            comment))
    return _outcome(outcome, "Update Information", username, organization)


@bp.get("/user-account")
@signed_in
def user_account():
    """ "User Account": the person's own information, and their password."""
    def work(ctx):
        me = person(ctx)
        live = _live(me)
        organization = live[0].organization.key if live else None
        actions = (ctx.decider().authorized_actions(me.username, Resource("account", me.username, organization))
                   if organization else [])
        return {"me": me, "organization": organization, "actions": actions,
                "password_expires_at": sessions.password_expires_at(me, ctx.profile)}

    return page("user_account.html", **run(work))


@bp.post("/user-account/password")
@signed_in
def own_password():
    """PUT .../accounts/{username}/password with the console's session: this session stays, the others end."""
    def who(ctx):
        return person(ctx).username

    username = run(who)
    try:
        body = PasswordChangeBody(current_password=form_text("current_password"),
                                  new_password=form_text("new_password"))
    except ValidationError as exc:
        flash_errors(exc)
        return redirect(url_for("console.user_account"))

    def record(ctx, refused):
        sessions.record_refusal(ctx.session, ctx.profile, ctx.portal, username, refused.code, ctx.now,
                                action="change_password", client=ctx.client)

    current = token()
    try:
        run(lambda ctx: recovery.change_password(ctx, username, body.current_password, body.new_password, current),
            refused=(sessions.SignInRefused,), record_refusal=record,
            ahead=lambda ctx: recovery.change_password_ahead(ctx, username, body.current_password,
                                                             body.new_password))
    except sessions.SignInRefused:
        flash("The current password is not correct.", "error")
        return redirect(url_for("console.user_account"))
    except DomainError as exc:
        if isinstance(exc, sessions.InvalidSession):
            raise
        for line in error_words(exc):
            flash(line, "error")
        return redirect(url_for("console.user_account"))
    flash("Your password is changed.", "confirmation")
    return redirect(url_for("console.user_account"))
