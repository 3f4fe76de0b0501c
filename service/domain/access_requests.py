"""Access requests: a member asks for a function it lacks; whoever the policy allows to grant it decides.

A request is asked only where the policy's answer to the function itself is `permission_not_granted`
and nothing else (a member, in good standing, without the grant). The accounts the remedy names
(service/domain/remedies.py: delegates, then admins of the organization the policy allows to grant
it) are told (outbox, `access_requested`); when it names nobody, the portal's support staff are.
The requester learns the request's id and status, never who was told.

Deciding is the grant itself: approving runs `administration.set_permissions` with the function added
(the same decision, audit, R3 and reach rules as `PUT .../permissions`); declining is allowed to
exactly those who could approve (the same `grant` question), is recorded and tells the requester.
Listing shows the open requests the session's actor may decide, by the same question.

At most one open request per member, organization and function: a unique partial index holds it
under parallel requests (the loser is 409 `request_open`). A request open past the portal's
`access_request_days` is closed as expired when next touched (or by the daily sweep), audited, and its
requester told, as a decided one is.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.domain import administration, audit, remedies
from service.domain.administration import Outcome
from service.domain.decisions import Decider, Question, Resource
from service.domain.errors import Conflict, Invalid, NotFound
from service.domain.work import Context
from service.kernel.usernames import username_key
from service.policy import Decision
from service.storage.models import AccessRequest, Account, Organization

OPEN, APPROVED, DECLINED, EXPIRED = "open", "approved", "declined", "expired"
NOTE_MAX = 500
LISTED_MAX = 500


def _organization(ctx: Context, org_key: str) -> Organization:
    org = ctx.session.scalar(select(Organization).where(Organization.portal_id == ctx.portal,
                                                        Organization.key == org_key))
    if org is None:
        raise NotFound(f"no organization {org_key!r} in portal {ctx.portal!r}")
    return org


def view(request: AccessRequest) -> dict:
    return {"id": request.id, "username": request.account.username, "organization": request.organization.key,
            "permission": request.permission, "note": request.note, "status": request.status,
            "created_at": request.created_at.isoformat(), "expires_at": request.expires_at.isoformat()}


def expiry_email(request_id: int, organization: str, permission: str) -> dict:
    """What the requester is told when a request closes undecided: which request, and that it may be asked again.
    The same payload from the sweep (service/domain/sweep.py) and from a request found expired when touched."""
    return {"request": request_id, "organization": organization, "permission": permission}


def _expire(ctx: Context, stale: list[AccessRequest]) -> None:
    for request in stale:
        request.status, request.decided_at = EXPIRED, request.expires_at
        audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="access_request_expired", outcome="done",
                     target=request.account.username, organization=request.organization.key,
                     detail={"id": request.id, "permission": request.permission})
        ctx.notifier.email(ctx.session, ctx.portal, request.account.email, "access_request_expired",
                           expiry_email(request.id, request.organization.key, request.permission), ctx.now)
    ctx.session.flush()


def _open_query(ctx: Context, org: Organization):
    return (select(AccessRequest).where(AccessRequest.organization_id == org.id, AccessRequest.status == OPEN)
            .order_by(AccessRequest.id))


def _askable(decision: Decision) -> bool:
    """A function may be asked for where the policy's only objection is that it was not granted."""
    return not decision.allowed and decision.reasons == ("permission_not_granted",)


def _grant_remedy(decider: Decider, permission: str, decision: Decision, candidates: dict | None = None) -> dict | None:
    """The remedy of the denial that a grant makes, as `POST /v1/authorize` with `"remedies": true` answers it to
    the asker (read-scoped): whom a request tells, or None when the policy states no change that grants it or
    nobody (no account of the organization, nor support staff) may make it: then there is no one to ask."""
    found = [r for r in remedies.for_decision(decider, permission, decision, candidates)
             if r["code"] == "permission_not_granted" and (r["by"] or r["support"])]
    return found[0] if found else None


def requestable(ctx: Context, actor: Account, org_key: str) -> tuple[list[str], dict[str, AccessRequest]]:
    """The functions the actor may ask for in the organization (those `request_access` would accept: the
    policy's answer to each is `permission_not_granted` alone, and its remedy names someone who may grant it,
    or support staff), in catalog order, and the actor's requests still open there by function."""
    org = _organization(ctx, org_key)
    catalog = list(ctx.profile.catalog)
    resource = Resource("organization", org_key)
    decider = ctx.decider()
    decisions = decider.decide_many(actor.username, [Question(p, resource) for p in catalog])
    candidates: dict = {}  # the organization's candidates, read once for every function
    offered = [p for p, d in zip(catalog, decisions)
               if _askable(d) and _grant_remedy(decider, p, d, candidates) is not None]
    mine = ctx.session.scalars(_open_query(ctx, org).where(AccessRequest.account_id == actor.id,
                                                          AccessRequest.expires_at > ctx.now))
    return offered, {r.permission: r for r in mine}


