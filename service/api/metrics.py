"""GET /metrics: Prometheus text format, unauthenticated like /healthz.

Scraped on the internal network; it holds counts by bounded labels only (route
templates, status codes, portals, actions, reason codes), nothing that names a
person or an organization.
"""
from __future__ import annotations

from flask import Blueprint, Response

from service import observe

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    body, content_type = observe.exposition()
    return Response(body, content_type=content_type)
