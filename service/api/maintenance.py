"""Jobs and time: POST /v1/portals/{portal}/maintenance/sweep (scope `enroll`) runs the inactivity sweep now."""
from __future__ import annotations

from flask import jsonify

from service.api.declare import Routes
from service.api.requests import client_name, services
from service.api.schemas import PortalPath, SweepCounts
from service.domain.decisions import profile_of
from service.domain.sweep import sweep

bp = Routes("maintenance", __name__, url_prefix="/v1/portals/<portal>/maintenance")


@bp.post("/sweep", operation_id="runSweep", summary="Run the inactivity sweep now (R22, R23)", scope="enroll",
         ok=(200, SweepCounts))
def run_sweep(path: PortalPath):
    portal = path.portal
    s = services()
    profile_of(s.config, portal)  # 404 for an unknown portal
    result = sweep(s.database, s.config, s.clock.now(), portal=portal, client=client_name())
    return jsonify(SweepCounts(**result.counts()).model_dump())
