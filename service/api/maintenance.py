"""Jobs and time: POST /v1/portals/{portal}/maintenance/sweep (scope `enroll`) runs the inactivity sweep now."""
from __future__ import annotations

from flask import Blueprint, g, jsonify
from pydantic import BaseModel, ConfigDict

from service.api.requests import require_scope, services
from service.domain.decisions import profile_of
from service.domain.sweep import sweep

bp = Blueprint("maintenance", __name__, url_prefix="/v1/portals/<portal>/maintenance")


class SweepCounts(BaseModel):
    """What one sweep of one portal did (R22, R23); a second run on the same day answers all zeros."""

    model_config = ConfigDict(extra="forbid")
    warned: int
    locked: int
    disabled: int
    deleted: int


@bp.post("/sweep")
@require_scope("enroll")
def run_sweep(portal):
    s = services()
    profile_of(s.config, portal)  # 404 for an unknown portal
    result = sweep(s.database, s.config, s.clock.now(), portal=portal, client=g.client)
    return jsonify(SweepCounts(**result.counts()).model_dump())
