"""Organizations, support staff and designated admins (scope `enroll`)."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, g, jsonify, request
from sqlalchemy import or_, select

from service.api.problems import Problem
from service.api.requests import db_session, parse, require_scope, services
from service.api.schemas import AdminBody, OrganizationBody, SupportStaffBody
from service.domain import organizations
from service.domain.decisions import profile_of
from service.storage.models import AuditRecord, Notification

bp = Blueprint("enrolment", __name__, url_prefix="/v1/portals/<portal>")


def _write(work):
    """Run `work(session, now)` in one transaction: all of it is committed or none."""
    s = services()
    now = s.clock.now()
    with s.database.transaction() as session:
        return work(session, now)


@bp.post("/organizations")
@require_scope("enroll")
def create_organization(portal):
    profile = profile_of(services().config, portal)
    body = parse(OrganizationBody)

    def work(session, now):
        org = organizations.create_organization(
            session, profile, portal, key=body.key, name=body.name,
            addresses=[organizations.AddressIn(**a.model_dump()) for a in body.addresses],
            business_type=body.business_type, region=body.region, now=now, client=g.client)
        return organizations.describe(session, org)

    return jsonify(_write(work)), 201


@bp.get("/organizations/<org>")
@require_scope("enroll")
def get_organization(portal, org):
    profile_of(services().config, portal)
    session = db_session()
    return jsonify(organizations.describe(session, organizations.get_organization(session, portal, org)))


@bp.post("/support-staff")
@require_scope("enroll")
def create_support_staff(portal):
    profile = profile_of(services().config, portal)
    body = parse(SupportStaffBody)

    def work(session, now):
        account = organizations.create_support_staff(session, profile, portal, now=now, client=g.client,
                                                     **body.model_dump())
        return {"username": account.username, "status": account.status, "support": True}

    return jsonify(_write(work)), 201


@bp.post("/organizations/<org>/admins")
@require_scope("enroll")
def designate_admin(portal, org):
    profile = profile_of(services().config, portal)
    body = parse(AdminBody)
    if body.accepted_terms is False:
        from service.domain.errors import Invalid

        raise Invalid("the terms of use must be accepted (R7)",
                      [{"field": "accepted_terms", "code": "terms_not_accepted", "message": "must be true"}])

    def work(session, now):
        account = organizations.designate_admin(
            session, profile, portal, org, now=now, client=g.client,
            **body.model_dump())
        return {"username": account.username, "organization": org, "role": "admin", "status": account.status}

    return jsonify(_write(work)), 201


def _int_arg(name: str, default: int | None, low: int = 1, high: int = 500) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise Problem(422, "validation_error", "Invalid request", f"{name} must be a whole number {low}..{high}",
                      errors=[{"field": name, "code": "invalid", "message": f"a whole number {low}..{high}"}])
    return value


@bp.get("/audit")
@require_scope("enroll")
def audit_log(portal):
    """R27: recorded changes and decisions, newest first; page with ?before=<id>."""
    profile_of(services().config, portal)
    limit = _int_arg("limit", 100)
    before = _int_arg("before", None, 1, 2**62)
    since = request.args.get("since")
    query = select(AuditRecord).where(AuditRecord.portal_id == portal)
    if since:
        try:
            moment = datetime.fromisoformat(since)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise Problem(422, "validation_error", "Invalid request", "since must be an ISO 8601 instant with a zone",
                          errors=[{"field": "since", "code": "invalid", "message": "e.g. 2026-01-01T00:00:00+00:00"}])
        query = query.where(AuditRecord.occurred_at >= moment)
    if request.args.get("organization"):
        query = query.where(AuditRecord.organization == request.args["organization"])
    if request.args.get("account"):
        who = request.args["account"]
        query = query.where(or_(AuditRecord.target == who, AuditRecord.actor == who))
    if before:
        query = query.where(AuditRecord.id < before)
    rows = list(db_session().scalars(query.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    records = [{"id": r.id, "occurred_at": r.occurred_at.isoformat(), "actor": r.actor, "client": r.client,
                "action": r.action, "target": r.target, "organization": r.organization, "outcome": r.outcome,
                "reasons": r.reasons, "detail": r.detail, "comment": r.comment} for r in rows[:limit]]
    return jsonify(records=records, next=rows[limit - 1].id if len(rows) > limit else None)


@bp.get("/outbox")
@require_scope("enroll")
def outbox(portal):
    """Notifications queued for delivery, oldest first; ?to= filters by recipient."""
    profile_of(services().config, portal)
    query = select(Notification).where(Notification.portal_id == portal)
    if request.args.get("to"):
        query = query.where(Notification.recipient == request.args["to"])
    rows = db_session().scalars(query.order_by(Notification.id).limit(_int_arg("limit", 500, 1, 5000)))
    return jsonify(notifications=[{"channel": n.channel, "to": n.recipient, "template": n.template,
                                   "created_at": n.created_at.isoformat(), "payload": n.payload, "status": n.status}
                                  for n in rows])
