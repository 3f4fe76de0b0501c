"""Operations: /metrics, request ids, JSON logs and the decision log.

In-process through the Flask test client, and once under a real `portal-authz
serve` with two gunicorn workers whose metrics must add up.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import DecisionLog, Logging, parse_config
from service.observe.logs import ACCESS_LOGGER, JsonFormatter, TextFormatter, gunicorn_logconfig
from tests.conftest import ROOT, make_key
from tests.fixtures.servers import processes, running
from tests.fixtures.world import PASSWORD

HEX_ID = re.compile(r"[0-9a-f]{32}")


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


@pytest.fixture
def clinic(build):
    with build("ahw") as world:
        world.organization("TIN-1")
        world.account("manager", memberships={"TIN-1": {"role": "admin"}})
        world.account("biller", memberships={"TIN-1": {"permissions": ["claims"]}})
    return "ahw"


ORG = {"type": "organization", "id": "TIN-1"}


# --- /metrics ------------------------------------------------------------------------------------

def test_requests_are_counted_by_route_template_and_status(client):
    before = scrape(client)
    client.get("/healthz")
    client.get("/healthz")
    client.get("/v1/portals/ahw/accounts/biller")  # no key: 401, counted under the template, not the name
    client.get("/no/such/path")
    text = scrape(client)
    assert sample(text, "portal_authz_http_requests_total", route="/healthz", method="GET", status="200") == 2
    assert sample(text, "portal_authz_http_requests_total", route="/v1/portals/<portal>/accounts/<username>",
                  method="GET", status="401") == 1
    assert sample(text, "portal_authz_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert sample(before, "portal_authz_http_requests_total", route="/healthz") == 0
    assert "biller" not in text and "/no/such/path" not in text


def test_decisions_are_counted_by_portal_action_outcome_and_reason(client, ask):
    label = {"portal": "ahw", "action": "claims"}
    before = scrape(client)
    assert ask(actor="biller", action="claims", resource=ORG).get_json()["allowed"] is True
    denied = ask(actor="biller", action="eligibility", resource=ORG).get_json()
    assert [r["code"] for r in denied["reasons"]] == ["permission_not_granted"]
    text = scrape(client)
    assert sample(text, "portal_authz_decisions_total", outcome="allowed", **label) == \
        sample(before, "portal_authz_decisions_total", outcome="allowed", **label) + 1
    assert sample(text, "portal_authz_decisions_total", portal="ahw", action="eligibility", outcome="denied") == 1
    assert sample(text, "portal_authz_decision_reasons_total", portal="ahw", action="eligibility",
                  reason="permission_not_granted") == 1

    batch = ask(path="/v1/authorize/batch", actor="ghost", checks=[
        {"action": "claims", "resource": ORG}, {"action": "eligibility", "resource": ORG}])
    assert batch.status_code == 200
    ask(path="/v1/authorized-actions", actor="manager", resource=ORG)
    ask(actor="biller", action="no_such_action", resource=ORG)  # a client's made-up action: a bounded label
    text = scrape(client)
    assert sample(text, "portal_authz_decision_reasons_total", portal="ahw", action="claims",
                  reason="unknown_actor") == 1
    assert sample(text, "portal_authz_decisions_total", portal="ahw", action="other", outcome="denied") == 1
    assert "no_such_action" not in text and "ghost" not in text and "biller" not in text
    for endpoint, count in (("authorize", 3), ("authorize_batch", 1), ("authorized_actions", 1)):
        assert sample(text, "portal_authz_decision_duration_seconds_count", endpoint=endpoint) == count
        assert sample(text, "portal_authz_decision_duration_seconds_bucket", endpoint=endpoint, le="+Inf") == count
    assert sample(text, "portal_authz_decision_duration_seconds_bucket", endpoint="authorize", le="0.0001") <= 3


def test_a_request_that_fails_before_deciding_counts_no_decision(client, ask):
    response = ask(actor="biller", action="claims", resource={"type": "organization", "id": "NOPE"})
    assert response.status_code == 404
    text = scrape(client)
    assert sample(text, "portal_authz_decisions_total", portal="ahw", action="claims", outcome="allowed") == 0
    assert sample(text, "portal_authz_http_requests_total", route="/v1/authorize", status="404") == 1


def test_each_app_has_its_own_collectors(config, database, policy, clock):
    first = create_app(config, database=database, policy=policy, clock=clock).test_client()
    second = create_app(config, database=database, policy=policy, clock=clock).test_client()
    for _ in range(3):
        first.get("/healthz")
    second.get("/healthz")
    assert sample(scrape(first), "portal_authz_http_requests_total", route="/healthz") == 3
    assert sample(scrape(second), "portal_authz_http_requests_total", route="/healthz") == 1


def test_pool_gauges_follow_the_engine(client, database):
    text = scrape(client)
    assert sample(text, "portal_authz_db_pool_size") == sum(engine.pool.size() for engine in database.engines)
    assert sample(text, "portal_authz_db_pool_checked_out") == 0
    with database.engine.connect(), database.engine.connect():
        assert sample(scrape(client), "portal_authz_db_pool_checked_out") == 2
    assert sample(scrape(client), "portal_authz_db_pool_checked_out") == 0


def test_metrics_is_documented_and_open(client):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/metrics"]["get"]
    assert "security" not in operation and "text/plain" in operation["responses"]["200"]["content"]
    assert operation["responses"]["200"]["headers"]["X-Request-Id"]


# --- request ids ---------------------------------------------------------------------------------

def test_a_request_id_is_generated_when_absent(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert HEX_ID.fullmatch(first.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


@pytest.mark.parametrize("incoming", ["req-42", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "a.b:c_d-E", "x" * 128])
def test_a_well_formed_request_id_is_echoed(client, incoming):
    assert client.get("/healthz", headers={"X-Request-Id": incoming}).headers["X-Request-Id"] == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 129, "has space", "<script>", "-leading", "a\tb", "caf\u00e9",
                                      "a;b=c", "line\\nbreak"])
def test_a_malformed_request_id_is_replaced(client, incoming):
    answered = client.get("/healthz", headers={"X-Request-Id": incoming}).headers["X-Request-Id"]
    assert answered != incoming and HEX_ID.fullmatch(answered)


def test_every_response_carries_the_request_id(client, ask):
    responses = [
        client.post("/v1/authorize", json={}),  # 401 problem+json
        client.get("/no/such/path"),  # 404 without a route
        client.put("/healthz"),  # 405
        client.post("/v1/authorize", data="x", headers={"Authorization": "Bearer pak_x_y"}),  # 401
        ask(actor="biller", action="claims", resource={"type": "organization", "id": "NOPE"}),  # 404 problem
        ask(actor="biller", action="claims", resource=ORG, unknown_field=1),  # 422
        client.get("/metrics"),
    ]
    for response in responses:
        assert response.headers["X-Request-Id"] == "trace-1" or HEX_ID.fullmatch(response.headers["X-Request-Id"])
    problem = client.post("/v1/authorize", json={}, headers={"X-Request-Id": "trace-1"})
    assert problem.content_type == "application/problem+json" and problem.headers["X-Request-Id"] == "trace-1"
    # The body stays the same for the same outcome (callers compare bodies); the id is in the header only.
    assert "trace-1" not in problem.get_data(as_text=True)


# --- logs ----------------------------------------------------------------------------------------

def access_lines(caplog) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == ACCESS_LOGGER]


def test_one_json_access_line_per_request(client, ask, caplog):
    caplog.set_level(logging.INFO)
    ask(actor="biller", action="claims", resource=ORG, headers={"X-Request-Id": "trace-7"})
    client.get("/v1/portals/ahw/accounts/biller?q=secret-search")
    [decided, refused] = access_lines(caplog)
    assert decided["request_id"] == "trace-7"
    assert {k: decided[k] for k in ("level", "logger", "method", "route", "path", "status", "client")} == {
        "level": "info", "logger": ACCESS_LOGGER, "method": "POST", "route": "/v1/authorize",
        "path": "/v1/authorize", "status": 200, "client": "test-authorize"}
    assert isinstance(decided["duration_ms"], float) and decided["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", decided["timestamp"])
    assert (refused["status"], refused["client"], refused["route"]) == (
        401, None, "/v1/portals/<portal>/accounts/<username>")
    assert "secret-search" not in json.dumps(refused)  # no query string


def test_logs_hold_no_password_key_or_token(client, database, clock, build, caplog):
    caplog.set_level(logging.DEBUG)
    with build("ahw") as world:
        world.organization("T-1")
        world.account("ada", memberships={"T-1": {"role": "admin"}})
    key = make_key(database, ("manage",), clock.now())
    signed_in = client.post("/v1/portals/ahw/sessions", json={"username": "ada", "password": PASSWORD},
                            headers={"Authorization": f"Bearer {key}"})
    assert signed_in.status_code == 201
    token = signed_in.get_json()["token"]
    client.post("/v1/portals/ahw/sessions", json={"username": "ada", "password": "Wrong#Horse7Battery"},
                headers={"Authorization": f"Bearer {key}"})
    client.put("/v1/portals/ahw/accounts/ada/password",
               json={"current_password": PASSWORD, "new_password": "New#Horse7Battery2"},
               headers={"Authorization": f"Bearer {key}", "X-Session-Token": token})
    lines = [JsonFormatter().format(record) for record in caplog.records]
    text = "\n".join(lines) + "\n".join(TextFormatter().format(record) for record in caplog.records)
    assert len(access_lines(caplog)) == 3
    for secret in (PASSWORD, "Wrong#Horse7Battery", "New#Horse7Battery2", key, key.split("_", 2)[2], token):
        assert secret not in text


@pytest.fixture
def json_log():
    """The root logger's records as the served process writes them: JSON lines, formatted as they are logged."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_other_records_logged_while_answering_carry_the_request_id(client, monkeypatch, json_log):
    import service.api.health as health

    monkeypatch.setattr(health, "jsonify", lambda **_: 1 / 0)
    response = client.get("/healthz", headers={"X-Request-Id": "trace-500"})
    assert response.status_code == 500 and response.headers["X-Request-Id"] == "trace-500"
    error, access = json_log()
    assert error["request_id"] == "trace-500" and "ZeroDivisionError" in error["exception"]
    assert error["level"] == "error" and error["message"] == "unhandled error"
    assert (access["logger"], access["status"], access["request_id"]) == (ACCESS_LOGGER, 500, "trace-500")


