"""The `portal-authz` command: serve, migrate, seed, clients add/list/revoke/rotate, check,
policy test/explain/diff/reload, sweep, deliver."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from service.config import CONFIG_ENV, DEFAULT_HOST, DEFAULT_PORT, Config, ConfigError, load_config


def _die(message: str, code: int = 2) -> None:
    print(f"portal-authz: {message}", file=sys.stderr)
    raise SystemExit(code)


def one_line(message: str) -> str:
    """oso's multi-line compile error (message, source line, caret, help link) as one line."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith("^") and "help.osohq.com" not in line
            and not re.match(r"^\d+: ", line)]
    return " ".join(kept).rstrip(":")


def policy_problem(exc: Exception) -> str:
    """A refused policy's problems one per line ("file:line: what"); a compile error on one line."""
    from service.policy import PolicyCheckError

    return str(exc) if isinstance(exc, PolicyCheckError) else one_line(str(exc))


def _config(args) -> Config:
    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        _die(str(exc))
        raise  # unreachable


def prepare_database(config: Config):
    """Create or upgrade the schema and mirror the portals; returns the Database."""
    from service.domain.setup import sync_portals
    from service.storage.database import Database

    database = Database(config.database_url)
    database.upgrade_schema()
    with database.transaction() as session:
        sync_portals(session, config)
    return database


DEMO_SECRETS_FILE = "demo-secrets.txt"


