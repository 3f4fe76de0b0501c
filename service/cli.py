"""The `portal-authz` command: serve, clients add, check, policy test, sweep, deliver."""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path

from service.config import Config, ConfigError, load_config


def _die(message: str, code: int = 2) -> None:
    print(f"portal-authz: {message}", file=sys.stderr)
    raise SystemExit(code)


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


def _print_demo(demo, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    print(f"""
First run: created a demo organization {demo.organization} in portal {demo.portal!r}.
These secrets are shown only now; only their hashes are stored.
  admin   demo.admin   password {demo.admin_password}
  member  demo.member  password {demo.member_password}
  client key (scopes authorize,manage,enroll): {demo.client_key}

Ask a first decision:
  curl -s {base}/v1/authorize -H 'Authorization: Bearer {demo.client_key}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"portal": "{demo.portal}", "actor": "demo.member", "action": "claims", "resource": {{"type": "organization", "id": "{demo.organization}"}}}}'
""", flush=True)


def _load_policy(config: Config):
    from service.policy import Policy, PolicyLoadError

    try:
        return Policy(config.policy_path)
    except PolicyLoadError as exc:
        _die(str(exc))


def cmd_serve(args) -> None:
    from service.clock import SystemClock
    from service.domain.setup import create_demo, is_empty
    from service.observe import serving
    from service.server import serve

    config = _config(args)
    _load_policy(config)  # refuse to start on a policy that does not load, before any worker forks
    database = prepare_database(config)
    if config.demo.enabled:
        with database.transaction() as session:
            demo = create_demo(session, config, SystemClock().now()) if is_empty(session) else None
        if demo:
            _print_demo(demo, args.host, args.port)
    database.dispose()
    serving.prepare(config)  # JSON logs, and a fresh metrics directory that the workers inherit (service/observe)
    workers = args.workers or config.server.workers or (2 * multiprocessing.cpu_count() + 1)
    serve(config, host=args.host, port=args.port, workers=workers)


def cmd_clients_add(args) -> None:
    from service.clock import SystemClock
    from service.domain import clients

    try:
        scopes = clients.parse_scopes(args.scopes)
    except clients.UnknownScope as exc:
        _die(str(exc))
    database = prepare_database(_config(args))
    with database.transaction() as session:
        key = clients.create_client(session, args.name, scopes, SystemClock().now())
    print(key)
    print(f"client {args.name!r} with scopes {','.join(scopes)}; the key is shown only once", file=sys.stderr)


def cmd_check(args) -> None:
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
            decision = decider.decide(decider.actor(args.actor),
                                      Question(args.action, Resource(kind, ident, args.organization), context))
        except DomainError as exc:
            _die(exc.detail)
    if decision.allowed:
        print(f"allowed (policy {decision.policy_version})")
        return
    print(f"denied (policy {decision.policy_version})")
    for reason in decision.reason_objects():
        print(f"  {reason['code']}: {reason['message']}")
    raise SystemExit(1)


def cmd_policy_test(args) -> None:
    from service.policy_tables import TableError, run_tables

    config = _config(args)
    tables = Path(args.path) if args.path else None
    try:
        report = run_tables(config.policy_path, tables)
    except TableError as exc:
        _die(str(exc))
    for failure in report.failures:
        print(f"FAIL {failure}")
    summary = f"{report.rows_run - len(report.failures)} passed, {len(report.failures)} failed"
    print(f"{summary} ({len(report.files)} tables)")
    if report.failures:
        raise SystemExit(1)


def cmd_sweep(args) -> None:
    """R22/R23: the inactivity sweep now, with the same clock the server uses; prints counts per portal."""
    from service.clock import SettableClock, SystemClock
    from service.domain.sweep import sweep

    config = _config(args)
    if args.portal is not None and config.portal(args.portal) is None:
        _die(f"unknown portal {args.portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    database = prepare_database(config)
    clock = SettableClock(database) if config.testing.clock == "settable" else SystemClock()
    result = sweep(database, config, clock.now(), portal=args.portal, client="cli")
    for portal, part in result.portals.items():
        print(portal + ": " + " ".join(f"{name}={count}" for name, count in part.counts().items()))
    database.dispose()


def cmd_deliver(args) -> None:
    """Issue 5 item 6: send queued emails over SMTP and export letters; once, or every --interval seconds."""
    import time

    from service.clock import SettableClock, SystemClock
    from service.domain.delivery import SmtpSender, deliver_batch

    config = _config(args)
    database = prepare_database(config)
    clock = SettableClock(database) if config.testing.clock == "settable" else SystemClock()
    try:
        while True:
            report = deliver_batch(database, config, clock.now(), SmtpSender(config.delivery.smtp))
            print(" ".join(f"{name}={count}" for name, count in report.counts().items()), flush=True)
            if args.once:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        database.dispose()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="config file (default ./config.yaml or $PORTAL_AUTHZ_CONFIG)")
    parser = argparse.ArgumentParser(prog="portal-authz", parents=[common],
                                     description="Policy-as-code authorization for provider portals.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="create the schema if missing and serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, help="gunicorn workers (default from config)")
    serve.set_defaults(func=cmd_serve)

    clients_cmd = sub.add_parser("clients", parents=[common], help="manage client keys")
    clients_sub = clients_cmd.add_subparsers(dest="clients_command", required=True)
    add = clients_sub.add_parser("add", parents=[common], help="create a client key and print it once")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help="comma-separated: authorize,manage,enroll")
    add.set_defaults(func=cmd_clients_add)

    check = sub.add_parser("check", parents=[common], help="print one decision and its reasons")
    check.add_argument("--portal", required=True)
    check.add_argument("--actor", required=True)
    check.add_argument("--action", required=True)
    check.add_argument("--resource", required=True, help="organization:<key> or account:<username>")
    check.add_argument("--organization", default=None, help="for an account in several organizations")
    check.add_argument("--permission", default=None, help="for grant/revoke")
    check.set_defaults(func=cmd_check)

    policy = sub.add_parser("policy", parents=[common], help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    ptest = policy_sub.add_parser("test", parents=[common], help="run the YAML decision tables")
    ptest.add_argument("path", nargs="?", default=None, help="a table file or folder (default policies/tests)")
    ptest.set_defaults(func=cmd_policy_test)

    sweep = sub.add_parser("sweep", parents=[common], help="run the inactivity sweep (R22, R23) now")
    sweep.add_argument("--portal", default=None, help="one portal (default: every portal)")
    sweep.set_defaults(func=cmd_sweep)

    deliver = sub.add_parser("deliver", parents=[common], help="send queued emails and export letters")
    deliver.add_argument("--once", action="store_true", help="run one batch and exit")
    deliver.add_argument("--interval", type=float, default=10.0, help="seconds between batches (default 10)")
    deliver.set_defaults(func=cmd_deliver)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
