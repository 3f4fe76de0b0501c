"""`portal-authz serve --deliver`: the delivery loop runs beside the server, and stops with it.

A real server with an SMTP server (aiosmtpd) on loopback: a password recovery
asked over the API is emailed by the server's own delivery child; a delivery
child that dies is logged and started again; and once the server is stopped
(SIGTERM or SIGINT to its main process) no process of it remains.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.servers import ROOT, Server, processes, running, served_world, wait_for
from tests.fixtures.http import ANSWERS, give_answers
from tests.fixtures.smtp import Collector

pytestmark = [pytest.mark.slow]


def session_processes(sid: int) -> set[int]:
    """Every live process of a session (the server was started in a new session: sid = its pid)."""
    return processes(session=sid)


def delivery_pids(server: Server) -> list[int]:
    return [int(pid) for pid in re.findall(r"delivery worker started \(pid (\d+)\)", server.stderr_path.read_text())]


def recover(server: Server, key: str, username: str) -> int:
    body = json.dumps({"username": username, "answers": ANSWERS}).encode()
    request = urllib.request.Request(server.base + "/v1/portals/ahcccs/password-recoveries", data=body,
                                     method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.fixture
def seeded(tmp_path, config):
    def build(world):
        world.organization("P-1")
        for username in ("ian", "jo"):
            give_answers(world, world.account(username, memberships={"P-1": {"permissions": ["claims"]}}))

    return served_world(tmp_path, config, "deliver", build, ("manage",))


def delivery_settings(tmp_path: Path, port: int) -> dict:
    return {"smtp": {"host": "127.0.0.1", "port": port, "timeout_seconds": 5},
            "interval_seconds": 0.5, "letters_dir": str(tmp_path / "letters")}


def scrape(server: Server) -> str:
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
        return response.read().decode()


def received(handler: Collector, to: str) -> list:
    with handler.lock:
        return [m for m in handler.messages if m["To"] == to]


@pytest.mark.parametrize(("engine", "stop_signal"), [("granian", signal.SIGTERM), ("granian", signal.SIGINT),
                                                    ("gunicorn", signal.SIGTERM)],
                         ids=["granian-SIGTERM", "granian-SIGINT", "gunicorn-SIGTERM"])
def test_serve_deliver_emails_what_the_api_queued_and_leaves_no_process(tmp_path, seeded, smtp, engine, stop_signal):
    url, key = seeded
    handler, port = smtp
    with running(["deliver"], url, tmp_path, args=("--deliver", "--engine", engine),
                 delivery=delivery_settings(tmp_path, port)) as [server]:
        [first] = wait_for(lambda: delivery_pids(server), server, "the delivery child starts")
        assert first in session_processes(server.process.pid)

        assert recover(server, key, "ian") == 202
        [email] = wait_for(lambda: received(handler, "ian@example.org"), server, "the recovery email is sent")
        assert email["Subject"] == "Password recovery"
        # The child's counters reach the server's /metrics (the multiprocess files it inherits).
        wait_for(lambda: 'portal_authz_delivery_attempts_total{channel="email"} 1.0' in scrape(server), server,
                 "the delivery child's attempt shows in the server's /metrics")

        if stop_signal == signal.SIGTERM:
            # A delivery child that dies is logged and started again; the new one delivers too.
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: f"delivery worker (pid {first}) was killed by signal 9" in server.stderr_path.read_text(),
                     server, "the server logs the death")
            [_, second] = wait_for(lambda: delivery_pids(server)[1:] and delivery_pids(server), server,
                                   "a new delivery child starts")
            assert recover(server, key, "jo") == 202
            wait_for(lambda: received(handler, "jo@example.org"), server, "the second email is sent")
        children = session_processes(server.process.pid)
        assert len(children) >= 4  # main process, two workers, the delivery child

        server.process.send_signal(stop_signal)  # to the main process only, as a service manager does
        server.process.wait(timeout=20)
        wait_for(lambda: not session_processes(server.process.pid), server, "no process of the server remains")
    assert "delivery worker stopped" in server.stderr_path.read_text()
    assert len(received(handler, "ian@example.org")) == 1  # sent once


def test_the_delivery_child_stops_when_the_server_is_gone(tmp_path, cli_config):
    """A `deliver --parent-pid` whose parent is not (or no longer) that process exits at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "service.cli", "--config", str(cli_config), "deliver",
                           "--interval", "0.2", "--parent-pid", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "the server (pid 1) is gone; stopping" in done.stderr
