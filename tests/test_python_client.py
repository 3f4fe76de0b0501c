"""The Python client (clients/python), installed into a fresh venv, against a live server: every call allowed
and denied, a batch over the limit, a service that does not answer, a 503 retried, an answer it cannot read,
an API major version it does not know; the Flask and FastAPI guard examples; the pytest test double."""
from __future__ import annotations

import http.client
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.fixtures.clients import CLIENT_DIR, PASSWORD, SEED, STAFF
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import ROOT

pytestmark = pytest.mark.slow

class Proxy:
    """A tiny HTTP proxy in front of the live server: counts what it forwards and, per path, answers canned
    responses first (a tuple, or a function of the server's own answer) before forwarding again."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.seen: list[tuple[str, str]] = []
        self.canned: dict[str, list] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.handle(self)

            def do_POST(self):
                proxy.handle(self)

            def do_DELETE(self):
                proxy.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, handler, body: bytes) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() in ("authorization", "content-type", "x-session-token", "accept")}
        connection.request(handler.command, handler.path, body=body or None, headers=headers)
        response = connection.getresponse()
        answer = (response.status, {"Content-Type": response.getheader("Content-Type", "")}, response.read())
        connection.close()
        return answer

    def handle(self, handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        path = handler.path.split("?")[0]
        self.seen.append((handler.command, path))
        queue = self.canned.get(path)
        step = queue.pop(0) if queue else None
        if callable(step):
            status, headers, payload = step(*self.forward(handler, body))
        elif step is not None:
            status, headers, payload = step
        else:
            status, headers, payload = self.forward(handler, body)
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.seen if p == path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(live):
    proxy = Proxy(live.port)
    yield proxy
    proxy.stop()


def json_answer(status: int, body: dict, **headers: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


# --- decisions -------------------------------------------------------------------------------------------

def test_authorize_allows_and_denies_as_the_policy_says(client_venv, live):
    answers = client_venv.run("""
c = client()
out([decision(c.authorize(portal="ahcccs", actor=actor, action="claims", resource=ORG))
     for actor in ("sam.staff", "max.member", "nobody.here")])
""", url=live.url, key=live.key)
    assert answers[0] == {"allowed": True, "bool": True, "codes": [], "decided": True, "messages": []}
    assert answers[1]["allowed"] is False and answers[1]["bool"] is False and answers[1]["decided"]
    assert answers[1]["codes"] == ["permission_not_granted"]
    assert answers[2]["allowed"] is False and "unknown_actor" in answers[2]["codes"]


def test_a_problem_is_a_denial_with_its_code_or_an_exception_when_asked(client_venv, live):
    answers = client_venv.run("""
NOWHERE = {"type": "organization", "id": "PROV-9999"}
c = client()
result = [decision(c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=NOWHERE))]
result.append(decision(client(key="pak_0000000000000000_wrong").authorize(
    portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)))
result.append(decision(client(key=os.environ["ENROLL_KEY"]).authorize(
    portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)))
try:
    c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=NOWHERE, raise_errors=True)
except ProblemError as exc:
    result.append([exc.status, exc.code])
out(result)
""", url=live.url, key=live.key, ENROLL_KEY=live.enroll_key)
    assert [a["codes"] for a in answers[:3]] == [["not_found"], ["unauthenticated"], ["insufficient_scope"]]
    assert not any(a["allowed"] or a["decided"] for a in answers[:3])
    assert answers[3] == [404, "not_found"]


def test_authorize_many_sends_100_checks_a_request_and_answers_each_in_order(client_venv, live, proxy):
    decisions = client_venv.run("""
checks = [{"action": "claims" if i % 3 else "eligibility", "resource": ORG} for i in range(250)]
checks[170] = {"action": "claims", "resource": {"type": "organization", "id": "PROV-9999"}}
out([[d.allowed, [r.code for r in d.reasons], d.error.code if d.error else None]
     for d in client().authorize_many(portal="ahcccs", actor="sam.staff", checks=checks)])
