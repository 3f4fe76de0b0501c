"""`Client`: one pooled HTTP connection set to the service, calls that fail closed.

A decision call (`authorize`, `authorize_many`, `evaluate`, `authorized_actions`) never raises by default:
whatever goes wrong (the service does not answer, answers a problem, or answers something unreadable) is a
denial whose reason carries a stable code (`unavailable`, `unexpected_response`, `incompatible_service`, or
the problem's own code such as `not_found`), so a careless caller cannot turn an exception into an allow.
`raise_errors=True` (per client or per call) raises `PortalAuthzError` subclasses instead.

Retries only where repeating cannot do harm: a refused connection (nothing was sent) and a 503 that says
when to come back (`Retry-After`, no longer than `max_retry_wait`). A timeout or a broken connection is not
retried: the time budget the caller gave is spent.
"""
from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import httpx

from portal_authz_client._version import API_MAJORS, __version__
from portal_authz_client.errors import (IncompatibleService, PortalAuthzError, ProblemError, ServiceUnavailable,
                                        UnexpectedResponse)
from portal_authz_client.models import Account, AccountPage, Actions, Decision, Reason, SignedIn

BATCH_LIMIT = 100  # the batch endpoint's most checks per request (shared/api-v1.md)
_UNSET: Any = object()
T = TypeVar("T")


