"""A test double that is the real thing: a `portal-authz serve` on a throw-away SQLite database, with your
policy directory and your seed data, so your tests ask the real policy, not a mock.

As a pytest plugin (`pytest_plugins = ["portal_authz_client.testing"]` in your conftest.py), configured in
pytest.ini / pyproject's `[tool.pytest.ini_options]` or on the command line:

    portal_authz_config = deploy/portal-authz/config.yaml    # your service config (portals, catalogs)
    portal_authz_policies = deploy/portal-authz/policies     # default: the config's policy_dir
    portal_authz_seed = tests/authz-seed.yaml                # organizations, accounts, grants
    portal_authz_command = portal-authz                      # default: $PORTAL_AUTHZ_COMMAND, then PATH

then use the fixtures `portal_authz_server` (one server for the session: `.base_url`, `.key`, `.keys`) and
`portal_authz_client` (a `Client` for it). Without pytest: `with running_server(config=..., seed=...) as s:`.

The seed document is the service's (`portal-authz seed`): `portal`, `organizations`, `accounts` with
`memberships` (role, permissions) and `clients`. A client `test-double` with every scope is added to it.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal_authz_client._client import Client

TEST_CLIENT = "test-double"
SCOPES = ("authorize", "manage", "enroll")


class TestServerError(RuntimeError):
    """The test server could not be seeded or started; the message carries its output."""

    __test__ = False  # not a test class, whatever pytest thinks of the name


def _command(command: str | list[str] | None) -> list[str]:
    if isinstance(command, list):
        return command
    text = command or os.environ.get("PORTAL_AUTHZ_COMMAND")
    if text:
        return shlex.split(text)
    found = shutil.which("portal-authz")
    if found is None:
        raise TestServerError("no `portal-authz` command: install the service, or give its path as "
                              "portal_authz_command / $PORTAL_AUTHZ_COMMAND")
    return [found]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _load_yaml(path: Path) -> Any:
    import yaml  # the [testing] extra

    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class TestServer:
    """A running `portal-authz serve`: its address, the test client's key, every seeded client's key."""

    __test__ = False

    base_url: str
    key: str
    keys: dict[str, str]
    directory: Path
    process: subprocess.Popen[bytes]
    seeded: dict[str, Any] = field(default_factory=dict)

    def client(self, **options: Any) -> Client:
        return Client(self.base_url, options.pop("key", self.key), **{"timeout": 5.0, **options})

    def output(self) -> str:
        parts = []
        for name in ("serve.out", "serve.err"):
            try:
                parts.append(f"--- {name}\n" + (self.directory / name).read_text(errors="replace")[-6000:])
            except OSError:
                pass
        return "\n".join(parts)

    def kill(self) -> None:
        """Stop it at once, as a crash would (SIGKILL to its process group)."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # whatever is left of its workers
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _signal(self, which: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, which)
        except (ProcessLookupError, PermissionError):
            pass


