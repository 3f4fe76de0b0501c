"""Organizations, support staff and designated admins (scope `enroll`)."""
from __future__ import annotations

from flask import g, jsonify
from sqlalchemy import or_, select

from service.api.declare import Routes
from service.api.requests import db_session, services
from service.api.schemas import (AdminBody, AdminDesignated, AuditPage, AuditQuery, OrganizationBody,
                                 OrganizationView, OrgPath, OutboxPage, OutboxQuery, PortalPath)
from service.domain import organizations
from service.domain.decisions import profile_of
from service.storage.models import AuditRecord, Notification

bp = Routes("enrolment", __name__, url_prefix="/v1/portals/<portal>")


def _write(work):
    """Run `work(session, now)` in one transaction: all of it is committed or none."""
    s = services()
    now = s.clock.now()
    with s.database.transaction() as session:
        return work(session, now)


@bp.post("/organizations", operation_id="createOrganization", summary="Enrol an organization with its addresses",
         scope="enroll", ok=(201, OrganizationView), problems=(409,))
def create_organization(path: PortalPath, body: OrganizationBody):
    portal = path.portal
    profile = profile_of(services().config, portal)

    def work(session, now):
        org = organizations.create_organization(
            session, profile, portal, key=body.key, name=body.name,
            addresses=[organizations.AddressIn(**a.model_dump()) for a in body.addresses],
            business_type=body.business_type, region=body.region, now=now, client=g.client)
        return organizations.describe(session, org)

    return jsonify(_write(work)), 201


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
    portal, org = path.portal, path.org
    profile = profile_of(services().config, portal)
    body.check_organization(org)

    def work(session, now):
        account = organizations.designate_admin(
            session, profile, portal, org, now=now, client=g.client,
            **body.model_dump(include={"username", "first_name", "last_name", "email", "phone", "password",
                                       "accepted_terms", "existing_account"}))
        return {"username": account.username, "organization": org, "role": "admin", "status": account.status}

    return jsonify(_write(work)), 201


@bp.get("/audit", operation_id="listAudit", summary="Recorded changes and decisions, newest first (R27)",
        scope="enroll", ok=(200, AuditPage))
def audit_log(path: PortalPath, query: AuditQuery):
    """R27: recorded changes and decisions, newest first; page with ?before=<id>."""
    portal = path.portal
    profile_of(services().config, portal)
    limit = query.limit
    statement = select(AuditRecord).where(AuditRecord.portal_id == portal)
    if query.since is not None:
        statement = statement.where(AuditRecord.occurred_at >= query.since)
    if query.organization:
        statement = statement.where(AuditRecord.organization == query.organization)
    if query.account:
        statement = statement.where(or_(AuditRecord.target == query.account, AuditRecord.actor == query.account))
    if query.before:
        statement = statement.where(AuditRecord.id < query.before)
    rows = list(db_session().scalars(statement.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    records = [{"id": r.id, "occurred_at": r.occurred_at.isoformat(), "actor": r.actor, "client": r.client,
                "action": r.action, "target": r.target, "organization": r.organization, "outcome": r.outcome,
                "reasons": r.reasons, "detail": r.detail, "comment": r.comment} for r in rows[:limit]]
    return jsonify(records=records, next=rows[limit - 1].id if len(rows) > limit else None)


@bp.get("/outbox", operation_id="listOutbox", summary="Notifications queued for delivery, oldest first",
        scope="enroll", ok=(200, OutboxPage))
def outbox(path: PortalPath, query: OutboxQuery):
    """Notifications queued for delivery, oldest first; ?to= filters by recipient."""
    portal = path.portal
    profile_of(services().config, portal)
    statement = select(Notification).where(Notification.portal_id == portal)
    if query.to:
        statement = statement.where(Notification.recipient == query.to)
    rows = db_session().scalars(statement.order_by(Notification.id).limit(query.limit))
    return jsonify(notifications=[{"channel": n.channel, "to": n.recipient, "template": n.template,
                                   "created_at": n.created_at.isoformat(), "payload": n.payload, "status": n.status}
                                  for n in rows])
