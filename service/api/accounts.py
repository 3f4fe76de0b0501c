"""Accounts (scope `manage`): reads (R26), profile and email changes (R21), admin actions (R5),
granted functions (R14, R15) and the comment history (R25), each decided by the policy."""
from __future__ import annotations

from flask import request

from service.api.changes import CHANGE, account_view, acting, answer, iso, run_change, transaction
from service.api.declare import Routes
from service.api.problems import Problem
from service.api.schemas import (AccountPath, AccountQuery, AccountView, ActionBody, ActionPath, CommentView,
                                 PermissionsBody, ProfileBody)
from service.domain import administration

bp = Routes("accounts", __name__, url_prefix="/v1/portals/<portal>")

ACTION_PATHS = {a.replace("_", "-"): a for a in administration.ACTIONS}


def _read_account(portal: str, username: str, organization: str | None, render):
    """A read about one account. With a session, decided as `view` (denied reads audited); without one,
    the calling service's `manage` key is the authority (a portal's back office, R26). No lock taken."""

    def work(ctx):
        if not request.headers.get("X-Session-Token"):
            outcome = administration.service_read(ctx, username)
            outcome.view = render(ctx, outcome.account, None)  # the calling service's read: every organization
            return outcome
        actor = acting(ctx)
        if organization is not None:
            # A non-member of the named organization learns nothing, not even whether the account is in it
            # (no enumeration): the same denial whether the account is there, elsewhere or nowhere.
            decision = administration.not_member_of(ctx, actor, organization)
            if decision is not None:
                return administration.record_denial(ctx, actor.username, "view", username, organization, decision,
                                                    None)
        decided = administration.decide(ctx, actor.username, "view", username, organization)
        target = decided.target
        if not decided.decision.allowed:
            return administration.record_denial(ctx, actor.username, "view", target.username,
                                                decided.organization, decided.decision, None)
        outcome = administration.Outcome(decided.decision, target)
        outcome.view = render(ctx, target, actor.username)
        return outcome

    return answer(transaction(portal, work))


@bp.get("/accounts/<username>", operation_id="getAccount",
        summary="An account: status, last sign-in, memberships (R26); a person's session must be allowed `view`",
        scope="manage", session="optional", ok=(200, AccountView), problems=(403,))
def get_account(path: AccountPath, query: AccountQuery):
    def render(ctx, target, reader):
        visible = None if reader is None else administration.visible_organizations(ctx, reader, target)
        return account_view(target, ctx.profile, visible)

    return _read_account(path.portal, path.username, query.organization, render)


@bp.patch("/accounts/<username>", operation_id="updateAccount", summary="Update profile fields or email (R21)",
          scope="manage", session="required", ok=(200, AccountView), problems=CHANGE)
def patch_account(path: AccountPath, body: ProfileBody):
    changes = body.model_dump(exclude_unset=True, exclude={"organization", "comment"})
    return run_change(path.portal, lambda ctx, actor: administration.update_profile(
        ctx, actor, path.username, body.organization, changes, body.comment))


@bp.post("/accounts/<username>/<path_action>", operation_id="actOnAccount",
         summary="An admin action: approve, enable, disable, remove, upgrade, downgrade, unlock, "
                 "send-password-recovery, send-registration-email (R5); the body may be empty",
         scope="manage", session="required", ok=(200, AccountView), problems=CHANGE, body_optional=True)
def act(path: ActionPath, body: ActionBody):
    action = ACTION_PATHS.get(path.path_action)
    if action is None:
        raise Problem(404, "not_found", "Not found",
                      f"unknown action {path.path_action!r}; one of {', '.join(ACTION_PATHS)}")
    return run_change(path.portal, lambda ctx, actor: administration.perform(
        ctx, actor, action, path.username, body.organization, body.comment),
        ahead=lambda ctx: administration.perform_ahead(ctx, action))


@bp.put("/accounts/<username>/permissions", operation_id="setPermissions",
        summary="Replace granted functions (R14, R15)", scope="manage", session="required", ok=(200, AccountView),
        problems=CHANGE)
def put_permissions(path: AccountPath, body: PermissionsBody):
    return run_change(path.portal, lambda ctx, actor: administration.set_permissions(
        ctx, actor, path.username, body.organization, body.permissions, body.comment))


@bp.get("/accounts/<username>/comments", operation_id="listComments",
        summary="Comment history, oldest first (R25); a person's session must be allowed `view`", scope="manage",
        session="optional", ok=(200, list[CommentView]), problems=(403,))
def comments(path: AccountPath, query: AccountQuery):
    """R25: the history, oldest first, as plain JSON strings (never markup)."""

    def render(ctx, target, reader):
        # The comments written in an organization belong to its membership of the account, removed ones too.
        visible = None if reader is None else administration.visible_organizations(ctx, reader, target, history=True)
        return [{"action": c.action, "actor": c.actor, "organization": c.organization, "date": iso(c.created_at),
                 "text": c.text} for c in administration.comments_of(ctx.session, target.id, visible)]

    return _read_account(path.portal, path.username, query.organization, render)


