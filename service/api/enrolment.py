"""Organizations, support staff and designated admins (scope `enroll`)."""
from __future__ import annotations

from flask import jsonify

from service.api.changes import transaction
from service.api.declare import Routes
from service.api.requests import db_session, services
from service.api.schemas import (AdminBody, AdminDesignated, AuditPage, AuditQuery, OrganizationBody,
                                 OrganizationView, OrgPath, OutboxPage, OutboxQuery, PortalPath)
from service.domain import audit, notify, organizations
from service.domain.decisions import profile_of
from service.domain.delivery import withhold_secrets

bp = Routes("enrolment", __name__, url_prefix="/v1/portals/<portal>")


@bp.post("/organizations", operation_id="createOrganization", summary="Enrol an organization with its addresses",
         scope="enroll", ok=(201, OrganizationView), problems=(409,))
def create_organization(path: PortalPath, body: OrganizationBody):
    def work(ctx):
        org = organizations.create_organization(
            ctx.session, ctx.profile, ctx.portal, key=body.key, name=body.name,
            addresses=[organizations.AddressIn(**a.model_dump()) for a in body.addresses],
            business_type=body.business_type, region=body.region, now=ctx.now, client=ctx.client)
        return organizations.describe(ctx.session, org)

    return jsonify(transaction(path.portal, work)), 201


@bp.get("/organizations/<org>", operation_id="getOrganization",
        summary="An organization, its admins and warnings (R3)", scope="enroll", ok=(200, OrganizationView))
def get_organization(path: OrgPath):
    profile_of(services().config, path.portal)
    session = db_session()
    return jsonify(organizations.describe(session, organizations.get_organization(session, path.portal, path.org)))


@bp.post("/organizations/<org>/admins", operation_id="designateAdmin",
         summary="Designate an admin (R4, R12, R13): `username` and the registration fields of the contract",
         scope="enroll", ok=(201, AdminDesignated), problems=(409,))
def designate_admin(path: OrgPath, body: AdminBody):
    org = path.org
    body.check_organization(org)

    def work(ctx):
        account = organizations.designate_admin(
            ctx.session, ctx.profile, ctx.portal, org, now=ctx.now, client=ctx.client, policy=ctx.policy,
            **body.model_dump(include={"username", "first_name", "last_name", "email", "phone", "password",
                                       "accepted_terms", "existing_account"}))
        return {"username": account.username, "organization": org, "role": "admin", "status": account.status}

    return jsonify(transaction(path.portal, work)), 201


@bp.get("/audit", operation_id="listAudit", summary="Recorded changes and decisions, newest first (R27)",
        scope="enroll", ok=(200, AuditPage))
def audit_log(path: PortalPath, query: AuditQuery):
    """R27: recorded changes and decisions, newest first; page with ?before=<id>."""
    profile_of(services().config, path.portal)
    records, following = audit.page(db_session(), path.portal, since=query.since, organization=query.organization,
                                    account=query.account, before=query.before, limit=query.limit)
    return jsonify(records=[{"id": r.id, "occurred_at": r.occurred_at.isoformat(), "actor": r.actor,
                             "client": r.client, "action": r.action, "target": r.target,
                             "organization": r.organization, "outcome": r.outcome, "reasons": r.reasons,
                             "detail": r.detail, "comment": r.comment} for r in records], next=following)


@bp.get("/outbox", operation_id="listOutbox", summary="Notifications queued for delivery, oldest first",
        scope="enroll", ok=(200, OutboxPage))
def outbox(path: PortalPath, query: OutboxQuery):
    """Notifications queued for delivery, oldest first; ?to= filters by recipient. Their secrets (activation
    codes, temporary passwords, ...) only where the calling service delivers them (`delivery.by_caller`):
    otherwise any `enroll` key could read every pending master account's code and activate it."""
    config = services().config
    profile_of(config, path.portal)
    rows = notify.queued(db_session(), path.portal, to=query.to or None, limit=query.limit)
    shown = (lambda payload: payload) if config.outbox_shows_secrets else withhold_secrets
    return jsonify(notifications=[{"channel": n.channel, "to": n.recipient, "template": n.template,
                                   "created_at": n.created_at.isoformat(), "payload": shown(n.payload),
                                   "status": n.status}
                                  for n in rows])