def _demo_text(demo, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return f"""
First run: created a demo organization {demo.organization} in portal {demo.portal!r}.
These secrets are shown only now; only their hashes are stored.
  admin   demo.admin   password {demo.admin_password}
  member  demo.member  password {demo.member_password}
  client key (scopes authorize,manage,enroll): {demo.client_key}

Sign in to the User Management console as demo.admin:
  {console_address(base, demo.portal)}

Ask a first decision:
  curl -s {base}/v1/authorize -H 'Authorization: Bearer {demo.client_key}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"portal": "{demo.portal}", "actor": "demo.member", "action": "claims", "resource": {{"type": "organization", "id": "{demo.organization}"}}}}'
"""


def console_address(base: str, portal: str) -> str:
    return f"{base}/console/{portal}/"


def _write_owner_only(path: Path, text: str) -> None:
    """Replace `path` with a file only its owner can read (made 0600 before a byte is written)."""
    import tempfile

    fd, temporary = tempfile.mkstemp(prefix=".demo-secrets-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _offer_demo(config: Config, database, args) -> None:
    """The demo, only when asked for, only on an empty database; its secrets to the terminal, never to a log.

    Standard output that is not a terminal is usually a log collector: then the secrets go to a file
    beside the config that only its owner can read, and only that file's name is printed.
    """
    from service.clock import SystemClock
    from service.domain.setup import create_demo, is_empty

    if not (args.demo or config.demo.enabled):
        return
    print(f"portal-authz: the demo organization's console: "
          f"{console_address(f'http://{args.host}:{args.port}', config.demo.portal)}", flush=True)
    with database.transaction() as session:
        demo = create_demo(session, config, SystemClock().now()) if is_empty(session) else None
    if demo is None:
        print("portal-authz: demo not created: the database already holds organizations or client keys",
              file=sys.stderr, flush=True)
        return
    text = _demo_text(demo, args.host, args.port)
    if sys.stdout.isatty():
        print(text, flush=True)
        return
    path = config.base_dir.resolve() / DEMO_SECRETS_FILE
    _write_owner_only(path, text.lstrip("\n"))
    print(f"portal-authz: created the demo organization {demo.organization} in portal {demo.portal!r}; "
          f"its passwords and client key are in {path} (readable only by its owner)", flush=True)


def _config_path(args) -> Path:
    """The configuration file this command read, for a child process to read it too."""
    return Path(getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or "config.yaml").resolve()


def _load_policy(config: Config, code: int = 2):
    from service.policy import Policy, PolicyLoadError

    try:
        return Policy(config.policy_path)
    except PolicyLoadError as exc:
        _die(str(exc), code)


def cmd_serve(args) -> None:
    from service.background import DeliveryProcess
    from service.observe import serving
    from service.policy import PolicyLoadError
    from service.reload import PidFileTaken, PortTaken, check_pid_file_free, check_port_free, pid_file_path
    from service.server import Options, default_threads, default_workers, serve

    config = _config(args)
    pid_file = pid_file_path(config, args.port, args.pid_file)
    try:  # before anything is written: a second server on a taken port changes nothing
        check_port_free(args.host, args.port)
        check_pid_file_free(pid_file)
    except (PortTaken, PidFileTaken) as exc:
        _die(str(exc), 1)
    delivers = args.deliver or config.delivery.in_serve
    if (args.demo or config.demo.enabled) and config.delivery.by_caller is None and not delivers:
        # The demo delivers nothing: whoever tries it plays the caller and reads the activation letter's
        # code from the outbox (the worked example, docs/tour.md).
        config = config.model_copy(update={"delivery": config.delivery.model_copy(update={"by_caller": True})})
    if args.deliver and config.delivery.by_caller:
        _die("--deliver: delivery.by_caller is true (the calling service delivers); serve cannot deliver too")
    _load_policy(config)  # refuse to start on a policy that does not load, before any worker forks
    database = prepare_database(config)
    try:
        _offer_demo(config, database, args)
    finally:
        database.dispose()
    serving.prepare(config)  # JSON logs, and a fresh metrics directory that the workers inherit (service/observe)
    engine = args.engine or config.server.engine
    options = Options(
        host=args.host, port=args.port, engine=engine,
        workers=args.workers or config.server.workers or default_workers(engine, config.database_url),
        threads=args.threads or config.server.threads or default_threads(engine),
        pid_file=pid_file)
    delivery = None
    if delivers:
        delivery = DeliveryProcess(_config_path(args), config.delivery.interval_seconds)
    try:
        serve(config, options, delivery=delivery)
    except PolicyLoadError as exc:  # changed on disk since the check above
        _die(str(exc))


def os_user() -> str:
    """Who runs this command, for the audit trail: the effective operating-system user."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return f"uid:{os.geteuid()}"


def _server_clock(config: Config, database):
    """The server's clock: expiry and grace are measured on it (settable only in testing)."""
    from service.clock import SettableClock, SystemClock

    return SettableClock(database) if config.testing.clock == "settable" else SystemClock()


@contextmanager
def _clients_work(config: Config, refused: tuple = (), prefix: str = "", write: bool = True):
    """One unit of work of a command on client keys (or the seed, which writes them): the database prepared, a
    transaction (a read with `write=False`) and the server clock's now; the database closed after, and a refusal
    of `refused` printed after `prefix`, exit status 1."""
    database = prepare_database(config)
    try:
        now = _server_clock(config, database).now()
        with (database.transaction() if write else database.sessions()) as session:
            yield session, now
    except refused as exc:
        _die(f"{prefix}{exc}", 1)
    finally:
        database.dispose()


def _duration(text: str | None, option: str, allow_zero: bool = False):
    from datetime import timedelta

    from service.domain.clients import parse_duration

    if text is None:
        return None
    try:
        value = parse_duration(text)
    except ValueError as exc:
        _die(f"{option}: {exc}")
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        _die(f"{option} must be {'zero or more' if allow_zero else 'more than zero'}")
    return value


# --- Arguments: every one checked as it is read; a bad one is one line on stderr and exit 2 --------------

class Parser(argparse.ArgumentParser):
    """argparse, but a refused argument is one line (`portal-authz: ...`), not the usage and a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("portal-authz").strip()
        _die(f"{command}: {message}" if command else message)


def _int_between(low: int, high: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low}-{high}; got {value}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"seconds must be more than 0 and at most 86400; got {text!r}")
    return value


def _checked(check, what: str):
    """A type from a domain check that raises ValueError with its own message."""
    def parse(text: str):
        try:
            check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    parse.__name__ = what
    return parse


def _client_name(text: str) -> str:
    from service.domain.clients import check_name

    return _checked(check_name, "client name")(text)


def _scopes(text: str) -> str:
    from service.domain.clients import parse_scopes

    return _checked(parse_scopes, "scopes")(text)


def _duration_text(text: str) -> str:
    from service.domain.clients import parse_duration

    return _checked(parse_duration, "duration")(text)


def _key_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{16}", text):
        raise argparse.ArgumentTypeError(f"a key id is 16 hex digits (see `clients list`); got {text!r}")
    return text


def _host(text: str) -> str:
    if not text.strip() or any(c.isspace() for c in text) or len(text) > 253:
        raise argparse.ArgumentTypeError(f"a host name or address without spaces; got {text!r}")
    return text


def _portal(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", text):
        raise argparse.ArgumentTypeError(f"a portal id is lower-case letters, digits, - and _; got {text!r}")
    return text


PORT = _int_between(1, 65535, "port")


def cmd_clients_add(args) -> None:
    from service.domain import clients

    try:
        scopes = clients.parse_scopes(args.scopes)
        clients.check_name(args.name)
    except (clients.UnknownScope, clients.BadName) as exc:
        _die(str(exc))
    expires_in = _duration(args.expires, "--expires")
    with _clients_work(_config(args), refused=(clients.ClientExists,)) as (session, now):
        key = clients.add_client(session, args.name, scopes, now, actor=os_user(), expires_in=expires_in)
    print(key)
    until = f", expires {(now + expires_in).isoformat(timespec='seconds')}" if expires_in else ""
    print(f"client {args.name!r} with scopes {','.join(scopes)}{until}; the key is shown only once", file=sys.stderr)


def cmd_clients_list(args) -> None:
    import json

    from service.domain import clients

    with _clients_work(_config(args), write=False) as (session, now):
        keys = clients.list_keys(session, now)
    if args.json:
        print(json.dumps([k.as_json() for k in keys], indent=2))
        return
    header = ("NAME", "KEY ID", "SCOPES", "STATE", "CREATED", "LAST USED", "EXPIRES")
    rows = [header] + [(k.name, k.key_id, ",".join(k.scopes), k.state, *(
        (m.isoformat(timespec="minutes") if m else "-") for m in (k.created_at, k.last_used_at, k.expires_at)))
        for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_clients_revoke(args) -> None:
    from service.domain import clients

    with _clients_work(_config(args), refused=(clients.NoSuchClient,)) as (session, now):
        revoked = clients.revoke(session, args.name, now, actor=os_user(), key_id=args.key_id)
    if revoked:
        print(f"revoked {len(revoked)} key(s) of client {args.name!r}: {', '.join(revoked)}; "
              "refused from the next request on")
    else:
        print(f"client {args.name!r} had no key left to revoke (already revoked)")


def cmd_clients_rotate(args) -> None:
    from datetime import timedelta

    from service.domain import clients

    grace = _duration(args.grace, "--grace", allow_zero=True) or timedelta(0)
    expires_in = _duration(args.expires, "--expires")
    with _clients_work(_config(args), refused=(clients.NoSuchClient,)) as (session, now):
        rotated = clients.rotate(session, args.name, now, actor=os_user(), grace=grace, expires_in=expires_in)
    print(rotated.key)
    old = ", ".join(rotated.old_key_ids)
    when = "now" if grace <= timedelta(0) else rotated.old_until.isoformat(timespec="seconds")
    until = f", expires {rotated.expires_at.isoformat(timespec='seconds')}" if rotated.expires_at else ""
    print(f"new key for client {args.name!r}{until}, shown only once; the old key(s) {old} stop {when}",
          file=sys.stderr)


def _decide(args):
    """The decision `check` and `policy explain` print: the facts read as `/v1/authorize` reads them."""
    from service.clock import SystemClock
    from service.domain.decisions import Decider, Question, Resource, profile_of
    from service.domain.errors import DomainError

    config = _config(args)
    kind, sep, ident = args.resource.partition(":")
    if not sep or kind not in ("organization", "account") or not ident:
        _die("--resource must be organization:<key> or account:<username>")
    database = prepare_database(config)
    policy = _load_policy(config)
    context = {"permission": args.permission} if args.permission else {}
    with database.sessions() as session:
        try:
            decider = Decider(session, profile_of(config, args.portal), policy, args.portal, SystemClock().now())
            decision = decider.decide(args.actor,
                                      Question(args.action, Resource(kind, ident, args.organization), context))
        except DomainError as exc:
            _die(exc.detail)
    return policy, decision


def cmd_check(args) -> None:
    _, decision = _decide(args)
    if decision.allowed:
        print(f"allowed (policy {decision.policy_version})")
        return
    print(f"denied (policy {decision.policy_version})")
    for reason in decision.reason_objects():
        print(f"  {reason['code']}: {reason['message']}")
    raise SystemExit(1)


def cmd_policy_explain(args) -> None:
    """One decision, and for each rule of the action each requirement with its outcome and the facts it read."""
    import json

    from service.workbench.explain import explain

    policy, decision = _decide(args)
    if decision.facts is None:  # the policy could not be evaluated: the decision alone
        print(json.dumps({"allowed": decision.allowed, "reasons": list(decision.reasons)}) if args.json
              else f"denied [{', '.join(decision.reasons)}] (policy {decision.policy_version})")
        raise SystemExit(1)
    explanation = explain(policy, decision.facts[0], args.action, decision.facts[1])
    print(json.dumps(explanation.as_json(), indent=2) if args.json else explanation.text())
    if not decision.allowed:
        raise SystemExit(1)


def cmd_policy_diff(args) -> None:
    """Every question whose answer changes between two policy folders; exit 0 none, 1 some, 2 error."""
    import json

    from service.policy import PolicyLoadError
    from service.workbench.diff import profiles_of, run_diff
    from service.workbench.tables import TableError

    config = _config(args)
    base = Path(args.base_dir)
    new = Path(args.new_dir) if args.new_dir else config.policy_path
    for folder in (base, new):
        if not folder.is_dir():
            _die(f"{folder}: not a policy folder")
    log_path = Path(args.log) if args.log else config.decision_log_path
    profiles = profiles_of(config, args.profile)
    if args.profile and len(profiles) != len(set(args.profile)):
        _die(f"--profile: unknown portal profile(s) {sorted(set(args.profile) - {p.name for p in profiles})}")
    try:
        report = run_diff(base, new, log_path=log_path, profiles=[] if args.no_space else profiles,
                          space_actions=args.action, jobs=args.jobs)
    except PolicyLoadError as exc:  # the compile error in one line: where and what, no traceback
        _die(policy_problem(exc), 2)
    except TableError as exc:
        _die(str(exc), 2)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.text())
    if report.changes:
        raise SystemExit(1)


def _policy_coverage(config, tables) -> None:
    from service.policy import PolicyLoadError
    from service.workbench.coverage import run_coverage
    from service.workbench.tables import TableError

    try:
        report = run_coverage(config.policy_path, tables)
    except TableError as exc:
        _die(str(exc))
    except PolicyLoadError as exc:
        _die(policy_problem(exc), 1)
    print(report.text())
    if not report.ok:
        raise SystemExit(1)


def cmd_policy_test(args) -> None:
    from service.policy import PolicyLoadError
    from service.workbench.tables import TableError, run_tables

    config = _config(args)
    tables = Path(args.path) if args.path else None
    try:
        report = run_tables(config.policy_path, tables)
    except TableError as exc:
        _die(str(exc))
    except PolicyLoadError as exc:  # the compile error in one line: where and what, no traceback
        _die(policy_problem(exc), 1)
    for failure in report.failures:
        print(f"FAIL {failure}")
    summary = f"{report.rows_run - len(report.failures)} passed, {len(report.failures)} failed"
    print(f"{summary} ({len(report.files)} tables)")
    if report.failures:
        raise SystemExit(1)
    if args.coverage:
        _policy_coverage(config, tables)


def cmd_sweep(args) -> None:
    """R22/R23: the inactivity sweep now, with the same clock the server uses; prints counts per portal."""
    from service.domain.sweep import sweep

    config = _config(args)
    if args.portal is not None and config.portal(args.portal) is None:
        _die(f"unknown portal {args.portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    database = prepare_database(config)
    result = sweep(database, config, _server_clock(config, database).now(), portal=args.portal, client="cli")
    for portal, part in result.portals.items():
        print(portal + ": " + " ".join(f"{name}={count}" for name, count in part.counts().items()))
    database.dispose()


def cmd_migrate(args) -> None:
    """The deployment step: upgrade the schema to the newest revision (under PostgreSQL's advisory lock, so
    replicas and a `serve` starting at the same time take turns) and mirror the portals; then exit."""
    from alembic.runtime.migration import MigrationContext

    config = _config(args)
    database = prepare_database(config)
    try:
        with database.engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        database.dispose()
    print(f"schema at revision {revision}; portals: {', '.join(config.portals)}")


def cmd_deliver(args) -> None:
    """Send queued emails over SMTP and export letters (the only channel for activation codes); once, or every
    --interval seconds."""
    from service import worker

    config = _config(args)
    if args.parent_pid is not None:
        return worker.deliver_beside_serve(config, args.parent_pid, args.interval)
    worker.deliver(prepare_database(config), config, once=args.once, interval=args.interval)


def cmd_seed(args) -> None:
    """Write a seed document (organizations, accounts, grants, client keys) in one transaction; only into a
    database that holds no organization or client key yet, unless --force. Prints what it wrote as JSON, with
    each client key (shown only this once)."""
    import json

    import yaml

    from service.domain import passwords
    from service.domain.seed import SeedError, parse, seed
    from service.domain.setup import is_empty

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        _die(f"seed: cannot read {args.file}: {exc.strerror}")
    try:
        document = parse(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        _die(f"seed: {args.file} is not valid YAML: {one_line(str(exc))}")
    except SeedError as exc:
        _die(f"seed: {args.file}: {exc}")
    config = _config(args)
    if config.testing.hashing == "cheap":  # the server this seeds hashes at test cost too (config.py allows it)
        passwords.use_cheap_hashing()
    with _clients_work(config, refused=(SeedError,), prefix=f"seed: {args.file}: ") as (session, now):
        if not args.force and not is_empty(session):
            _die("seed: the database already holds organizations or client keys; nothing written "
                 "(--force adds to them)", 1)
        result = seed(session, config, document, now, actor=os_user())
    print(json.dumps(result.as_json()))
    print(f"seeded {result.organizations} organization(s), {result.accounts} account(s), {result.grants} grant(s), "
          f"{len(result.client_keys)} client key(s); the keys are shown only once", file=sys.stderr)


def cmd_policy_reload(args) -> None:
    """Check the policy files, then ask the running server to load them in every worker (SIGHUP)."""
    from service.reload import ServerNotFound, pid_file_path, server_pid, signal_reload

    config = _config(args)
    policy = _load_policy(config, code=1)  # a policy that does not load: exit 1 with the error, nothing sent
    path = pid_file_path(config, args.port, args.pid_file)
    try:
        pid = server_pid(path)
        signal_reload(pid)
    except (ServerNotFound, OSError) as exc:
        _die(str(exc), code=3)
    print(f"policy {policy.version} loads; asked the server (pid {pid}) to reload it in every worker")
    print("check: GET /readyz reports policy_version " + policy.version)


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="config file (default ./config.yaml or $PORTAL_AUTHZ_CONFIG)")
    parser = Parser(prog="portal-authz", parents=[common],
                                     description="Policy-as-code authorization for provider portals.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="create the schema if missing and serve the API")
    serve.add_argument("--host", default=DEFAULT_HOST, type=_host)
    serve.add_argument("--port", type=PORT, default=DEFAULT_PORT)
    serve.add_argument("--workers", type=_int_between(1, 256, "workers"), default=None,
                       help="worker processes (default server.workers, else sized to the machine)")
    serve.add_argument("--threads", type=_int_between(1, 1024, "threads"), default=None, help="threads per worker (default server.threads)")
    serve.add_argument("--engine", choices=("granian", "gunicorn"), default=None,
                       help="WSGI server (default server.engine: granian)")
    serve.add_argument("--pid-file", default=None,
                       help="for `policy reload` (default server.pid_file, else portal-authz-CONFIG-PORT.pid beside "
                            "the config: portal-authz-config-8000.pid for config.yaml)")
    serve.add_argument("--demo", action="store_true",
                       help="on an empty database, create the demo organization, accounts and client key and show "
                            "their secrets once (nothing is created otherwise; demo.enabled asks for it too)")
    serve.add_argument("--deliver", action="store_true",
                       help="also run the delivery loop (`deliver`) in a child process (or delivery.in_serve)")
    serve.set_defaults(func=cmd_serve)

    clients_cmd = sub.add_parser("clients", parents=[common], help="manage client keys")
    clients_sub = clients_cmd.add_subparsers(dest="clients_command", required=True)
    add = clients_sub.add_parser("add", parents=[common], help="create a client key and print it once")
    add.add_argument("name", type=_client_name)
    add.add_argument("--scopes", required=True, type=_scopes, help="comma-separated: authorize,manage,enroll")
    add.add_argument("--expires", default=None, type=_duration_text, metavar="DURATION",
                     help="the key stops working after this long (90s, 15m, 24h, 30d, 2w or ISO 8601 like P90D)")
    add.set_defaults(func=cmd_clients_add)
    clist = clients_sub.add_parser("list", parents=[common],
                                   help="every key: name, scopes, state, created, last used, expiry (never the secret)")
    clist.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    clist.set_defaults(func=cmd_clients_list)
    revoke = clients_sub.add_parser("revoke", parents=[common],
                                    help="stop a client's keys from the next request on (exit 1: no such client)")
    revoke.add_argument("name", type=_client_name)
    revoke.add_argument("--key-id", default=None, type=_key_id, help="only this key of the client (see `clients list`)")
    revoke.set_defaults(func=cmd_clients_revoke)
    rotate = clients_sub.add_parser("rotate", parents=[common],
                                    help="print a new key once; the old one works for --grace longer")
    rotate.add_argument("name", type=_client_name)
    rotate.add_argument("--grace", default=None, type=_duration_text, metavar="DURATION",
                        help="how long the old key keeps working (default: none, it stops now)")
    rotate.add_argument("--expires", default=None, type=_duration_text, metavar="DURATION",
                        help="an expiry for the new key (default: the life the rotated key was given, if any)")
    rotate.set_defaults(func=cmd_clients_rotate)

    # The question `check` and `policy explain` ask, as /v1/authorize takes it.
    question = argparse.ArgumentParser(add_help=False)
    question.add_argument("--portal", required=True)
    question.add_argument("--actor", required=True)
    question.add_argument("--action", required=True)
    question.add_argument("--resource", required=True, help="organization:<key> or account:<username>")
    question.add_argument("--organization", default=None, help="for an account in several organizations")
    question.add_argument("--permission", default=None, help="for grant/revoke")

    check = sub.add_parser("check", parents=[common, question], help="print one decision and its reasons")
    check.set_defaults(func=cmd_check)

    policy = sub.add_parser("policy", parents=[common], help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    ptest = policy_sub.add_parser("test", parents=[common], help="run the YAML decision tables")
    ptest.add_argument("path", nargs="?", default=None, help="a table file or folder (default policies/tests)")
    ptest.add_argument("--coverage", action="store_true",
                       help="then list the rules, requirements and reasons no row exercises, per file (exit 1 if any)")
    ptest.set_defaults(func=cmd_policy_test)
    pexplain = policy_sub.add_parser("explain", parents=[common, question],
                                     help="one decision, each rule's requirements with outcome and facts read")
    pexplain.add_argument("--json", action="store_true", help="the explanation as JSON")
    pexplain.set_defaults(func=cmd_policy_explain)
    pdiff = policy_sub.add_parser(
        "diff", parents=[common],
        help="the decisions a policy change changes (exit 0 none, 1 some, 2 a policy that does not load)")
    pdiff.add_argument("base_dir", help="the policy folder before the change (e.g. a checkout of main's policies/)")
    pdiff.add_argument("new_dir", nargs="?", default=None, help="the changed policy folder (default the configured one)")
    pdiff.add_argument("--json", action="store_true", help="the report as JSON")
    pdiff.add_argument("--log", default=None, help="the decision log to replay (default decision_log.path)")
    pdiff.add_argument("--profile", action="append", default=None,
                       help="generate the space for this portal profile only (repeatable; default every profile, "
                            "so every portal a change reaches shows: a rule may be scoped to one portal)")
    pdiff.add_argument("--no-space", action="store_true", help="only the tables and the log, no generated space")
    pdiff.add_argument("--action", action="append", default=None,
                       help="generate the space's questions about this action only (repeatable; the tables and "
                            "the log are asked in full)")
    pdiff.add_argument("--jobs", type=_int_between(1, 256, "jobs"), default=None,
                       help="worker processes sharing a large diff (default one per CPU; the report is the same)")
    pdiff.set_defaults(func=cmd_policy_diff)
    preload = policy_sub.add_parser("reload", parents=[common],
                                    help="check policies/*.polar, then make every worker of the server load it")
    preload.add_argument("--port", type=PORT, default=DEFAULT_PORT, help="the server's port, to find its pid file")
    preload.add_argument("--pid-file", default=None, help="the pid file `serve` wrote (default as for serve)")
    preload.set_defaults(func=cmd_policy_reload)

    sweep = sub.add_parser("sweep", parents=[common], help="run the inactivity sweep (R22, R23) now")
    sweep.add_argument("--portal", default=None, type=_portal, help="one portal (default: every portal)")
    sweep.set_defaults(func=cmd_sweep)

    seed_cmd = sub.add_parser("seed", parents=[common],
                              help="write organizations, accounts, grants and client keys from a YAML file (a test "
                                   "server's data); refused on a database that holds data unless --force")
    seed_cmd.add_argument("file", help="the seed document (see service/domain/seed.py and docs/clients.md)")
    seed_cmd.add_argument("--force", action="store_true", help="add to a database that already holds data")
    seed_cmd.set_defaults(func=cmd_seed)

    migrate = sub.add_parser("migrate", parents=[common],
                             help="upgrade the database schema to the newest revision and exit (the deployment step)")
    migrate.set_defaults(func=cmd_migrate)

    deliver = sub.add_parser("deliver", parents=[common], help="send queued emails and export letters")
    deliver.add_argument("--once", action="store_true", help="run one batch and exit")
    deliver.add_argument("--interval", type=_seconds, default=10.0, help="seconds between batches (default 10)")
    deliver.add_argument("--parent-pid", type=_int_between(1, 2**22, "pid"), default=None, help=argparse.SUPPRESS)  # run by `serve --deliver`
    deliver.set_defaults(func=cmd_deliver)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