def remedy_of(ctx: Context, actor: Account, org_key: str, permission: str) -> dict | None:
    """The remedy of the actor's denial of `permission` there, exactly as `POST /v1/authorize` with
    `"remedies": true` answers it to them (read-scoped): whom a request for it tells, as far as the
    requester may learn it (the accounts named, or only that support staff are)."""
    decider = ctx.decider()
    decision = decider.decide(actor.username, Question(permission, Resource("organization", org_key)))
    return _grant_remedy(decider, permission, decision)


def request_access(ctx: Context, actor: Account, org_key: str, permission: str,
                   note: str | None) -> tuple[Outcome, AccessRequest | None]:
    """Open a request for `permission` in the organization, and tell whoever may grant it."""
    if permission not in ctx.profile.permissions:
        raise Invalid(f"{permission!r} is not a function of this portal", [{
            "field": "permission", "code": "unknown_permission",
            "message": f"one of {', '.join(ctx.profile.permissions)}"}])
    if note is not None and len(note) > NOTE_MAX:
        raise Invalid("the note is too long", [{"field": "note", "code": "too_long",
                                                "message": f"at most {NOTE_MAX} characters"}])
    org = _organization(ctx, org_key)
    decider = ctx.decider()
    decision = decider.decide(actor.username, Question(permission, Resource("organization", org_key)))
    if decision.allowed:
        raise Conflict(f"{actor.username!r} already holds {permission!r} in {org_key!r}", "already_held")
    remedy = _grant_remedy(decider, permission, decision) if _askable(decision) else None
    if remedy is None:  # refused by more than the missing grant, or nobody may grant it: no one to ask
        return administration.record_denial(ctx, actor.username, "access_request", actor.username, org_key,
                                            decision, None), None
    stale = list(ctx.session.scalars(_open_query(ctx, org).where(
        AccessRequest.account_id == actor.id, AccessRequest.permission == permission,
        AccessRequest.expires_at <= ctx.now)))
    _expire(ctx, stale)
    request = AccessRequest(portal_id=ctx.portal, account_id=actor.id, organization_id=org.id,
                            permission=permission, note=note, status=OPEN, created_at=ctx.now,
                            expires_at=ctx.now + timedelta(days=ctx.profile.access_request_days))
    try:
        with ctx.session.begin_nested():  # the unique partial index: one open request, even in a race
            ctx.session.add(request)
    except IntegrityError:
        raise Conflict(f"{actor.username!r} already has an open request for {permission!r} in {org_key!r}",
                       "request_open") from None
    told = _tell_deciders(ctx, request, actor, org_key, remedy["by"])
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action="access_request", outcome="done",
                 actor=actor.username, client=ctx.client, target=actor.username, organization=org_key,
                 detail={"id": request.id, "permission": permission, "told": told}, comment=note)
    return Outcome(Decision(True, (), decision.policy_version), None, org_key), request


def _tell_deciders(ctx: Context, request: AccessRequest, actor: Account, org_key: str, by: list[str]) -> list[str]:
    """Email the accounts the remedy names; when it names nobody, the portal's active support staff."""
    if by:
        order = {username_key(u): i for i, u in enumerate(by)}
        told = sorted(ctx.session.scalars(select(Account).where(
            Account.portal_id == ctx.portal, Account.username_key.in_(list(order)))),
            key=lambda a: order[a.username_key])
    else:
        told = list(ctx.session.scalars(select(Account).where(
            Account.portal_id == ctx.portal, Account.is_support.is_(True), Account.status == "active")
            .order_by(Account.username_key)))
    for account in told:
        ctx.notifier.email(ctx.session, ctx.portal, account.email, "access_requested", {
            "request": request.id, "requester": actor.username, "organization": org_key,
            "permission": request.permission, "note": request.note,
            "expires_at": request.expires_at.isoformat()}, ctx.now)
    return [a.username for a in told]


def _grant_question(request: AccessRequest) -> Question:
    return Question("grant", Resource("account", request.account.username, request.organization.key),
                    {"permission": request.permission})


def list_open(ctx: Context, actor: Account, org_key: str) -> tuple[Decision, list[AccessRequest]]:
    """The organization's open requests the actor may decide (the policy's `grant` of each), oldest first."""
    org = _organization(ctx, org_key)
    refused = administration.not_member_of(ctx, actor, org_key)
    if refused is not None:
        return refused, []
    found = list(ctx.session.scalars(_open_query(ctx, org).limit(LISTED_MAX)))
    _expire(ctx, [r for r in found if r.expires_at <= ctx.now])
    found = [r for r in found if r.status == OPEN]
    decisions = ctx.decider().decide_many(actor.username, [_grant_question(r) for r in found]) if found else []
    return Decision(True, (), ctx.policy.version), [r for r, d in zip(found, decisions) if d.allowed]


