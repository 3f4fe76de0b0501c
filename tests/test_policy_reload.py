"""`portal-authz policy reload` and SIGHUP: every worker of a running server loads the new policy in place.

A real `portal-authz serve` with two workers serves a copy of `policies/` in
tmp. The test adds a rule to the copy (whoever may submit claims may also check
eligibility), runs `portal-authz policy reload`, and asks /readyz on a new
connection each time until many answers in a row report the new version; each
worker's own log line proves it loaded that version, and the worker processes
are the same ones as before (reloaded in place, not replaced). A decision
changes accordingly.

Then the copy is broken: `policy reload` exits non-zero with the error and
signals nothing; SIGHUP sent anyway is refused by the main process; every
worker keeps answering with the previous version, and a worker killed and
replaced now still boots (on the last good policy, not the broken files).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import urllib.request

import pytest

from service.policy import Policy
from tests.fixtures.servers import KILLED, ROOT, Server, get_json, member_with_claims, processes, running, wait_for

pytestmark = [pytest.mark.slow]

WORKERS = 2
IN_A_ROW = 40  # consecutive /readyz answers on new connections that must all agree
DEADLINE = 30.0
ADDED_RULE = """# Added by tests/test_policy_reload.py: whoever may submit claims may also check eligibility.
allow(actor: Account, "eligibility", org: Organization) if
    allow(actor, "claims", org);
"""
BROKEN = "allow(actor: Account, \"eligibility\", org: Organization) if\n    allow(actor, \"claims\"\n"
QUESTION = {"portal": "ahcccs", "actor": "alice", "resource": {"type": "organization", "id": "ORG-1"}}


def workers_of(pid: int) -> set[int]:
    """The server's worker processes: its children."""
    return processes(parent=pid)


def readyz_version(server: Server) -> str:
    status, body = get_json(server.base + "/readyz")  # urllib: a new connection every time
    assert status == 200, (status, body, server.output())
    return body["policy_version"]


def until_all_report(server: Server, version: str) -> None:
    """Ask /readyz on new connections until IN_A_ROW answers in a row report `version`."""
    deadline, in_a_row, seen = time.monotonic() + DEADLINE, 0, []
    while in_a_row < IN_A_ROW:
        answer = readyz_version(server)
        seen.append(answer)
        in_a_row = in_a_row + 1 if answer == version else 0
        assert time.monotonic() < deadline, (version, seen[-50:], server.output())


def always_reports(server: Server, version: str, times: int = IN_A_ROW) -> None:
    answers = [readyz_version(server) for _ in range(times)]
    assert set(answers) == {version}, answers


def decide(server: Server, key: str, action: str) -> dict:
    body = json.dumps({**QUESTION, "action": action}).encode()
    request = urllib.request.Request(server.base + "/v1/authorize", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def scrape(server: Server) -> str:
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
        return response.read().decode()


def metric(text: str, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def loaded_by(server: Server, version: str) -> set[int]:
    """Worker pids that logged loading `version` on a reload."""
    text = server.stderr_path.read_text()
    return {int(pid) for pid in re.findall(rf"worker (\d+): policy {version} loaded", text)}


@pytest.fixture
def world(tmp_path, config):
    url, key = member_with_claims(tmp_path, config, "reload")
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    return url, key, policies


@pytest.mark.parametrize("engine", ["granian", "gunicorn"])
def test_reload_reaches_every_worker_in_place_and_a_broken_policy_changes_nothing(world, tmp_path, cli, engine):
    url, key, policies = world
    config_path = tmp_path / "config.yaml"
    with running(["reload"], url, tmp_path, workers=WORKERS, policy_dir=str(policies),
                 server={"engine": engine}) as [server]:
        old = Policy(policies).version
        always_reports(server, old)
        assert decide(server, key, "eligibility")["allowed"] is False
        workers = workers_of(server.process.pid)
        assert len(workers) == WORKERS

        # A semantically different, valid policy: the CLI checks it and signals the server.
        (policies / "reload_test.polar").write_text(ADDED_RULE)
        new = Policy(policies).version
        assert new != old
        code, out, err = cli("policy", "reload", "--config", str(config_path), "--port", str(server.port))
        assert code == 0, (out, err)
        assert f"policy {new} loads" in out and str(server.process.pid) in out
        until_all_report(server, new)
        wait_for(lambda: loaded_by(server, new) == workers, server, "every worker logs the new version")
        assert workers_of(server.process.pid) == workers  # the same processes: reloaded in place
        answers = [decide(server, key, "eligibility") for _ in range(10)]
        assert [(a["allowed"], a["policy_version"]) for a in answers] == [(True, new)] * 10

        # A policy that does not load: refused by the CLI, which sends nothing ...
        (policies / "reload_test.polar").write_text(BROKEN)
        log_size = server.stderr_path.stat().st_size
        code, out, err = cli("policy", "reload", "--config", str(config_path), "--port", str(server.port))
        assert code == 1 and "does not load" in err and "reload_test.polar" in err, (code, out, err)
        time.sleep(0.5)
        assert "policy reload" not in server.stderr_path.read_text()[log_size:]

        # ... and by the server when SIGHUP comes anyway: the workers keep the running policy.
        os.kill(server.process.pid, signal.SIGHUP)
        wait_for(lambda: "policy reload refused" in server.stderr_path.read_text()[log_size:], server,
                 "the main process refuses the broken policy")
        always_reports(server, new)
        assert decide(server, key, "eligibility")["allowed"] is True
        assert decide(server, key, "claims")["allowed"] is True
        assert workers_of(server.process.pid) == workers and server.process.poll() is None
        # /metrics, whichever worker answers: the refused reload counted, the version still the new one.
        metrics = scrape(server)
        assert metric(metrics, "portal_authz_policy_reload_failures_total") == 1
        assert metric(metrics, "portal_authz_policy_reloads_total") == WORKERS  # each worker's one reload
        assert metric(metrics, f'portal_authz_policy_info{{version="{new}"}}') == 1
        assert metric(metrics, f'portal_authz_policy_info{{version="{old}"}}') == 0

        # A worker that dies now is replaced by one that boots on the last good policy.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(workers_of(server.process.pid) - {victim}) == WORKERS, server,
                 "a replacement worker starts")
        always_reports(server, new)
        assert server.process.poll() is None, server.output()

        # The files fixed again (the added rule removed): back to the first policy everywhere.
        (policies / "reload_test.polar").unlink()
        code, out, err = cli("policy", "reload", "--config", str(config_path), "--port", str(server.port))
        assert code == 0, (out, err)
        until_all_report(server, old)
        assert decide(server, key, "eligibility")["allowed"] is False
    assert not list(tmp_path.glob("portal-authz-*.pid"))  # removed when the server stopped
    # The replacement worker may still be starting when the server is stopped: it stops too, and is not killed.
    assert server.process.returncode == 0 and KILLED not in server.stderr_path.read_text(), server.output()


def test_reload_without_a_running_server_says_so(cli_config, cli, tmp_path):
    code, _, err = cli("policy", "reload", "--config", str(cli_config), "--port", "1")
    assert code == 3 and "no pid file" in err and "portal-authz-config-1.pid" in err
    (tmp_path / "stale.pid").write_text("999999999\n")
    code, _, err = cli("policy", "reload", "--config", str(cli_config), "--pid-file", str(tmp_path / "stale.pid"))
    assert code == 3 and "not running" in err
