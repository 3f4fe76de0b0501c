"""Access requests (scope `manage`, a person's session): ask for a function, list, approve, decline."""
from __future__ import annotations

from flask import jsonify

from service.api.changes import CHANGE, acting, answer, run_change, transaction
from service.api.declare import Routes
from service.api.schemas import (AccessDecisionBody, AccessRequestBody, AccessRequestCreated, AccessRequestDeclined,
                                 AccessRequestPage, AccessRequestPath, AccountView, OrgPath)
from service.domain import access_requests, administration

bp = Routes("access_requests", __name__, url_prefix="/v1/portals/<portal>", tag="accounts")


@bp.post("/organizations/<org>/access-requests", operation_id="requestAccess",
         summary="Ask for a function the session's account lacks; whoever may grant it is told",
         scope="manage", session="required", ok=(201, AccessRequestCreated), problems=CHANGE)
def request_access(path: OrgPath, body: AccessRequestBody):
    def work(ctx):
        outcome, request = access_requests.request_access(ctx, acting(ctx), path.org, body.permission, body.note)
        outcome.view = None if request is None else {"id": request.id, "status": request.status}
        return outcome

    return answer(transaction(path.portal, work)), 201


@bp.get("/organizations/<org>/access-requests", operation_id="listAccessRequests",
        summary="The open access requests the session's account may decide", scope="manage", session="required",
        ok=(200, AccessRequestPage), problems=(403,))
def list_access_requests(path: OrgPath):
    def work(ctx):
        decision, found = access_requests.list_open(ctx, acting(ctx), path.org)
        outcome = administration.Outcome(decision)
        outcome.view = {"requests": [access_requests.view(r) for r in found]}
        return outcome

    return answer(transaction(path.portal, work))


@bp.post("/organizations/<org>/access-requests/<request_id>/approve", operation_id="approveAccessRequest",
         summary="Approve: the grant itself (as PUT .../permissions); answers the requester's account",
         scope="manage", session="required", ok=(200, AccountView), problems=CHANGE, body_optional=True)
def approve(path: AccessRequestPath, body: AccessDecisionBody):
    return run_change(path.portal, lambda ctx, actor: access_requests.approve(
        ctx, actor, path.org, path.request_id, body.comment))


@bp.post("/organizations/<org>/access-requests/<request_id>/decline", operation_id="declineAccessRequest",
         summary="Decline: recorded and told to the requester", scope="manage", session="required",
         ok=(200, AccessRequestDeclined), problems=CHANGE, body_optional=True)
def decline(path: AccessRequestPath, body: AccessDecisionBody):
    def work(ctx):
        outcome = access_requests.decline(ctx, acting(ctx), path.org, path.request_id, body.comment)
        outcome.view = {"id": path.request_id, "status": access_requests.DECLINED}
        return outcome

    return answer(transaction(path.portal, work))