def _segment(value: str) -> str:
    """One path segment: `../x` or `a/b` stay inside it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"a path segment must be a non-empty string; got {value!r}")
    return quote(value, safe="")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class Client:
    """`Client("http://127.0.0.1:8000", key, timeout=2.0)`; thread-safe; close it (or use `with`) when done.

    timeout: seconds for each phase of a call (connect, write, read, pool), per call overridable.
    retries: how many times a refused connection or a 503 with Retry-After is tried again.
    max_retry_wait: the longest Retry-After honoured; a longer one is answered as `unavailable`.
    raise_errors: raise instead of denying (decision calls); the other calls always raise.
    check_version: read `/openapi.json` once before the first call and refuse an unknown API major version.
    """

    def __init__(self, base_url: str, key: str, timeout: float = 2.0, *, retries: int = 2,
                 max_retry_wait: float = 1.0, raise_errors: bool = False, check_version: bool = True,
                 max_connections: int = 20, transport: httpx.BaseTransport | None = None):
        if not isinstance(key, str) or not key:
            raise ValueError("a client key is required (from `portal-authz clients add`)")
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a number of seconds above zero: a call without one can hang forever")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.max_retry_wait = float(max_retry_wait)
        self.raise_errors = raise_errors
        self._check_version = check_version
        self._api_version: str | None = None
        self._version_error: IncompatibleService | None = None
        self._version_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.base_url, timeout=self.timeout, transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json",
                     "User-Agent": f"portal-authz-client/{__version__}"})

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r}, timeout={self.timeout})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -----------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """One request, retried only where safe; ServiceUnavailable when the service does not answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
            except httpx.ConnectError as exc:  # refused or unreachable: nothing was sent, so trying again is safe
                if attempt < self.retries:
                    time.sleep(0.05 * 2 ** attempt)
                    attempt += 1
                    continue
                raise ServiceUnavailable(f"portal-authz at {self.base_url} did not answer: {exc}") from exc
            except httpx.TimeoutException as exc:
                raise ServiceUnavailable(f"portal-authz at {self.base_url} timed out: {exc.__class__.__name__}") from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ServiceUnavailable(f"portal-authz at {self.base_url} failed: {exc.__class__.__name__}: {exc}") \
                    from exc
            if response.status_code == 503:
                wait = _retry_after(response.headers.get("Retry-After"))
                if wait is not None and wait <= self.max_retry_wait and attempt < self.retries:
                    response.close()
                    time.sleep(wait)
                    attempt += 1
                    continue
            return response

    def _json(self, response: httpx.Response, expected: int) -> Any:
        """The body of an expected answer; a problem as ProblemError; anything else as the error it is."""
        status = response.status_code
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if status == expected:
            if body is None:
                raise UnexpectedResponse(f"{response.request.method} {response.request.url.path}: {status} without "
                                         "a JSON body")
            return body
        if status >= 500:
            code = body.get("code") if isinstance(body, dict) else None
            raise ServiceUnavailable(f"portal-authz answered {status}" + (f" {code}" if code else ""))
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            raise ProblemError(status, body["code"], str(body.get("title", "")), str(body.get("detail", "")), body)
        raise UnexpectedResponse(f"{response.request.method} {response.request.url.path}: unexpected {status}")

    def _call(self, method: str, path: str, expected: int = 200, *, timeout: float | None = None,
              **kwargs: Any) -> Any:
        self._ensure_compatible(timeout)
        return self._json(self._send(method, path, timeout=timeout, **kwargs), expected)

    # --- the API version ------------------------------------------------------------------------------------

    def api_version(self, timeout: float | None = None) -> str:
        """The service's `info.version`; IncompatibleService if this client does not know its major version."""
        if self._api_version is None:
            self._check(timeout)
        if self._version_error is not None:
            raise self._version_error
        assert self._api_version is not None
        return self._api_version

    def _ensure_compatible(self, timeout: float | None) -> None:
        if not self._check_version:
            return
        if self._version_error is not None:
            raise self._version_error
        if self._api_version is None:
            self.api_version(timeout)

    def _check(self, timeout: float | None) -> None:
        with self._version_lock:
            if self._api_version is not None or self._version_error is not None:
                return
            document = self._json(self._send("GET", "/openapi.json", timeout=timeout), 200)
            version = document.get("info", {}).get("version") if isinstance(document, dict) else None
            if not isinstance(version, str) or not version.split(".")[0].isdigit():
                self._version_error = IncompatibleService(
                    f"portal-authz at {self.base_url}: /openapi.json carries no info.version this client can read "
                    f"({version!r}); portal-authz-client {__version__} speaks API major version "
                    f"{', '.join(map(str, API_MAJORS))}")
                raise self._version_error
            major = int(version.split(".")[0])
            if major not in API_MAJORS:
                self._version_error = IncompatibleService(
                    f"portal-authz at {self.base_url} speaks API version {version}, but portal-authz-client "
                    f"{__version__} knows only API major version {', '.join(map(str, API_MAJORS))}: install the "
                    f"portal-authz-client {major}.x that follows it")
                raise self._version_error
            self._api_version = version

    # --- decisions: fail closed -----------------------------------------------------------------------------

    def _decide(self, raise_errors: bool | None, ask: Callable[[], T], failed: Callable[[PortalAuthzError], T]) -> T:
        try:
            return ask()
        except PortalAuthzError as exc:
            if self.raise_errors if raise_errors is None else raise_errors:
                raise
            return failed(exc)

    @staticmethod
    def _denial(exc: PortalAuthzError) -> Decision:
        return Decision.denied(exc.code, exc.message)

    def authorize(self, *, portal: str, actor: str, action: str, resource: Mapping[str, Any],
                  context: Mapping[str, Any] | None = None, timeout: float | None = None,
                  raise_errors: bool | None = None) -> Decision:
        """May `actor` do `action` on `resource` ({"type": "organization"|"account", "id", "organization"?})?"""
        body: dict[str, Any] = {"portal": portal, "actor": actor, "action": action, "resource": dict(resource)}
        if context is not None:
            body["context"] = dict(context)
        return self._decide(raise_errors,
                            lambda: Decision.from_json(self._call("POST", "/v1/authorize", json=body, timeout=timeout)),
                            self._denial)

    def authorize_many(self, *, portal: str, actor: str, checks: Iterable[Mapping[str, Any]],
                       timeout: float | None = None, raise_errors: bool | None = None) -> list[Decision]:
        """One decision per check (`{"action", "resource", "context"?}`), in order; sent 100 to a request.

        A chunk the service did not answer is a denial for each of its checks; the others stand."""
        sent: list[dict[str, Any]] = [dict(c) for c in checks]
        decisions: list[Decision] = []
        for start in range(0, len(sent), BATCH_LIMIT):
            chunk = sent[start:start + BATCH_LIMIT]

            def ask(chunk: list[dict[str, Any]] = chunk, start: int = start) -> list[Decision]:
                answer = self._call("POST", "/v1/authorize/batch", timeout=timeout,
                                    json={"portal": portal, "actor": actor, "checks": chunk})
                results = answer.get("results") if isinstance(answer, dict) else None
                if not isinstance(results, list) or len(results) != len(chunk):
                    raise UnexpectedResponse(f"batch: {len(chunk)} checks sent, "
                                             f"{len(results) if isinstance(results, list) else 'no'} results answered")
                return [Decision.from_json(r, f"results[{start + i}]") for i, r in enumerate(results)]

            def failed(exc: PortalAuthzError, n: int = len(chunk)) -> list[Decision]:
                return [self._denial(exc)] * n

            decisions.extend(self._decide(raise_errors, ask, failed))
        return decisions

    def authorized_actions(self, *, portal: str, actor: str, resource: Mapping[str, Any],
                           timeout: float | None = None, raise_errors: bool | None = None) -> Actions:
        """Every action `actor` may take on `resource`; none (with `error`) when the service did not answer."""
        body = {"portal": portal, "actor": actor, "resource": dict(resource)}
        return self._decide(
            raise_errors, lambda: Actions.from_json(self._call("POST", "/v1/authorized-actions", json=body,
                                                               timeout=timeout)),
            lambda exc: Actions(frozenset(), None, Reason(exc.code, exc.message)))

    def evaluate(self, *, portal: str, subject: str | Mapping[str, Any], action: str | Mapping[str, Any],
                 resource: Mapping[str, Any], context: Mapping[str, Any] | None = None,
                 timeout: float | None = None, raise_errors: bool | None = None) -> Decision:
        """The OpenID AuthZEN Access Evaluation (`/authzen/{portal}/access/v1/evaluation`), as a Decision.

        subject: a username or an AuthZEN subject; action: a name or an AuthZEN action; resource: an AuthZEN
        resource ({"type", "id", "properties"?})."""
        body: dict[str, Any] = {
            "subject": {"type": "account", "id": subject} if isinstance(subject, str) else dict(subject),
            "action": {"name": action} if isinstance(action, str) else dict(action),
            "resource": dict(resource)}
        if context is not None:
            body["context"] = dict(context)

        def ask() -> Decision:
            answer = self._call("POST", f"/authzen/{_segment(portal)}/access/v1/evaluation", json=body,
                                timeout=timeout)
            allowed = answer.get("decision") if isinstance(answer, dict) else None
            context_ = answer.get("context") if isinstance(answer, dict) else None
            if not isinstance(allowed, bool) or not isinstance(context_, dict):
                raise UnexpectedResponse("evaluation: `decision` or `context` is missing")
            return Decision.from_json({"allowed": allowed, "reasons": context_.get("reasons") or [],
                                       "policy_version": context_.get("policy_version"),
                                       "error": context_.get("error")}, "evaluation")

        return self._decide(raise_errors, ask, self._denial)

    # --- what a back office reads (these raise: there is no safe default for a read) -----------------------

    def sign_in(self, *, portal: str, username: str, password: str, timeout: float | None = None) -> SignedIn:
        """A person's session (scope `manage`); its `token` is the `session_token` of the calls below."""
        return SignedIn.from_json(self._call("POST", f"/v1/portals/{_segment(portal)}/sessions", 201,
                                             json={"username": username, "password": password}, timeout=timeout))

    def sign_out(self, *, portal: str, session_token: str, timeout: float | None = None) -> None:
        self._ensure_compatible(timeout)
        response = self._send("DELETE", f"/v1/portals/{_segment(portal)}/sessions/current", timeout=timeout,
                              headers={"X-Session-Token": session_token})
        if response.status_code != 204:
            self._json(response, 204)

    def get_account(self, *, portal: str, username: str, organization: str | None = None,
                    session_token: str | None = None, timeout: float | None = None) -> Account:
        """An account (scope `manage`): as a person sees it with `session_token`, else as the calling service."""
        params = {"organization": organization} if organization else None
        headers = {"X-Session-Token": session_token} if session_token else None
        return Account.from_json(self._call("GET", f"/v1/portals/{_segment(portal)}/accounts/{_segment(username)}",
                                            params=params, headers=headers, timeout=timeout))

    def roster_pages(self, *, portal: str, organization: str, session_token: str, q: str | None = None,
                     status: str | None = None, manageable: bool = False, page_size: int = 50,
                     timeout: float | None = None) -> Iterator[AccountPage]:
        """The organization's accounts the signed-in person may see, page by page (`next` followed)."""
        path = f"/v1/portals/{_segment(portal)}/organizations/{_segment(organization)}/accounts"
        params: dict[str, Any] = {"limit": page_size}
        if q:
            params["q"] = q
        if status:
            params["status"] = status
        if manageable:
            params["manageable"] = "true"
        after: str | None = None
        while True:
            page = AccountPage.from_json(self._call(
                "GET", path, params={**params, **({"after": after} if after else {})},
                headers={"X-Session-Token": session_token}, timeout=timeout))
            yield page
            if page.next is None or page.next == after:
                return
            after = page.next

    def roster(self, **kwargs: Any) -> Iterator[Account]:
        """Every account of `roster_pages(...)`, one at a time."""
        for page in self.roster_pages(**kwargs):
            yield from page.accounts
