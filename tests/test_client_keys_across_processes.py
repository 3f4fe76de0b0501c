"""Revoke and rotate through the command line, seen by every worker of two servers.

Two real `portal-authz serve` processes (gunicorn, two sync workers each, so that one held connection per
worker reaches every worker: see tests/test_across_processes.py) share one PostgreSQL database with the
settable clock (`testing: {clock: settable}`). The command runs in this process (the real `main`) on the
same configuration and database; nothing tells the servers that a key changed: they read it fresh.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from tests.fixtures.servers import IO_TIMEOUT, WORKERS, Server, each_worker, running
from tests.fixtures.world import World

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

QUESTION = {"portal": "ahcccs", "actor": "nobody", "action": "claims",
            "resource": {"type": "organization", "id": "ORG-1"}}
T0 = "2026-03-02T12:00:00+00:00"


@pytest.fixture
def servers(pg_database, tmp_path):
    with running(["server-a", "server-b"], pg_database.url, tmp_path,
                 server={"engine": "gunicorn", "threads": 1}, testing={"clock": "settable"}) as started:
        yield started


@pytest.fixture
def clients_cli(cli, servers, tmp_path, pg_database, monkeypatch):
    """`portal-authz clients ...` on the servers' own config and database; returns (exit code, stdout)."""
    monkeypatch.setenv("PORTAL_AUTHZ_DATABASE_URL", pg_database.url)
    config = tmp_path / "config.yaml"  # written by `running`

    def run(*argv):
        code, out, err = cli("clients", *argv, "--config", str(config))
        assert code == 0, err
        return out.strip()

    return run


def _status(sock: socket.socket) -> int:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1])


def statuses_from_every_worker(server: Server, key: str) -> list[int]:
    """The status of one POST /v1/authorize answered by each worker of the server (one held connection each)."""
    payload = json.dumps(QUESTION).encode()
    head = (f"POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n").encode()
    return each_worker(server, head, b"\r\n" + payload, _status)


def everywhere(servers: list[Server], key: str) -> list[int]:
    """Each worker of each server once, then two plain requests per server."""
    answers = []
    for server in servers:
        answers += statuses_from_every_worker(server, key)
        for _ in range(2):
            request = urllib.request.Request(server.base + "/v1/authorize", data=json.dumps(QUESTION).encode(),
                                             headers={"Authorization": f"Bearer {key}",
                                                      "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
                    answers.append(response.status)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)
    return answers


def move_clock(server: Server, body: dict) -> None:
    request = urllib.request.Request(server.base + "/_testing/clock", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
        assert response.status == 200


def test_revoke_and_rotate_through_the_command_line_reach_every_worker_of_every_server(
        servers, clients_cli, pg_database):
    with pg_database.transaction() as session:
        World(session, "ahcccs", datetime.now(timezone.utc)).organization("ORG-1")
    move_clock(servers[0], {"now": T0})  # one moment for the servers and the command alike
    n = len(servers) * (WORKERS + 2)

    # Revoke: the very next request with the key is refused by every worker of both servers.
    leaked = clients_cli("add", "claims-gateway", "--scopes", "authorize")
    assert everywhere(servers, leaked) == [200] * n
    clients_cli("revoke", "claims-gateway")
    assert everywhere(servers, leaked) == [401] * n

    # Rotate with a 10-minute grace period: both keys work everywhere, then only the new one.
    old = clients_cli("add", "eligibility-gateway", "--scopes", "authorize")
    new = clients_cli("rotate", "eligibility-gateway", "--grace", "10m")
    assert everywhere(servers, old) == everywhere(servers, new) == [200] * n
    move_clock(servers[1], {"advance": "PT9M59S"})
    assert everywhere(servers, old) == everywhere(servers, new) == [200] * n
    move_clock(servers[0], {"advance": "PT1S"})
    assert everywhere(servers, old) == [401] * n
    assert everywhere(servers, new) == [200] * n

    listed = {(k["name"], k["key_id"]): k for k in json.loads(clients_cli("list", "--json"))}
    assert listed[("claims-gateway", leaked.split("_")[1])]["state"] == "revoked"
    assert listed[("eligibility-gateway", old.split("_")[1])]["state"] == "expired"
    assert listed[("eligibility-gateway", new.split("_")[1])]["state"] == "active"
    assert listed[("eligibility-gateway", new.split("_")[1])]["last_used_at"] == "2026-03-02T12:09:59+00:00"  # written once a minute: not at 12:10:00
    # Every key operation is counted in each server's /metrics (from the shared audit trail), and so are
    # the refusals, summed over the server's workers.
    for server in servers:
        with urllib.request.urlopen(server.base + "/metrics", timeout=IO_TIMEOUT) as response:
            text = response.read().decode()
        for line in ('portal_authz_client_key_operations_total{operation="add"} 2.0',
                     'portal_authz_client_key_operations_total{operation="rotate"} 1.0',
                     'portal_authz_client_key_operations_total{operation="revoke"} 1.0',
                     'portal_authz_client_keys{state="revoked"} 1.0',
                     'portal_authz_client_keys{state="expired"} 1.0',
                     'portal_authz_client_keys{state="active"} 1.0'):
            assert line in text.splitlines(), (line, server.output())
        assert 'portal_authz_client_refusals_total{reason="revoked"}' in text
        assert 'portal_authz_client_refusals_total{reason="expired"}' in text
    for server in servers:
        assert server.process.poll() is None, server.output()
