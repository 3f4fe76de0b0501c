"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.api.requests import db_session, services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
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
