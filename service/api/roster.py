"""An organization's roster (scope `manage`): subordinate accounts and links to other organizations (R13),
and the listing of the accounts the actor may see (R24)."""
from __future__ import annotations

from service.api.changes import CHANGE, account_view, acting, answer, run_change, transaction
from service.api.declare import Routes
from service.api.schemas import AccountPage, AccountsQuery, AccountView, LinkBody, OrgPath, SubordinateBody
from service.domain import administration, roster

bp = Routes("roster", __name__, url_prefix="/v1/portals/<portal>", tag="accounts")


@bp.post("/organizations/<org>/accounts", operation_id="createSubordinate",
         summary="Create a subordinate account (R13); takes the registration fields of the contract",
         scope="manage", session="required", ok=(201, AccountView), problems=CHANGE)
def create_subordinate(path: OrgPath, body: SubordinateBody):
    body.check_organization(path.org)
    details = body.model_dump(include={"username", "first_name", "last_name", "email", "phone", "password"})
    outcome = run_change(path.portal, lambda ctx, actor: roster.create_subordinate(
        ctx, actor, path.org, details, body.permissions, body.comment))
    return outcome, 201


@bp.post("/organizations/<org>/links", operation_id="linkAccount",
         summary="Link an account of another organization (R13)", scope="manage", session="required",
         ok=(201, AccountView), problems=CHANGE)
def link(path: OrgPath, body: LinkBody):
    return run_change(path.portal, lambda ctx, actor: roster.link_account(
        ctx, actor, path.org, body.username, body.comment)), 201


@bp.get("/organizations/<org>/accounts", operation_id="listAccounts",
        summary="Accounts the actor may see, filtered in the database (R24)", scope="manage", session="required",
        ok=(200, AccountPage), problems=(403,))
def list_accounts(path: OrgPath, query: AccountsQuery):
    def work(ctx):
        actor = acting(ctx)
        decision, rows, following = roster.list_accounts(
            ctx, actor, path.org, q=query.q or None, status=query.status or None, manageable=query.manageable,
            limit=query.limit, after=query.after or None)
        outcome = administration.Outcome(decision)
        # Each account as the actor may see it: only the memberships the policy's read scoping shows it.
        seen = administration.visible_organizations_of(ctx, actor.username, rows)
        outcome.view = {"accounts": [account_view(a, ctx.profile, seen[a.username_key]) for a in rows],
                        "next": following}
        return outcome

    return answer(transaction(path.portal, work))
