"""Nothing is created unless asked: the shipped config serves an empty database and leaves it empty; the demo
comes only with `serve --demo` (what scripts/serve runs), only on an empty database, and its secrets go to the
terminal or to a file only its owner can read, never to a log."""
from __future__ import annotations

import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
import uuid
from argparse import Namespace

import pytest
import yaml
from sqlalchemy import func, select as sql_select

from service import cli
from service.config import load_config
from service.storage.database import Database
from service.storage.models import Account, ClientKey, Organization
from tests.fixtures.postgres import free_port
from tests.fixtures.servers import ROOT, Server, server_config

SECRET = re.compile(r"pak_[A-Za-z0-9_-]+|password \S+")


def counts(url: str) -> tuple[int, int, int]:
    database = Database(url)
    try:
        with database.sessions() as session:
            return tuple(session.scalar(sql_select(func.count()).select_from(model))
                         for model in (Organization, Account, ClientKey))
    finally:
        database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """The URL of a database that holds nothing at all: no schema, no rows."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.mark.slow
def test_the_shipped_config_serves_an_empty_database_and_creates_nothing(empty_url, tmp_path):
    server = Server("shipped", ROOT / "config.yaml", empty_url, tmp_path, workers=1,
                    args=("--pid-file", str(tmp_path / "serve.pid")))
    try:
        server.wait_ready()
    finally:
        server.stop()
    assert counts(empty_url) == (0, 0, 0)
    output = server.output()
    assert not SECRET.search(output) and "demo" not in output.lower(), output


def test_the_shipped_config_asks_for_no_demo():
    assert yaml.safe_load((ROOT / "config.yaml").read_text())["demo"]["enabled"] is False
    assert load_config(ROOT / "config.yaml").demo.enabled is False


def test_scripts_serve_asks_for_the_demo():
    assert re.search(r"^exec \S+ serve --demo ", (ROOT / "scripts" / "serve").read_text(), re.M)


def _read_until(fd: int, marker: bytes, process: subprocess.Popen, timeout: float = 60.0) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen:
        assert process.poll() is None and time.monotonic() < deadline, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed: the server is gone
                break
    return seen


@pytest.mark.slow
def test_serve_demo_on_a_terminal_prints_the_secrets_once_and_nothing_to_the_log(tmp_path):
    """What `scripts/serve` does on a fresh clone: the demo's passwords and key on the terminal that asked."""
    config = server_config(tmp_path)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    primary, secondary = pty.openpty()
    env = {**os.environ, "PORTAL_AUTHZ_DATABASE_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(tmp_path / "serve.err", "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--config", str(config), "serve", "--demo", "--workers", "1",
             "--port", str(free_port()), "--pid-file", str(tmp_path / "serve.pid")],
            cwd=ROOT, env=env, stdout=secondary, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(secondary)
    try:
        shown = _read_until(primary, b"Ask a first decision", process).decode()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        os.close(primary)
    assert "created a demo organization DEMO-0001" in shown
    assert re.search(r"console as demo\.admin:\s+http://127\.0\.0\.1:\d+/console/ahcccs/", shown)
    assert re.search(r"demo\.admin\s+password \S+", shown) and re.search(r"demo\.member\s+password \S+", shown)
    key = re.search(r"pak_[A-Za-z0-9_-]+", shown).group(0)
    log = (tmp_path / "serve.err").read_text()
    assert key not in log and "password" not in log
    assert not (tmp_path / cli.DEMO_SECRETS_FILE).exists()
    assert counts(url) == (1, 2, 1)


def _serve_args(**extra) -> Namespace:
    return Namespace(**{"demo": True, "host": "127.0.0.1", "port": 8000, **extra})


def test_the_demo_off_a_terminal_goes_to_a_file_only_its_owner_reads(tmp_path, capsys):
    config = load_config(server_config(tmp_path))
    database = cli.prepare_database(config)
    try:
        cli._offer_demo(config, database, _serve_args())
    finally:
        database.dispose()
    out, err = capsys.readouterr()
    secrets_file = tmp_path / cli.DEMO_SECRETS_FILE
    assert str(secrets_file) in out and "readable only by its owner" in out
    assert "the demo organization's console: http://127.0.0.1:8000/console/ahcccs/" in out
    assert not SECRET.search(out + err)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    text = secrets_file.read_text()
    assert re.search(r"pak_[A-Za-z0-9_-]+", text) and re.search(r"demo\.member\s+password \S+", text)


def test_the_demo_is_not_created_unless_asked(tmp_path, capsys):
    config = load_config(server_config(tmp_path))
    database = cli.prepare_database(config)
    try:
        cli._offer_demo(config, database, _serve_args(demo=False))
        with database.sessions() as session:
            assert session.scalar(sql_select(func.count()).select_from(Organization)) == 0
    finally:
        database.dispose()
    assert capsys.readouterr() == ("", "")


def test_the_demo_asked_for_on_a_database_with_organizations_creates_nothing_and_says_so(any_database, tmp_path,
                                                                                        capsys, clock):
    from tests.fixtures.world import World

    config = load_config(server_config(tmp_path))
    with any_database.transaction() as session:
        World(session, "ahcccs", clock.now()).organization("ORG-1")
    before = counts(any_database.url)
    cli._offer_demo(config, any_database, _serve_args())
    assert counts(any_database.url) == before
    out, err = capsys.readouterr()
    # The console's address is told all the same: a demo made by an earlier run is still signed in to there.
    assert out == "portal-authz: the demo organization's console: http://127.0.0.1:8000/console/ahcccs/\n"
    assert "demo not created: the database already holds organizations" in err
    assert not (tmp_path / cli.DEMO_SECRETS_FILE).exists()
