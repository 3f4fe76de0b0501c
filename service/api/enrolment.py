"""Organizations, support staff and designated admins (scope `enroll`)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from service.api.requests import db_session, parse, require_scope, services
from service.api.schemas import AdminBody, OrganizationBody, SupportStaffBody
from service.domain import organizations
from service.domain.decisions import profile_of

bp = Blueprint("enrolment", __name__, url_prefix="/v1/portals/<portal>")


def _write(work):
    """Run `work(session, profile, now)` in one transaction: all of it is committed or none."""
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
            **body.model_dump(exclude={"accepted_terms"}))
        return {"username": account.username, "organization": org, "role": "admin", "status": account.status}

    return jsonify(_write(work)), 201