def start_server(*, config: str | os.PathLike[str], policy_dir: str | os.PathLike[str] | None = None,
                 seed: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 command: str | list[str] | None = None, host: str = "127.0.0.1", port: int | None = None,
                 directory: str | os.PathLike[str] | None = None, settable_clock: bool = True,
                 start_timeout: float = 60.0) -> TestServer:
    """Seed a new SQLite database and serve it; `stop()` it when done (or use `running_server`).

    config: the service configuration to copy (portals, catalogs); the copy points at a database and files in
    `directory` (default: a new temporary one). settable_clock: `POST /_testing/clock` moves time, and
    passwords hash at test cost (`testing: {clock: settable, hashing: cheap}`)."""
    import yaml

    argv = _command(command)
    source = Path(config).resolve()
    data = _load_yaml(source) or {}
    if not isinstance(data, dict):
        raise TestServerError(f"{source}: not a portal-authz configuration (a mapping)")
    where = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="portal-authz-test-"))
    where.mkdir(parents=True, exist_ok=True)
    policies = Path(policy_dir).resolve() if policy_dir else (source.parent / data.get("policy_dir", "policies")).resolve()
    if not policies.is_dir():
        raise TestServerError(f"policy directory {policies} does not exist")
    data["policy_dir"] = str(policies)
    data["database"] = {**(data.get("database") or {}), "url": f"sqlite:///{where / 'portal-authz.db'}"}
    data["demo"] = {**(data.get("demo") or {}), "enabled": False}
    if settable_clock:
        data["testing"] = {**(data.get("testing") or {}), "clock": "settable", "hashing": "cheap"}
    data.setdefault("server", {})
    data["server"] = {**(data["server"] or {}), "pid_file": str(where / "portal-authz.pid")}
    config_path = where / "config.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    document: dict[str, Any]
    if seed is None:
        document = {}
    elif isinstance(seed, Mapping):
        document = dict(seed)
    else:
        document = _load_yaml(Path(seed)) or {}
    document["clients"] = [*document.get("clients", []), {"name": TEST_CLIENT, "scopes": list(SCOPES)}]
    seed_path = where / "seed.yaml"
    seed_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if k not in ("PORTAL_AUTHZ_DATABASE_URL", "PORTAL_AUTHZ_CONFIG")}
    seeded = subprocess.run([*argv, "--config", str(config_path), "seed", str(seed_path)], env=env, cwd=where,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=start_timeout)
    if seeded.returncode != 0:
        raise TestServerError(f"`portal-authz seed` failed ({seeded.returncode}):\n{seeded.stderr.strip()}")
    try:
        result = json.loads(seeded.stdout)
        keys = dict(result["client_keys"])
    except (ValueError, KeyError, TypeError):
        raise TestServerError(f"`portal-authz seed` printed no client keys:\n{seeded.stdout[:2000]}") from None

    port = port or _free_port(host)
    with open(where / "serve.out", "wb") as out, open(where / "serve.err", "wb") as err:
        process = subprocess.Popen(
            [*argv, "--config", str(config_path), "serve", "--host", host, "--port", str(port), "--workers", "1"],
            env=env, cwd=where, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    server = TestServer(f"http://{host}:{port}", keys[TEST_CLIENT], keys, where, process, result)
    deadline = time.monotonic() + start_timeout
    while True:
        if process.poll() is not None:
            raise TestServerError(f"`portal-authz serve` exited with {process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.base_url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TestServerError(f"`portal-authz serve` not ready after {start_timeout:.0f}s:\n{server.output()}")
        time.sleep(0.1)


@contextmanager
def running_server(**options: Any) -> Iterator[TestServer]:
    """`start_server(...)`, stopped on leaving the block."""
    server = start_server(**options)
    try:
        yield server
    finally:
        server.stop()


# --- the pytest plugin ------------------------------------------------------------------------------------

OPTIONS = {
    "portal_authz_config": "the portal-authz config.yaml the test server copies (portals, catalogs)",
    "portal_authz_policies": "the policy directory the test server loads (default: the config's policy_dir)",
    "portal_authz_seed": "the seed YAML: organizations, accounts with memberships and permissions, clients",
    "portal_authz_command": "the portal-authz command (default: $PORTAL_AUTHZ_COMMAND, then `portal-authz` on PATH)",
}


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("portal-authz", "portal-authz test server")
    for name, text in OPTIONS.items():
        parser.addini(name, text)
        group.addoption("--" + name.replace("_", "-"), dest=name, default=None, help=text)


def _option(config: Any, name: str) -> str | None:
    value = config.getoption(name, default=None)
    if value:
        return str(value)
    value = config.getini(name)
    if value:
        return str(config.rootpath / value) if name != "portal_authz_command" else str(value)
    return None


try:
    import pytest
except ImportError:  # the plugin needs pytest; start_server/running_server do not
    pass
else:
    @pytest.fixture(scope="session")
    def portal_authz_server(request: Any, tmp_path_factory: Any) -> Iterator[TestServer]:
        """One real portal-authz server for the test session, seeded as configured."""
        config = _option(request.config, "portal_authz_config")
        if config is None:
            pytest.fail("portal_authz_config is not set (pytest.ini, or --portal-authz-config)", pytrace=False)
        try:
            server = start_server(config=config, policy_dir=_option(request.config, "portal_authz_policies"),
                                  seed=_option(request.config, "portal_authz_seed"),
                                  command=_option(request.config, "portal_authz_command"),
                                  directory=tmp_path_factory.mktemp("portal-authz"))
        except TestServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def portal_authz_client(portal_authz_server: TestServer) -> Iterator[Client]:
        """A Client for the session's test server, with the test client's key (every scope)."""
        with portal_authz_server.client() as client:
            yield client
