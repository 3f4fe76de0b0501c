"""Revoking a grant changes the very next decision at once, from every worker of every server.

Two real `portal-authz serve` processes (gunicorn, two sync workers each) share
one PostgreSQL database. The test writes straight into that database (as
another replica or an admin's change would) and asks both servers again.

To be sure *each worker* answers, not just some worker, `ask_every_worker`
opens one connection per worker and sends only the head of a request on each.
A sync worker that accepted such a connection is stuck reading it until the
rest arrives, so it cannot accept another one: the N held connections are
answered by N different workers.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, select, update

from service.domain import clients
from service.policy import Policy
from service.storage.models import Grant, Membership
from tests.fixtures.postgres import free_port
from tests.fixtures.world import World

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
START_TIMEOUT = 40.0
IO_TIMEOUT = 10.0


class Server:
    """One `portal-authz serve` process group, its port and its output files."""

    def __init__(self, name: str, config_path: Path, database_url: str, log_dir: Path):
        self.name, self.port = name, free_port()
        self.stdout_path, self.stderr_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": database_url,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("PORTAL_AUTHZ_CONFIG", None)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "--config", str(config_path), "serve",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(WORKERS)],
                cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        text = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                text.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
            except OSError:
                pass
        return "\n".join(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful stop of the master and its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of this server's own process group (workers included)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(servers: list[Server]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(servers)
    while pending:
        server = pending[0]
        if server.process.poll() is not None:
            pytest.fail(f"server {server.name} exited with {server.process.returncode} before it was ready:\n"
                        f"{server.output()}", pytrace=False)
        try:
            status, _ = get_json(server.base + "/readyz")
            if status == 200:
                pending.pop(0)
                continue
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server {server.name} not ready after {START_TIMEOUT:.0f}s:\n{server.output()}",
                        pytrace=False)
        time.sleep(0.2)


@pytest.fixture
def servers(pg_database, tmp_path):
    """Two servers on one fresh PostgreSQL database; stopped (and killed if need be) afterwards."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["demo"] = {**config.get("demo", {}), "enabled": False}
    config["policy_dir"] = str(ROOT / "policies")
    config.setdefault("database", {})["url"] = None
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    started: list[Server] = []
    try:
        for name in ("server-a", "server-b"):
            started.append(Server(name, config_path, pg_database.url, tmp_path))
        wait_ready(started)
        yield started
    finally:
        for server in started:
            server.stop()


def _request_bytes(key: str, body: dict) -> tuple[bytes, bytes]:
    """A POST /v1/authorize split in two: the head without its blank line, then the rest."""
    payload = json.dumps(body).encode()
    head = (f"POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n").encode()
    return head, b"\r\n" + payload


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


def ask_every_worker(server: Server, key: str, body: dict) -> list[dict]:
    """The same question answered once by each of the server's workers (see the module doc)."""
    head, rest = _request_bytes(key, body)
    held = []
    try:
        for _ in range(WORKERS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
            held.append(sock)
            sock.sendall(head)
        time.sleep(0.3)  # let every idle worker accept one of the held connections
        answers = []
        for sock in held:
            sock.sendall(rest)
            status, answer = _read_response(sock)
            assert status == 200, (status, answer, server.output())
            answers.append(answer)
        return answers
    finally:
        for sock in held:
            sock.close()


def ask(server: Server, key: str, body: dict) -> dict:
    """One plain request on a new connection, answered by whichever worker takes it."""
    request = urllib.request.Request(server.base + "/v1/authorize", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
        assert response.status == 200
        return json.loads(response.read())


def answers_from_everywhere(servers: list[Server], key: str, actor: str, action: str = "claims",
                            extra: int = 3) -> list[dict]:
    """Each worker of each server once, then `extra` more plain requests per server."""
    body = {"portal": "ahcccs", "actor": actor, "action": action,
            "resource": {"type": "organization", "id": "ORG-1"}}
    answers = []
    for server in servers:
        answers += ask_every_worker(server, key, body)
        answers += [ask(server, key, body) for _ in range(extra)]
    return answers


def codes(answer: dict) -> list[str]:
    return [reason["code"] for reason in answer["reasons"]]


def test_a_revoked_grant_or_removed_membership_denies_at_once_on_every_worker(servers, pg_database):
    now = datetime.now(timezone.utc)
    with pg_database.transaction() as session:
        world = World(session, "ahcccs", now)
        world.organization("ORG-1")
        world.account("boss", memberships={"ORG-1": {"role": "admin"}})
        for username in ("alice", "bob", "carol"):
            world.account(username, memberships={"ORG-1": {"permissions": ["claims", "eligibility"]}})
        key = clients.create_client(session, "across-processes", ("authorize",), now)

    # Same policy in every process, and it is the one in the repository.
    versions = [get_json(server.base + "/readyz") for server in servers]
    assert [status for status, _ in versions] == [200, 200]
    assert versions[0][1]["policy_version"] == versions[1][1]["policy_version"] == \
        Policy(ROOT / "policies").version

    expected = len(servers) * (WORKERS + 3)
    for actor in ("alice", "bob", "carol"):
        answers = answers_from_everywhere(servers, key, actor)
        assert len(answers) == expected
        assert all(a["allowed"] and a["reasons"] == [] for a in answers), answers
        assert {a["policy_version"] for a in answers} == {versions[0][1]["policy_version"]}

    # Revoke alice's claims grant: the next request, on every worker of both servers, is denied.
    with pg_database.transaction() as session:
        link = session.scalar(select(Membership.id).where(Membership.account.has(username="alice")))
        deleted = session.execute(delete(Grant).where(Grant.membership_id == link, Grant.permission == "claims"))
        assert deleted.rowcount == 1
    answers = answers_from_everywhere(servers, key, "alice")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["permission_not_granted"])] * expected

    # Remove bob from the organization (the service's way: the link's status) ...
    with pg_database.transaction() as session:
        changed = session.execute(update(Membership).where(Membership.account.has(username="bob"))
                                  .values(status="removed"))
        assert changed.rowcount == 1
    answers = answers_from_everywhere(servers, key, "bob")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["not_member"])] * expected

    # ... and delete carol's membership row outright.
    with pg_database.transaction() as session:
        gone = session.execute(delete(Membership).where(Membership.account.has(username="carol")))
        assert gone.rowcount == 1
    answers = answers_from_everywhere(servers, key, "carol")
    assert [(a["allowed"], codes(a)) for a in answers] == [(False, ["not_member"])] * expected

    # Nothing else changed: alice keeps her other grant, the admin still holds the catalog.
    for actor, action in (("alice", "eligibility"), ("boss", "claims")):
        answers = answers_from_everywhere(servers, key, actor, action, extra=0)
        assert [(a["allowed"], a["reasons"]) for a in answers] == [(True, [])] * (len(servers) * WORKERS)
    for server in servers:
        assert server.process.poll() is None, server.output()
