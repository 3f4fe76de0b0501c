"""The step-level client: one interface, two transports (in-process app or a live server)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """An HTTP answer as the steps see it, whichever transport carried it."""

    status: int
    body: Any
    content_type: str
    method: str
    path: str

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def reasons(self) -> list[str]:
        if isinstance(self.body, dict):
            return [r["code"] for r in self.body.get("reasons") or []]
        return []

    @property
    def error_codes(self) -> list[str]:
        if isinstance(self.body, dict):
            return [e["code"] for e in self.body.get("errors") or []]
        return []

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.body!r}"


class InProcess:
    """A Flask test client on an app built in this process."""

    def __init__(self, app):
        self._client = app.test_client()

    def send(self, method: str, path: str, body=None, headers=None) -> Reply:
        response = self._client.open(path, method=method, json=body, headers=headers or {})
        payload = response.get_json(silent=True) if response.data else None
        return Reply(response.status_code, payload, response.mimetype or "", method, path)


class Live:
    """A running `portal-authz serve`, reached with requests."""

    def __init__(self, base_url: str):
        import requests

        self._base = base_url.rstrip("/")
        self._session = requests.Session()

    def send(self, method: str, path: str, body=None, headers=None) -> Reply:
        response = self._session.request(method, self._base + path, json=body, headers=headers or {}, timeout=30)
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = response.text
        mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Reply(response.status_code, payload, mimetype, method, path)

    def close(self) -> None:
        self._session.close()


class Api:
    """The contract's calls, with the client key and, for changes on behalf of a person, a session token."""

    def __init__(self, transport, key: str):
        self.transport, self.key = transport, key

    def call(self, method: str, path: str, body=None, token: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {self.key}"}
        if token:
            headers["X-Session-Token"] = token
        return self.transport.send(method, path, body, headers)

    def portal(self, portal: str, method: str, path: str, body=None, token: str | None = None) -> Reply:
        return self.call(method, f"/v1/portals/{portal}{path}", body, token)

    def clock(self, body: dict) -> Reply:
        return self.transport.send("POST", "/_testing/clock", body, {})


def live_target() -> tuple[str, str] | None:
    """(url, key) when the suite should run against a live server."""
    url = os.environ.get("PORTAL_AUTHZ_URL")
    if not url:
        return None
    key = os.environ.get("PORTAL_AUTHZ_KEY")
    if not key:
        raise RuntimeError("PORTAL_AUTHZ_URL is set but PORTAL_AUTHZ_KEY is not: give a client key with the "
                           "scopes authorize,manage,enroll (portal-authz clients add qa --scopes ...)")
    return url, key
