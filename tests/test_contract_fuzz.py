"""The published contract, checked from outside: /openapi.json validates as OpenAPI 3.1, and schemathesis,
driven by that document alone, finds no 5xx and no answer that breaks the document on any operation.

Schemathesis runs against a live `portal-authz serve` (one worker, SQLite, settable clock, cheap hashing) seeded
through the API with a demo organization, its admin and member, a support account and signed-in
sessions, so generated requests get past 401 and 404 into the real handlers. It runs every phase
(examples, coverage, fuzzing, stateful: the links chain registration -> account, sign-in -> session).
PORTAL_AUTHZ_FUZZ_EXAMPLES sets the examples per operation (default 5; try 200 for a long run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from openapi_spec_validator import validate
from service.config import load_config
from service.domain import clients
from service.storage.database import Database
from tests.fixtures.servers import ROOT, running

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("PORTAL_AUTHZ_FUZZ_EXAMPLES", "5"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")
PASSWORD = "Fuzz-Pa55word!x"


def call(base: str, method: str, path: str, body: dict | None = None, key: str = "", token: str = "") -> dict:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}",
                                              **({"X-Session-Token": token} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


def seed(base: str, key: str) -> dict[str, str]:
    """A demo organization with an admin and a member, a support account, and sessions to act with."""
    v1 = "/v1/portals/ahcccs"
    call(base, "POST", f"{v1}/organizations", {"key": "DEMO-0001", "name": "Demo Clinic", "addresses": [
        {"id": "main", "line1": "1 Main St", "city": "Phoenix", "state": "AZ", "zip": "85001"}]}, key)
    temporary = "Temporary#Pass2024x"
    for username in ("demo.admin", "demo.second"):
        call(base, "POST", f"{v1}/organizations/DEMO-0001/admins",
             {"username": username, "first_name": "Ada", "last_name": username.split(".")[1].title(),
              "email": f"{username}@example.org", "password": temporary, "accepted_terms": True}, key)
        # A password chosen by someone else is temporary: the admin sets its own first.
        call(base, "PUT", f"{v1}/accounts/{username}/password",
             {"current_password": temporary, "new_password": PASSWORD}, key)
    call(base, "POST", f"{v1}/support-staff", {"username": "support.sam", "first_name": "Sam", "last_name": "Support",
                                               "email": "sam@example.org", "password": PASSWORD}, key)
    token = call(base, "POST", f"{v1}/sessions", {"username": "demo.admin", "password": PASSWORD}, key)["token"]
    # ahcccs members register themselves and wait for an admin's approval (R8); admin-created accounts are
    # masshealth's (R13).
    call(base, "POST", f"{v1}/registrations",
         {"organization": "DEMO-0001", "username": "demo.member", "first_name": "Mo", "last_name": "Member",
          "email": "mo@example.org", "phone": "602-555-0101", "password": PASSWORD, "accepted_terms": True,
          "security_questions": [{"question": "First pet?", "answer": "Rex"},
                                 {"question": "First street?", "answer": "Main"}]}, key)
    call(base, "POST", f"{v1}/accounts/demo.member/approve", {}, key, token)
    call(base, "PUT", f"{v1}/accounts/demo.member/permissions",
         {"organization": "DEMO-0001", "permissions": ["claims"]}, key, token)
    spare = call(base, "POST", f"{v1}/sessions", {"username": "demo.second", "password": PASSWORD}, key)["token"]
    return {"admin": token, "spare": spare}


def config_toml(key: str, tokens: dict[str, str]) -> str:
    # Fixed path parameters and the session header take generated requests past 404 and 401; signing out
    # ends a spare session, and password changes aim at the second admin, so the main session lives on.
    return f"""
[parameters]
"path.portal" = "ahcccs"
"path.org" = "DEMO-0001"
"path.username" = "demo.member"
"header.X-Session-Token" = "{tokens['admin']}"

[[operations]]
include-operation-id = "signOut"
parameters = {{ "header.X-Session-Token" = "{tokens['spare']}" }}

