"""Two servers never share a port: `serve` refuses (one line, exit 1, nothing written) a port another process
listens on, even though its own workers bind with SO_REUSEPORT; the pid file is keyed by config and port, and a
running server's pid file is never taken over. Real processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import load_config
from service.reload import pid_file_path
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import ROOT, get_json, running

pytestmark = [pytest.mark.slow]


def serve(config: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("PORTAL_AUTHZ_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "service.cli", "--config", str(config), "serve", "--workers", "1",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_second_server_on_a_taken_port_refuses_to_start_and_changes_nothing(tmp_path):
    with running(["first"], f"sqlite:///{tmp_path / 'first.db'}", tmp_path, workers=1) as [first]:
        config = tmp_path / "config.yaml"
        pid_file = pid_file_path(load_config(config), first.port)
        assert pid_file.read_text().strip() == str(first.process.pid)

        second = serve(config, f"sqlite:///{tmp_path / 'second.db'}", "--port", str(first.port))
        assert second.returncode == 1, second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert f"port {first.port} on 127.0.0.1 is taken by another process" in line
        assert not (tmp_path / "second.db").exists()  # refused before the database was touched
        assert pid_file.read_text().strip() == str(first.process.pid)  # the first server's file, untouched
        assert get_json(first.base + "/readyz")[0] == 200 and first.process.poll() is None

        # Another port, but told to use the running server's pid file: refused too, the file left alone.
        third = serve(config, f"sqlite:///{tmp_path / 'third.db'}", "--port", str(free_port()),
                      "--pid-file", str(pid_file))
        assert third.returncode == 1, third.stderr
        assert f"pid file {pid_file} belongs to a running server (pid {first.process.pid})" in third.stderr
        assert pid_file.read_text().strip() == str(first.process.pid)
    assert not pid_file.exists()  # removed by its own server when it stopped


def test_the_pid_file_is_keyed_by_config_and_port(tmp_path):
    import shutil

    shutil.copy(ROOT / "config.yaml", tmp_path / "qa-config.yaml")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shipped, qa = load_config(tmp_path / "config.yaml"), load_config(tmp_path / "qa-config.yaml")
    assert pid_file_path(shipped, 8000) == tmp_path / "portal-authz-config-8000.pid"
    assert pid_file_path(qa, 8000) == tmp_path / "portal-authz-qa-config-8000.pid"
    assert pid_file_path(shipped, 8001) != pid_file_path(shipped, 8000)