""", url=proxy.url, key=live.key)
    assert len(decisions) == 250
    for i, (allowed, codes, error) in enumerate(decisions):
        if i == 170:
            assert (allowed, codes, error) == (False, ["not_found"], "not_found")
        elif i % 3:
            assert (allowed, codes, error) == (True, [], None), i
        else:
            assert (allowed, codes, error) == (False, ["permission_not_granted"], None), i
    assert proxy.count("/v1/authorize/batch") == 3  # 100 + 100 + 50


def test_authorized_actions_and_the_authzen_evaluation(client_venv, live):
    answers = client_venv.run("""
c = client()
actions = {actor: sorted(c.authorized_actions(portal="ahcccs", actor=actor, resource=ORG).actions)
           for actor in ("sam.staff", "max.member")}
evaluations = [decision(c.evaluate(portal="ahcccs", subject=actor, action="claims",
                                   resource={"type": "organization", "id": "PROV-0042"}))
               for actor in ("sam.staff", "max.member")]
out({"actions": actions, "evaluations": evaluations, "in": "claims" in c.authorized_actions(
    portal="ahcccs", actor="sam.staff", resource=ORG)})
""", url=live.url, key=live.key)
    assert "claims" in answers["actions"]["sam.staff"] and "view" in answers["actions"]["sam.staff"]
    assert "claims" not in answers["actions"]["max.member"] and "view" in answers["actions"]["max.member"]
    assert answers["in"] is True
    assert [e["allowed"] for e in answers["evaluations"]] == [True, False]
    assert answers["evaluations"][1]["codes"] == ["permission_not_granted"]


def test_reading_an_account_and_iterating_the_roster_page_by_page(client_venv, live, proxy):
    answers = client_venv.run(f"""
c = client()
sam = c.get_account(portal="ahcccs", username="SAM.staff")
session = c.sign_in(portal="ahcccs", username="ada.admin", password="{PASSWORD}")
names = [a.username for a in c.roster(portal="ahcccs", organization="PROV-0042", session_token=session.token,
                                      page_size=2)]
pages = [len(p.accounts) for p in c.roster_pages(portal="ahcccs", organization="PROV-0042",
                                                 session_token=session.token, page_size=4)]
try:
    c.get_account(portal="ahcccs", username="../organizations/PROV-0042")
    missing = None
except ProblemError as exc:
    missing = exc.code
c.sign_out(portal="ahcccs", session_token=session.token)
try:
    next(c.roster(portal="ahcccs", organization="PROV-0042", session_token=session.token))
    signed_out = None
except ProblemError as exc:
    signed_out = [exc.status, exc.code]
out({{"sam": [sam.username, sam.status, [(m.organization, m.role, list(m.permissions)) for m in sam.memberships]],
     "names": names, "pages": pages, "missing": missing, "repr": repr(session), "signed_out": signed_out}})
""", url=proxy.url, key=live.key)
    assert answers["sam"] == ["sam.staff", "active", [["PROV-0042", "member", ["claims"]]]]
    assert sorted(answers["names"]) == sorted(["sam.staff", "max.member", "ada.admin", *STAFF])
    assert len(answers["names"]) == len(set(answers["names"])) == 9
    assert answers["pages"] == [4, 4, 1]
    assert answers["missing"] == "not_found"  # the username stays one path segment
    assert "***" in answers["repr"]
    assert answers["signed_out"] == [401, "invalid_session"]
    assert proxy.count("/v1/portals/ahcccs/organizations/PROV-0042/accounts") == 5 + 3 + 1


# --- failing closed --------------------------------------------------------------------------------------

def test_a_service_that_does_not_answer_is_a_denial_unavailable(client_venv):
    answers = client_venv.run("""
c = client(retries=1)
result = {"authorize": decision(c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)),
          "many": [decision(d) for d in c.authorize_many(portal="ahcccs", actor="sam.staff",
                                                          checks=[{"action": "claims", "resource": ORG}] * 3)],
          "actions": [sorted(a.actions), a.error.code] if (a := c.authorized_actions(
              portal="ahcccs", actor="sam.staff", resource=ORG)) else None,
          "evaluate": decision(c.evaluate(portal="ahcccs", subject="sam.staff", action="claims", resource=ORG))}