[[operations]]
include-operation-id = "changePassword"
parameters = {{ "path.username" = "demo.second" }}
"""


def test_openapi_document_validates_as_3_1(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises with the first error


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path):
    config = load_config(ROOT / "config.yaml")
    database_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    # Argon2 at the QA server's cost: sign-ins, registrations and password changes are a large share of the
    # generated requests, and the checks are about answers and the document, not the hash's cost.
    testing = {"clock": "settable", "hashing": "cheap"}
    with running(["fuzz"], database_url, tmp_path, workers=1, testing=testing) as (server,):
        database = Database(database_url)
        with database.transaction() as session:
            key = clients.create_client(session, "fuzz", ("authorize", "manage", "enroll"),
                                        datetime.now(timezone.utc))
        database.dispose()
        tokens = seed(server.base, key)
        (tmp_path / "schemathesis.toml").write_text(config_toml(key, tokens))
        report = tmp_path / "report.json"
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(tmp_path / "schemathesis.toml"), "--no-color",
             "run", server.base + "/openapi.json", "--checks", CHECKS, "--max-examples", str(EXAMPLES),
             "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1", "--seed", "12",
             "--header", f"Authorization: Bearer {key}", "--report", "ndjson",
             "--report-ndjson-path", str(report), "--request-timeout", "20"],
            cwd=tmp_path, capture_output=True, text=True, timeout=1500)
        print(run.stdout[-20000:], run.stderr[-5000:])
        assert run.returncode == 0, run.stdout[-8000:]
        assert "Server error" not in run.stdout
        assert config  # the shipped config loaded: the server above is the shipped service


# --- Explicit hostile bodies: cases a generator finds rarely, sent to every operation that takes a body ---------

PATH_VALUES = {"portal": "ahcccs", "org": "DEMO-0001", "username": "demo.member", "path_action": "disable",
               "request_id": "1"}
DEEP = 5000


def hostile_bodies() -> dict[str, tuple[bytes, str]]:
    """Per hostile kind, the body and its Content-Type (surrogate bodies name a field of the schema)."""
    deep = '{"a":"\\"","b":' + "[" * DEEP + "]" * DEEP + ',"c":"d"}'
    return {"deep utf-16-le behind an escaped quote": (deep.encode("utf-16-le"), "application/json"),
            "deep utf-8 behind an escaped quote": (deep.encode(), "application/json"),
            "declared utf-16": ('{"a": 1}'.encode("utf-16"), "application/json; charset=utf-16"),
            "lone surrogate": (b'{"comment": "x\\ud800y", "username": "\\udfff"}', "application/json")}


def send_raw(base: str, method: str, path: str, body: bytes, content_type: str, key: str, token: str):
    request = urllib.request.Request(base + path, method=method.upper(), data=body,
                                     headers={"Content-Type": content_type, "Authorization": f"Bearer {key}",
                                              "X-Session-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, answer.headers.get_content_type(), json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), json.loads(exc.read() or b"{}")


def test_hostile_bodies_get_a_problem_on_every_operation_with_a_body(tmp_path):
    """JSON nested 5,000 deep as UTF-16-LE behind an escaped quote, a declared charset other than UTF-8, lone
    surrogate escapes: 400 `malformed_json`, 415 (AuthZEN 400) or 422 (AuthZEN 400) `validation_error` with
    `invalid_unicode`, on a live server, for every operation the document says takes a body. Never a 5xx."""
    database_url = f"sqlite:///{tmp_path / 'hostile.db'}"
    with running(["hostile"], database_url, tmp_path, workers=1) as (server,):
        database = Database(database_url)
        with database.transaction() as session:
            key = clients.create_client(session, "hostile", ("authorize", "manage", "enroll"),
                                        datetime.now(timezone.utc))
        database.dispose()
        token = seed(server.base, key)["admin"]
        with urllib.request.urlopen(server.base + "/openapi.json", timeout=10) as answer:
            document = json.loads(answer.read())
        seen = []
        for template, item in document["paths"].items():
            for method, operation in item.items():
                if "requestBody" not in operation:
                    continue
                path = template.format(**PATH_VALUES)
                authzen = template.startswith("/authzen/")
                for kind, (body, content_type) in hostile_bodies().items():
                    status, media, problem = send_raw(server.base, method, path, body, content_type, key, token)
                    where = (method, template, kind, status, problem)
                    assert media == "application/problem+json", where
                    if kind.startswith("deep"):
                        assert (status, problem["code"]) == (400, "malformed_json"), where
                    elif kind == "declared utf-16":
                        assert (status, problem["code"]) == (400 if authzen else 415, "unsupported_media_type"), where
                    else:
                        assert (status, problem["code"]) == (400 if authzen else 422, "validation_error"), where
                        assert problem["errors"][0]["code"] == "invalid_unicode", where
                    seen.append((method, template))
        assert len(set(seen)) >= 20  # every operation that takes a body was tried
        assert server.process.poll() is None, server.output()
