"""Support staff under the operators' control (scope `enroll`; R1, R4, R27; issues 17 and 18).

GET    /v1/portals/{portal}/support-staff[?status=]          list them
POST   /v1/portals/{portal}/support-staff/{username}/disable  sessions end at once
POST   /v1/portals/{portal}/support-staff/{username}/enable
DELETE /v1/portals/{portal}/support-staff/{username}          soft delete; sessions end at once

Views only parse, call service.domain.support in one transaction and shape the
answer; every change is audited with the calling client (refusals too).
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict

from service.api.problems import Problem
from service.api.requests import db_session, require_scope, services
from service.domain import audit, support
from service.domain.decisions import profile_of
from service.domain.errors import Conflict

bp = Blueprint("support", __name__, url_prefix="/v1/portals/<portal>/support-staff")

STATUSES = ("active", "locked", "disabled", "removed")


class SupportStaffView(BaseModel):
    """A support account as operators see it; `created_by_client` names the client that created it."""

    model_config = ConfigDict(extra="forbid")
    username: str
    first_name: str
    last_name: str
    email: str
    status: Literal["active", "locked", "disabled", "removed", "pending_activation", "pending_approval",
                    "unverified"]
    created_at: str
    created_by_client: str | None
    last_login_at: str | None
    last_activity_at: str | None


class SupportStaffList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    support_staff: list[SupportStaffView]


def _view(account) -> dict:
    return SupportStaffView(**support.view(account)).model_dump()


@bp.get("")
@require_scope("enroll")
def list_support_staff(portal):
    profile_of(services().config, portal)  # 404 for an unknown portal
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise Problem(422, "validation_error", "Invalid request", f"status must be one of {', '.join(STATUSES)}",
                      errors=[{"field": "status", "code": "invalid", "message": f"one of {', '.join(STATUSES)}"}])
    accounts = support.list_support_staff(db_session(), portal, status)
    return jsonify(SupportStaffList(support_staff=[_view(a) for a in accounts]).model_dump())


def _change(portal: str, username: str, operation: str):
    s = services()
    profile_of(s.config, portal)
    now = s.clock.now()
    try:
        with s.database.transaction() as session:
            return _view(support.change(session, portal, username, operation, now=now, client=g.client))
    except Conflict as exc:
        with s.database.transaction() as session:  # R27: the refusal is recorded, the change is not made
            audit.record(session, portal=portal, now=now, action=f"support_{operation}", outcome="refused",
                         client=g.client, target=username, reasons=[exc.code])
        raise


@bp.post("/<username>/disable")
@require_scope("enroll")
def disable(portal, username):
    return jsonify(_change(portal, username, "disable"))


@bp.post("/<username>/enable")
@require_scope("enroll")
def enable(portal, username):
    return jsonify(_change(portal, username, "enable"))


@bp.delete("/<username>")
@require_scope("enroll")
def remove(portal, username):
    return jsonify(_change(portal, username, "remove"))
