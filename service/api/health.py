"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

import logging

from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.api.declare import Routes
from service.api.requests import db_session, services
from service.api.schemas import Health, Readiness

log = logging.getLogger(__name__)
bp = Routes("health", __name__)


@bp.get("/healthz", operation_id="healthz", summary="Liveness: the process is up", ok=(200, Health))
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz", operation_id="readyz", summary="Readiness: database answers and policy loaded (503 with the "
        "same body when not)", ok=(200, Readiness), also={503: Readiness})
def readyz():
    """Ready when the database answers and a policy is loaded."""
    try:
        db_session().execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        log.warning("readiness: database unavailable", exc_info=True)
        database = "unavailable"
    version = services().policy.version if services().policy else None
    ready = database == "ok" and version is not None
    body = {"status": "ready" if ready else "unavailable", "policy_version": version, "database": database}
    return jsonify(body), 200 if ready else 503