def test_the_access_log_can_be_turned_off(config, database, policy, clock, caplog):
    quiet = config.model_copy(update={"logging": Logging(access_log=False)})
    client = create_app(quiet, database=database, policy=policy, clock=clock).test_client()
    caplog.set_level(logging.INFO)
    assert client.get("/healthz").headers["X-Request-Id"]
    assert access_lines(caplog) == []


def test_text_format_and_gunicorn_logconfig():
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"request_id": "r1", "status": 200, "client": None}
    line = TextFormatter().format(record)
    assert line.endswith("INFO portal_authz.access: request request_id=r1 status=200")
    settings = Logging(level="warning", format="text")
    logconfig = gunicorn_logconfig(settings)
    assert logconfig["formatters"]["service"]["()"].endswith("TextFormatter")
    assert logconfig["root"]["level"] == "WARNING"


def test_logging_and_decision_log_configuration(tmp_path):
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    config = parse_config(data, base_dir=tmp_path)
    assert (config.logging.level, config.logging.format, config.logging.access_log) == ("info", "json", True)
    assert config.decision_log.mode == "off"
    data.update(yaml.safe_load("decision_log: {mode: off, path: logs/d.jsonl}"))  # YAML's bare off is false
    config = parse_config(data, base_dir=tmp_path)
    assert config.decision_log.mode == "off" and config.decision_log_path == tmp_path / "logs" / "d.jsonl"
    from service.config import ConfigError

    with pytest.raises(ConfigError, match="decision_log.sample_rate"):
        parse_config({**data, "decision_log": {"mode": "sampled", "sample_rate": 2}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="logging.format"):
        parse_config({**data, "logging": {"format": "xml"}}, base_dir=tmp_path)


# --- the decision log ----------------------------------------------------------------------------

@pytest.fixture
def logged(config, database, policy, clock, clinic, authorize_key, tmp_path):
    """A client of an app with the given decision log settings, and the log's lines."""
    path = tmp_path / "logs" / "decisions.jsonl"

    def _make(mode: str, rate: float = 0.01):
        settings = DecisionLog(mode=mode, sample_rate=rate, path=path)
        app = create_app(config.model_copy(update={"decision_log": settings}), database=database, policy=policy,
                         clock=clock)
        client = app.test_client()

        def ask(path="/v1/authorize", **body):
            return client.post(path, json={"portal": clinic, **body},
                               headers={"Authorization": f"Bearer {authorize_key}", "X-Request-Id": "trace-9"})

        def lines():
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        ask.client = client
        return ask, lines

    return _make


def _ask_all(ask):
    ask(actor="biller", action="eligibility", resource=ORG)
    ask(path="/v1/authorize/batch", actor="manager", checks=[
        {"action": "claims", "resource": ORG},
        {"action": "grant", "resource": {"type": "account", "id": "biller"},
         "context": {"permission": "eligibility", "password": PASSWORD}}])
    ask(path="/v1/authorized-actions", actor="biller", resource=ORG)


def test_decision_log_off_writes_nothing(logged):
    ask, lines = logged("off")
    _ask_all(ask)
    assert lines() == []


def test_decision_log_all_records_every_decision(logged, authorize_key):
    ask, lines = logged("all")
    _ask_all(ask)
    entries = lines()
    assert [e["endpoint"] for e in entries] == ["authorize", "authorize_batch", "authorize_batch",
                                                "authorized_actions"]
    denied = entries[0]
    assert {k: denied[k] for k in ("request_id", "client", "portal", "actor", "action", "resource", "permission",
                                   "allowed", "reasons")} == {
        "request_id": "trace-9", "client": "test-authorize", "portal": "ahw", "actor": "biller",
        "action": "eligibility", "resource": {"type": "organization", "id": "TIN-1", "organization": None},
        "permission": None, "allowed": False, "reasons": ["permission_not_granted"]}
    assert re.fullmatch(r"[0-9a-f]{16}", denied["policy_version"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", denied["time"])
    claims, grant = entries[1:3]
    assert (claims["index"], claims["allowed"], claims["actor"]) == (0, True, "manager")
    assert (grant["index"], grant["action"], grant["permission"]) == (1, "grant", "eligibility")
    assert "claims" in entries[3]["actions"] and "eligibility" not in entries[3]["actions"]
    assert "allowed" not in entries[3]
    text = json.dumps(entries)
    assert PASSWORD not in text and "password" not in text and authorize_key not in text


def test_decision_log_sampled_at_rate_zero_and_one(logged):
    ask, lines = logged("sampled", 0.0)
    for _ in range(20):
        ask(actor="biller", action="claims", resource=ORG)
    assert lines() == []
    ask, lines = logged("sampled", 1.0)
    for _ in range(5):
        ask(actor="biller", action="claims", resource=ORG)
    assert len(lines()) == 5


def test_a_decision_log_that_cannot_be_written_counts_and_answers(logged, tmp_path, caplog):
    (tmp_path / "logs").write_text("a file where the folder should be")
    ask, _ = logged("all")
    caplog.set_level(logging.WARNING)
    assert ask(actor="biller", action="claims", resource=ORG).get_json()["allowed"] is True
    assert ask(actor="biller", action="claims", resource=ORG).status_code == 200
    assert len([r for r in caplog.records if "decision log" in r.message]) == 1  # warned once, not per request
    assert sample(scrape(ask.client), "portal_authz_decision_log_errors_total") == 2


# --- under `portal-authz serve`: two workers, one set of numbers ---------------------------------

def _children(pid: int) -> set[int]:
    return processes(parent=pid)


def _metrics(server) -> str:
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
        assert response.headers["X-Request-Id"]
        return response.read().decode()


@pytest.mark.slow
def test_served_metrics_add_up_across_workers(tmp_path, monkeypatch, config):
    from tests.fixtures.servers import ask_every_worker, ask_server, member_with_claims

    url, key = member_with_claims(tmp_path, config)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    decisions = tmp_path / "decisions.jsonl"
    allowed = {"portal": "ahcccs", "actor": "alice", "action": "claims",
               "resource": {"type": "organization", "id": "ORG-1"}}
    denied = {**allowed, "action": "eligibility"}
    with running(["metrics"], url, tmp_path, workers=2,
                 decision_log={"mode": "all", "path": str(decisions)}) as [server]:
        assert len(list(temp.glob("portal-authz-metrics-*"))) == 1
        assert all(a["allowed"] for a in ask_every_worker(server, key, allowed))  # one on each worker
        assert not any(ask_server(server, key, denied)["allowed"] for _ in range(3))
        for _ in range(4):  # whichever worker answers the scrape, it reports both workers' counts
            text = _metrics(server)
            assert sample(text, "portal_authz_http_requests_total", route="/v1/authorize", method="POST",
                          status="200") == 5
            assert sample(text, "portal_authz_decisions_total", portal="ahcccs", action="claims",
                          outcome="allowed") == 2
            assert sample(text, "portal_authz_decision_reasons_total", portal="ahcccs", action="eligibility",
                          reason="permission_not_granted") == 3
            assert sample(text, "portal_authz_decision_duration_seconds_count", endpoint="authorize") == 5
            assert sample(text, "portal_authz_db_pool_size") == 10  # 5 per worker, both alive

        # A worker that dies: its counts stay, its pool leaves the gauges (gunicorn's child_exit hook).
        [metrics_dir] = temp.glob("portal-authz-metrics-*")
        workers = _children(server.process.pid)
        assert len(workers) == 2 and {f"gauge_livesum_{pid}.db" for pid in workers} <= set(os.listdir(metrics_dir))
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # until the replacement worker has built its app (and so written its pool size)
            current = _children(server.process.pid)
            if len(current) == 2 and current != workers and \
                    {f"gauge_livesum_{pid}.db" for pid in current} <= set(os.listdir(metrics_dir)):
                break
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert f"gauge_livesum_{min(workers)}.db" not in os.listdir(metrics_dir)
        for _ in range(4):
            text = _metrics(server)
            assert sample(text, "portal_authz_db_pool_size") == 10
            assert sample(text, "portal_authz_http_requests_total", route="/v1/authorize", status="200") == 5

    assert list(temp.glob("portal-authz-metrics-*")) == []  # removed when the server stopped
    entries = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert [(e["actor"], e["allowed"]) for e in entries].count(("alice", True)) == 2
    assert [(e["action"], e["reasons"]) for e in entries if not e["allowed"]] == [
        ("eligibility", ["permission_not_granted"])] * 3
    stderr = server.stderr_path.read_text()
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is JSON
    access = [r for r in records if r["logger"] == ACCESS_LOGGER]
    assert len([r for r in access if r["route"] == "/v1/authorize"]) == 5
    assert {r["logger"] for r in records} - {ACCESS_LOGGER}  # the WSGI server's own lines are JSON too
    assert key not in stderr and key not in decisions.read_text()

