"""Support staff under the operators' control (scope `enroll`; R1, R4, R27).

GET    /v1/portals/{portal}/support-staff[?status=]          list them
POST   /v1/portals/{portal}/support-staff/{username}/disable  sessions end at once
POST   /v1/portals/{portal}/support-staff/{username}/enable
DELETE /v1/portals/{portal}/support-staff/{username}          soft delete; sessions end at once

Views only parse, call service.domain.support in one transaction and shape the
answer; every change is audited with the calling client (refusals too).
"""
from __future__ import annotations

from typing import Literal

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from service.api.changes import transaction
from service.api.declare import Routes
from service.api.requests import db_session, services
from service.api.schemas import AccountCreated, AccountPath, PortalPath, SupportStaffBody, _Query
from service.domain import audit, organizations, support
from service.domain.decisions import profile_of
from service.domain.errors import Conflict

bp = Routes("support", __name__, url_prefix="/v1/portals/<portal>/support-staff")

STATUSES = ("active", "locked", "disabled", "removed")


class SupportStaffQuery(_Query):
    status: Literal["active", "locked", "disabled", "removed"] | None = Field(
        default=None, description="only support accounts in this status; every status when absent")


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


@bp.post("", operation_id="createSupportStaff", summary="Create a support staff account",
         scope="enroll", ok=(201, AccountCreated), problems=(409,))
def create_support_staff(path: PortalPath, body: SupportStaffBody):
    def work(ctx):
        account = organizations.create_support_staff(ctx.session, ctx.profile, ctx.portal, now=ctx.now,
                                                     client=ctx.client, **body.model_dump())
        return {"username": account.username, "status": account.status, "support": True}

    return jsonify(transaction(path.portal, work)), 201


@bp.get("", operation_id="listSupportStaff",
        summary="Support staff of the portal, every status unless ?status= (active, locked, disabled, removed)",
        scope="enroll", ok=(200, SupportStaffList))
def list_support_staff(path: PortalPath, query: SupportStaffQuery):
    profile_of(services().config, path.portal)  # 404 for an unknown portal
    accounts = support.list_support_staff(db_session(), path.portal, query.status)
    return jsonify(SupportStaffList(support_staff=[_view(a) for a in accounts]).model_dump())


def _change(portal: str, username: str, operation: str):
    def record(ctx, refused):  # R27: the refusal is recorded, the change is not made
        audit.record(ctx.session, portal=portal, now=ctx.now, action=f"support_{operation}", outcome="refused",
                     client=ctx.client, target=username, reasons=[refused.code])

    return transaction(portal, lambda ctx: _view(support.change(ctx.session, portal, username, operation,
                                                                now=ctx.now, client=ctx.client,
                                                                policy=ctx.policy)),
                       refused=(Conflict,), record_refusal=record)


@bp.post("/<username>/disable", operation_id="disableSupportStaff",
         summary="Disable a support account; its sessions end at once (audited with the client)", scope="enroll",
         ok=(200, SupportStaffView), problems=(409,))
def disable(path: AccountPath):
    return jsonify(_change(path.portal, path.username, "disable"))


@bp.post("/<username>/enable", operation_id="enableSupportStaff",
         summary="Enable a disabled or locked support account (audited with the client)", scope="enroll",
         ok=(200, SupportStaffView), problems=(409,))
def enable(path: AccountPath):
    return jsonify(_change(path.portal, path.username, "enable"))


@bp.delete("/<username>", operation_id="removeSupportStaff",
           summary="Remove a support account (soft delete; sessions end at once; the last one may go, R4)",
           scope="enroll", ok=(200, SupportStaffView))
def remove(path: AccountPath):
    return jsonify(_change(path.portal, path.username, "remove"))