try:
    c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG, raise_errors=True)
except ServiceUnavailable as exc:
    result["raised"] = exc.code
out(result)
""", url=f"http://127.0.0.1:{free_port()}", key="pak_0000000000000000_any")
    assert answers["authorize"]["allowed"] is False and answers["authorize"]["codes"] == ["unavailable"]
    assert not answers["authorize"]["decided"] and "did not answer" in answers["authorize"]["messages"][0]
    assert [d["codes"] for d in answers["many"]] == [["unavailable"]] * 3
    assert answers["actions"] == [[], "unavailable"]
    assert answers["evaluate"]["codes"] == ["unavailable"]
    assert answers["raised"] == "unavailable"


def test_a_503_with_retry_after_is_retried_and_one_without_is_not(client_venv, live, proxy):
    busy = json_answer(503, {"code": "database_busy"}, **{"Retry-After": "0"})
    proxy.canned["/v1/authorize"] = [busy, busy]
    first = client_venv.run("""
out(decision(client().authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)))
""", url=proxy.url, key=live.key)
    assert first["allowed"] is True and proxy.count("/v1/authorize") == 3  # two 503s, then the answer

    proxy.seen.clear()
    proxy.canned["/v1/authorize"] = [json_answer(503, {"code": "database_busy"}),
                                     json_answer(503, {"code": "database_busy"}, **{"Retry-After": "30"})]
    later = client_venv.run("""
c = client(max_retry_wait=1.0)
out([decision(c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)) for _ in range(2)])
""", url=proxy.url, key=live.key)
    assert [d["codes"] for d in later] == [["unavailable"], ["unavailable"]]
    assert proxy.count("/v1/authorize") == 2  # neither retried: no Retry-After, and one longer than allowed


def test_a_500_and_an_answer_it_cannot_read_are_denials(client_venv, live, proxy):
    proxy.canned["/v1/authorize"] = [
        json_answer(500, {"code": "internal_error"}),
        json_answer(200, {"allowed": "yes", "reasons": [], "policy_version": "x"}),
        json_answer(200, {"allowed": False, "reasons": [], "policy_version": "x"}),
        (200, {"Content-Type": "text/html"}, b"<html>login</html>"),
        lambda status, headers, body: (302, {"Location": "/elsewhere"}, b""),
    ]
    answers = client_venv.run("""
c = client()
out([decision(c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)) for _ in range(5)])
""", url=proxy.url, key=live.key)
    assert [a["codes"] for a in answers] == [["unavailable"]] + [["unexpected_response"]] * 4
    assert not any(a["allowed"] for a in answers)
    assert proxy.count("/v1/authorize") == 5  # none retried


def test_an_api_major_version_it_does_not_know_is_refused_before_asking(client_venv, live, proxy):
    def version_2(status, headers, body):
        document = json.loads(body)
        document["info"]["version"] = "2.0.0"
        return status, headers, json.dumps(document).encode()

    proxy.canned["/openapi.json"] = [version_2]
    answers = client_venv.run("""
c = client()
result = {"decision": decision(c.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG))}
try:
    c.authorize_many(portal="ahcccs", actor="sam.staff", checks=[{"action": "claims", "resource": ORG}],
                     raise_errors=True)
except IncompatibleService as exc:
    result["raised"] = str(exc)
