"""GET /metrics: Prometheus text format, unauthenticated like /healthz.

Scraped on the internal network; it holds counts by bounded labels only (route
templates, status codes, portals, actions, reason codes), nothing that names a
person or an organization.
"""
from __future__ import annotations

from flask import Response

from service import observe
from service.api.declare import Routes

bp = Routes("metrics", __name__)


@bp.get("/metrics", operation_id="metrics",
        summary="Prometheus metrics in the text exposition format (unauthenticated, like /healthz)",
        media="text/plain")
def metrics():
    body, content_type = observe.exposition()
    return Response(body, content_type=content_type)