def _decidable(ctx: Context, actor: Account, org_key: str, request_id: int, action: str,
               comment: str | None) -> AccessRequest | Outcome:
    """The request, locked, once the actor's authority over it is decided: a denial (audited, as `action`) when
    the actor may not decide it, else the request; 409 `request_closed` when it is no longer open.

    Nothing about a request is told before the decision: an outsider of the organization is refused as
    `not_member` whether or not the request exists, and whether it is still open is told only to those who
    could decide it (a 404 for an unknown request is the organization's members' to see, as its list is)."""
    refused = administration.not_member_of(ctx, actor, org_key)
    if refused is not None:
        return administration.record_denial(ctx, actor.username, action, None, org_key, refused, comment)
    request = ctx.session.scalar(
        select(AccessRequest).join(Organization, Organization.id == AccessRequest.organization_id)
        .where(AccessRequest.id == request_id, AccessRequest.portal_id == ctx.portal, Organization.key == org_key)
        .with_for_update(of=AccessRequest))
    if request is None:
        raise NotFound(f"no access request {request_id} in organization {org_key!r}")
    decision = ctx.decider().decide(actor.username, _grant_question(request))
    if not decision.allowed:
        return administration.record_denial(ctx, actor.username, action, request.account.username, org_key,
                                            decision, comment)
    if request.status == OPEN and request.expires_at <= ctx.now:
        raise Conflict(f"access request {request_id} has expired", "request_closed")
    if request.status != OPEN:
        raise Conflict(f"access request {request_id} is {request.status}", "request_closed")
    return request


def _close(ctx: Context, actor: Account, request: AccessRequest, status: str, comment: str | None) -> None:
    request.status, request.decided_at, request.decided_by = status, ctx.now, actor.username
    audit.record(ctx.session, portal=ctx.portal, now=ctx.now, action=f"access_request_{status}", outcome="done",
                 actor=actor.username, client=ctx.client, target=request.account.username,
                 organization=request.organization.key, detail={"id": request.id, "permission": request.permission},
                 comment=comment)
    ctx.notifier.email(ctx.session, ctx.portal, request.account.email, f"access_request_{status}", {
        "request": request.id, "organization": request.organization.key, "permission": request.permission,
        "decided_by": actor.username}, ctx.now)
    ctx.session.flush()


def approve(ctx: Context, actor: Account, org_key: str, request_id: int, comment: str | None) -> Outcome:
    """The grant itself: the requester's functions, as read under the lock, with this one added, decided and
    applied as `PUT .../permissions` is; the request closes only when the grant is made.

    A request stands only while its requester could still make it (its own answer to the function is still
    `permission_not_granted` alone, asked again on the facts read under the lock): one approved after the requester was disabled, locked, removed from the
    organization, or upgraded to admin grants nothing (409 `target_status`, or `already_held` once the
    function is held), so a grant never lands on an account or link that could not have asked for it, to
    resurface when it is enabled again or downgraded."""
    request = _decidable(ctx, actor, org_key, request_id, "access_request_approved", comment)
    if isinstance(request, Outcome):
        return request
    requester, permission = request.account.username, request.permission

    def still_askable(_decided) -> None:
        standing = ctx.decider().decide(requester, Question(permission, Resource("organization", org_key)))
        if standing.allowed:
            raise Conflict(f"{requester!r} already holds {permission!r} in {org_key!r}", "already_held")
        if not _askable(standing):
            raise Conflict(f"{requester!r} could no longer ask for {permission!r} in {org_key!r} "
                           f"({', '.join(standing.reasons)}); the request is left open", "target_status")

    outcome = administration.change_permissions(ctx, actor, requester, org_key,
                                                lambda held: sorted({*held, permission}), comment, still_askable)
    if outcome.decision.allowed:
        _close(ctx, actor, request, APPROVED, comment)
    return outcome


def decline(ctx: Context, actor: Account, org_key: str, request_id: int, comment: str | None) -> Outcome:
    """Recorded and told to the requester; only by those who could approve it (the same `grant` question)."""
    administration.check_comment(comment, ctx.profile)
    request = _decidable(ctx, actor, org_key, request_id, "access_request_declined", comment)
    if isinstance(request, Outcome):
        return request
    _close(ctx, actor, request, DECLINED, comment)
    return Outcome(Decision(True, (), ctx.policy.version), None, org_key)