out(result)
""", url=proxy.url, key=live.key)
    assert answers["decision"]["codes"] == ["incompatible_service"]
    message = answers["decision"]["messages"][0]
    assert "speaks API version 2.0.0" in message and "knows only API major version 1" in message
    assert answers["raised"] == message
    assert proxy.count("/openapi.json") == 1 and proxy.count("/v1/authorize") == 0
    assert proxy.count("/v1/authorize/batch") == 0


def test_the_client_reads_the_live_api_version(client_venv, live):
    assert client_venv.run("out(client().api_version())", url=live.url, key=live.key) == "1"


# --- the guards ------------------------------------------------------------------------------------------

GUARD_RUN = """
import importlib
sys.path.insert(0, os.environ["EXAMPLES"])
warnings.simplefilter("ignore")  # starlette's TestClient notes its own transport's deprecation
app = importlib.import_module(os.environ["EXAMPLE"]).app
if os.environ["EXAMPLE"] == "flask_app":
    http = app.test_client()
    answer = lambda r: [r.status_code, r.content_type, r.get_json()]
else:
    from fastapi.testclient import TestClient
    http = TestClient(app)
    answer = lambda r: [r.status_code, r.headers["content-type"], r.json()]
out([answer(http.get("/organizations/PROV-0042/claims", headers={"X-User": user} if user else {}))
     for user in ("sam.staff", "max.member", None)])
"""


@pytest.mark.parametrize("example", ["flask_app", "fastapi_app"])
def test_the_guard_examples_answer_403_with_the_services_reasons(client_venv, live, example):
    source = (CLIENT_DIR / "examples" / f"{example}.py").read_text()
    assert len(source.strip().splitlines()) <= 13  # a ten-line example (imports and blank lines aside)
    allowed, denied, anonymous = client_venv.run(GUARD_RUN, url=live.url, key=live.key, EXAMPLE=example,
                                                 EXAMPLES=str(CLIENT_DIR / "examples"))
    assert allowed[0] == 200 and allowed[2]["organization"] == "PROV-0042" and allowed[2]["policy_version"]
    assert denied[:2] == [403, "application/problem+json"]
    assert denied[2]["code"] == "forbidden"
    assert denied[2]["reasons"] == [{"code": "permission_not_granted",
                                     "message": "The actor has not been granted this function for the organization."}]
    assert anonymous[0] == 401 and anonymous[2]["code"] == "unauthenticated"


# --- the test double -------------------------------------------------------------------------------------

CALLERS_TESTS = """
from portal_authz_client import ServiceUnavailable

ORG = {"type": "organization", "id": "PROV-0042"}


def test_the_seeded_grant_is_allowed(portal_authz_client):
    assert portal_authz_client.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)


def test_no_grant_is_denied_by_the_real_policy(portal_authz_client):
    d = portal_authz_client.authorize(portal="ahcccs", actor="max.member", action="claims", resource=ORG)
    assert not d.allowed and [r.code for r in d.reasons] == ["permission_not_granted"]


def test_a_killed_server_is_a_denial_unavailable(portal_authz_server):
    client = portal_authz_server.client(retries=1)
    assert client.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG).allowed
    portal_authz_server.kill()
    d = client.authorize(portal="ahcccs", actor="sam.staff", action="claims", resource=ORG)
    assert not d.allowed and [r.code for r in d.reasons] == ["unavailable"]
"""


def test_the_pytest_test_double_serves_the_real_policy_over_seed_data(client_venv, tmp_path):
    project = tmp_path / "caller"
    project.mkdir()
    (project / "seed.yaml").write_text(yaml.safe_dump({k: SEED[k] for k in ("portal", "organizations")} | {
        "accounts": SEED["accounts"][:2]}))
    (project / "conftest.py").write_text('pytest_plugins = ["portal_authz_client.testing"]\n')
    (project / "pytest.ini").write_text(
        "[pytest]\n"
        f"portal_authz_config = {ROOT / 'config.yaml'}\n"
        f"portal_authz_policies = {ROOT / 'policies'}\n"
        "portal_authz_seed = seed.yaml\n"
        f"portal_authz_command = {shlex.join([sys.executable, '-m', 'service.cli'])}\n")
    (project / "test_calls.py").write_text(CALLERS_TESTS)
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "PORTAL_AUTHZ_CONFIG", "PORTAL_AUTHZ_DATABASE_URL")}
    result = subprocess.run([str(client_venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                            env=environment, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout

