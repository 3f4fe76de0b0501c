"""Serving with granian (the default) or gunicorn, configured from code, one app per worker.

Why granian: see docs/operations.md ("Why granian") for the figures measured on this
machine. Either server gets the same main-process duties:

- the policy the workers load is a checked snapshot (service/reload.py); SIGHUP
  makes the main process check the files again and, if they load, forwards
  SIGHUP to every worker, which reloads in place (no worker is restarted);
- the pid file for `portal-authz policy reload`, written once the server's
  signal handlers are in place and removed when it stops;
- optionally the delivery loop as a watched child (service/background.py);
- prometheus' multiprocess bookkeeping of exited workers and the service's log
  format (service/observe/serving.py).

A granian worker is forked with the main process's signal handlers and gets its
own only as it starts serving: a stop that reaches it before then ends it at
once, and a reload is done as soon as it can be (WorkerBoot), never dropped
(docs/operations.md, "Stopping").
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from service.background import DeliveryProcess
from service.config import Config, served_base_url
from service.observe import serving
from service.reload import RELOAD_SIGNAL, PolicySnapshots, install_worker_reload, write_pid_file

ENGINES = ("granian", "gunicorn")
GRACEFUL_SECONDS = 10
BACKPRESSURE = 512
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    engine: str
    workers: int
    threads: int
    pid_file: Path | None = None


def default_workers(engine: str, database_url: str = "sqlite://") -> int:
    """Sized to the machine: gunicorn's sync workers 2 x cores + 1; granian's single-threaded workers one per core
    when the database works on this machine too, two per core when it is elsewhere.

    Once a decision is cheap in Python, threads in one process mostly wait on each other's GIL, so
    single-threaded processes answer more decisions than threaded ones (bench/serving.py). How many: a
    worker waits on its database for part of every request. When the database is on this machine (SQLite,
    or PostgreSQL at a local address) that wait is the database's own work on the same cores, and a second
    worker per core only adds switching: one per core answered more, with half the p99, on a mixed workload
    beside PostgreSQL (bench/mixed.py; figures in bench/README.md). When it is elsewhere the wait is the
    network's, and a second worker per core keeps the core busy meanwhile."""
    cores = multiprocessing.cpu_count()
    if engine != "granian":
        return 2 * cores + 1
    return cores if database_is_local(database_url) else 2 * cores


def database_is_local(url: str) -> bool:
    """SQLite, or PostgreSQL reached on this machine (no host, a loopback address, a Unix socket directory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return True
    hosts = [parsed.host or ""] + [h for h in str(parsed.query.get("host", "")).split(",") if h]
    return all(h in ("", "localhost", "::1") or h.startswith(("127.", "/")) for h in hosts)


def default_threads(engine: str) -> int:
    return 1


def build_worker_app(config: Config, policy_dir: Path):
    """In each worker: its own app (engine, connection pool, policy), reloadable on SIGHUP."""
    from service.policy import Policy

    policy = Policy(policy_dir)
    install_worker_reload(policy)  # first: from here on a SIGHUP reloads instead of ending a booting worker

    from service.app import create_app

    app = create_app(config, policy=policy)
    settle_heap()
    return app


def settle_heap() -> None:
    """Move what a worker built at start (the policy engine, SQLAlchemy's metadata, pydantic's models, the
    config) out of reach of the cyclic garbage collector: it lives as long as the worker, and left in the
    collected generations every full collection walks it again, and that walk was the roster listing's
    p99 (bench/roster.py; figures in bench/README.md)."""
    import gc

    gc.collect()
    gc.freeze()


def serve(config: Config, options: Options, *, delivery: DeliveryProcess | None = None) -> None:
    """Serve until stopped. Raises PolicyLoadError (before binding) if the policy does not load."""
    if config.authzen.base_url is None:
        # AuthZEN discovery names URLs from configuration only: a request's Host header is the caller's to
        # choose, and reflecting it would let anyone point a PDP's published endpoints elsewhere.
        base = served_base_url(options.host, options.port)
        log.warning("authzen.base_url is unset: AuthZEN discovery names %s (the address served, never a "
                    "request's Host); set authzen.base_url to the URL callers reach this service at", base)
        config = config.model_copy(update={"authzen": config.authzen.model_copy(update={"base_url": base})})
    snapshots = PolicySnapshots(config.policy_path)
    snapshots.refresh()
    try:
        if options.engine == "gunicorn":
            _serve_gunicorn(config, options, snapshots, delivery)
        else:
            _serve_granian(config, options, snapshots, delivery)
    finally:
        if delivery is not None:
            delivery.stop()  # a no-op in a forked gunicorn worker unwinding through here


def _started(options: Options, delivery: DeliveryProcess | None) -> None:
    """In the main process once its signal handlers are installed and the socket is bound."""
    if options.pid_file is not None:
        write_pid_file(options.pid_file)
    if delivery is not None:
        delivery.start()


# ---- gunicorn ---------------------------------------------------------------------------------

def _serve_gunicorn(config: Config, options: Options, snapshots: PolicySnapshots,
                    delivery: DeliveryProcess | None) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class _Arbiter(Arbiter):
        def handle_hup(self):
            # Instead of gunicorn's reload (new workers, config re-read): check the policy, reload in place.
            if snapshots.reload():
                self.kill_workers(RELOAD_SIGNAL)

        def reap_workers(self):
            if delivery is not None:
                delivery.poll()  # before gunicorn's waitpid(-1) takes its exit status
            super().reap_workers()

        def manage_workers(self):
            super().manage_workers()
            if delivery is not None:
                delivery.ensure()

    class _Gunicorn(BaseApplication):
        def load_config(self):
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            # In each worker (nothing preloaded): never an engine or pool shared across fork.
            return build_worker_app(config, snapshots.current)

        def run(self):
            _Arbiter(self).run()

    settings = {
        "bind": f"{options.host}:{options.port}",
        "workers": options.workers,
        "worker_class": "gthread" if options.threads > 1 else "sync",
        "threads": options.threads,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "timeout": 30,
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": 5,
        # gunicorn 27's control socket is one fixed path per user; several servers on a machine would share it.
        "control_socket_disable": True,
    }
    settings.update(serving.gunicorn_options(config))  # metrics of exited workers; logs in the service's format
    _chain(settings, "when_ready", lambda arbiter: _started(options, delivery))
    if delivery is not None:
        _chain(settings, "on_exit", lambda arbiter: delivery.stop())
    _Gunicorn().run()


def _chain(settings: dict, hook: str, call) -> None:
    """Add a one-argument gunicorn server hook (when_ready, on_exit) after any already set."""
    before = settings.get(hook)

    def both(arbiter):  # gunicorn checks a hook's arity
        if before is not None:
            before(arbiter)
        call(arbiter)

    settings[hook] = both


# ---- granian ----------------------------------------------------------------------------------

class MeasuredWorkers(logging.Filter):
    """granian warns at every start when its workers outnumber the cores. More single-threaded workers than
    cores is this service's measured default (docs/operations.md, "Why granian"), so that one warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "higher than the amount of CPU cores" not in record.getMessage()


def _granian_logconfig(config: Config) -> dict:
    """The service's log format for granian's own records too (its access log stays off: the app writes one)."""
    logconfig = serving.gunicorn_options(config)["logconfig_dict"]
    level = config.logging.level.upper()
    filters = {**logconfig.get("filters", {}), "measured_workers": {"()": MeasuredWorkers}}
    return {**logconfig, "filters": filters, "loggers": {
        "_granian": {"level": level, "handlers": [], "propagate": True, "filters": ["measured_workers"]},
        "granian.access": {"level": "WARNING", "handlers": [], "propagate": False},
        "alembic": {"level": "WARNING"},
    }}


class WorkerBoot:
    """A granian worker's SIGTERM, SIGINT and SIGHUP from its fork until granian's own handlers take over.

    A forked worker inherits the main process's handlers: granian's, which in a worker only set a flag on
    its copy of the server object that nothing there reads. granian installs the worker's own handlers for
    SIGTERM and SIGINT only once the app is built (in the worker's target, just before it serves), and this
    service its SIGHUP handler while it builds the app. Left alone, a stop that arrives before then is
    dropped: the worker starts serving and is killed GRACEFUL_SECONDS later; a reload is dropped too. The
    main process's handlers call `stop()` and `reload()` here instead when they run in a worker.

    A stop ends the worker at once with status 0: it has accepted no connection yet, so there is nothing to
    drain, and nothing it holds outlives it (its pooled connections close with it; the main process clears
    its live gauges). It ends the process outright rather than raising SystemExit from the handler: a
    handler runs inside whatever frame the worker is in, and an exception raised inside a `__del__` (oso's
    Polar objects have one) is printed to stderr and swallowed, so the worker would go on building and write
    a line that is not JSON into the service's log. A reload is sent again to the worker itself once its own
    SIGHUP handler is in place: the policy it read may be the one the reload replaces.
    """

    def __init__(self, end=os._exit) -> None:
        self.reload_asked = False
        self._end = end

    def stop(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a flush the handler interrupted; the stop goes on
                pass
        self._end(0)

    def reload(self) -> None:
        self.reload_asked = True

    def app_built(self) -> None:
        """At the end of the worker's build: its SIGHUP handler is installed, granian's are not yet."""
        if self.reload_asked:
            signal.raise_signal(RELOAD_SIGNAL)  # to the handler install_worker_reload put in place


_boot = WorkerBoot()  # each worker's copy is its own (fork); the main process never changes it


WAKE_SIGNAL = signal.SIGUSR2


class SignalRelay:
    """A worker's stop and reload signals reach their Python handlers whichever of its threads the kernel gave
    them to.

    CPython runs a signal's Python handler only in the main thread, when that thread next runs Python code; a
    signal delivered to another thread interrupts nothing in the main thread. A granian worker's main thread
    spends its whole life blocked in `Event.wait()` without a timeout, and the kernel hands a signal sent to the
    process to any of its threads (granian's runtime and blocking threads, the policy reloader) when the main
    thread has one pending already. So two signals close together could leave both handlers waiting for a
    wake-up that never came: Ctrl-C in a terminal (SIGINT to the whole process group, then the main process's
    SIGTERM to each worker), or a service manager that signals a whole control group (systemd's default), and
    about every other stop left a worker for granian to kill GRACEFUL_SECONDS later. A SIGHUP could be held
    the same way, its reload not done.

    CPython writes the number of each signal it catches to the wakeup fd, from whichever thread caught it. A
    thread here reads those numbers and sends WAKE_SIGNAL to the main thread itself: its handler does nothing,
    but the wait it interrupts lets the main thread run every Python handler pending. WAKE_SIGNAL's own number
    is not relayed, so the relay never feeds itself."""

    def __init__(self) -> None:
        self.main = threading.main_thread().ident

    def install(self) -> None:
        """In the process's main thread (set_wakeup_fd must be called there), before it blocks."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # CPython's handler must never block on a full pipe
        for fd in (read_fd, write_fd):
            os.set_inheritable(fd, False)
        signal.signal(WAKE_SIGNAL, lambda *_: None)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if previous != -1:  # someone else's wakeup fd (an event loop's): theirs stays, no relay
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)
            return
        threading.Thread(target=self._relay, args=(read_fd,), name="signal-relay", daemon=True).start()

    def _relay(self, read_fd: int) -> None:
        while True:
            caught = os.read(read_fd, 64)
            if not caught:
                return
            if any(number != WAKE_SIGNAL for number in caught):
                signal.pthread_kill(self.main, WAKE_SIGNAL)


class MainLoopWakeup(threading.Event):
    """granian's main-loop event, whose clear() keeps a stop already asked for.

    granian's main loop waits on this event, then looks at what woke it: a stop, a dead worker, a reload.
    Before it handles a dead worker or a reload it clears the event; a SIGTERM whose handler ran after the
    loop looked and before that clear() would be forgotten: the server would not stop until something else
    woke it."""

    def __init__(self, stopping) -> None:
        super().__init__()
        self._stopping = stopping

    def clear(self) -> None:
        super().clear()
        if self._stopping():
            self.set()


def process_is_alive(process) -> bool:
    """Whether a worker process still runs, from its sentinel (readable once it has ended) rather than from
    `Process.is_alive()`.

    granian joins each worker from two threads: a watcher that waits for it to end, and the main thread when it
    stops the workers. Whichever reaps the process second gets no status, and in the moment before the first
    records its status `Process.is_alive()` still says True for a process that has already ended: granian then
    logged "Killing worker-N after it refused to gracefully stop" for a worker that had stopped in milliseconds,
    and sent a kill to a reaped pid."""
    return not multiprocessing.connection.wait([process.sentinel], 0)


def _worker_exited(pid: int) -> None:
    """Like gunicorn's child_exit hook: the dead worker's live gauges stop counting."""
    serving.child_exit(None, SimpleNamespace(pid=pid))


def _serve_granian(config: Config, options: Options, snapshots: PolicySnapshots,
                   delivery: DeliveryProcess | None) -> None:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.mp import MPServer

    # The app's modules (Flask, the routes and their pydantic models, the console) imported once here, before
    # the workers fork, instead of by each worker as it starts: a worker starts in a fraction of the time (a
    # restart, a crashed worker's replacement, every served test), its copy of them is shared with the main
    # process until written, and a replacement runs the code the server started with, not whatever is on disk
    # by then. Nothing is built: each worker still makes its own app, engine and pools after the fork.
    import service.app  # noqa: F401

    class _Granian(MPServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.main_loop_interrupt = MainLoopWakeup(lambda: self.interrupt_signal)

        def _in_worker(self) -> bool:
            # startup() sets self.pid before it installs these handlers; a forked worker inherits them
            return self.pid is not None and os.getpid() != self.pid

        def signal_handler_interrupt(self, *args, **kwargs):
            if self._in_worker():
                _boot.stop()
            else:
                super().signal_handler_interrupt(*args, **kwargs)

        def signal_handler_reload(self, *args, **kwargs):
            if self._in_worker():
                _boot.reload()
            else:
                super().signal_handler_reload(*args, **kwargs)

        def _reload(self, spawn_target, target_loader):
            # Instead of granian's reload (respawn every worker): check the policy, then reload in place.
            self.reload_signal = False
            self.main_loop_interrupt.clear()
            if snapshots.reload():
                for worker in list(self.wrks):
                    try:
                        os.kill(worker.inner.pid, RELOAD_SIGNAL)
                    except ProcessLookupError:
                        pass  # exiting; its replacement loads the new snapshot

        def _spawn_worker(self, idx, target, callback_loader):
            worker = super()._spawn_worker(idx, target, callback_loader)
            worker.is_alive = partial(process_is_alive, worker.inner)
            watch = worker._watcher  # the thread that joins the worker process

            def watcher():
                watch()
                _worker_exited(worker.inner.pid)

            worker._watcher = watcher
            return worker

    server = _Granian(
        "service.app:create_app",  # a name for logs only: the app comes from target_loader below
        address=options.host,
        port=options.port,
        interface=Interfaces.WSGI,
        workers=options.workers,
        blocking_threads=options.threads,
        backpressure=BACKPRESSURE,
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_SECONDS,
        log_level=LogLevels(config.logging.level),
        log_dictconfig=_granian_logconfig(config),
        log_access=False,
    )
    server.on_startup(lambda: _started(options, delivery))
    if delivery is not None:
        server.on_startup(delivery.watch)
        server.on_shutdown(delivery.stop)
    server.serve(target_loader=partial(_granian_app, config, snapshots.current), wrap_loader=False)


def _granian_app(config: Config, policy_dir: Path):
    SignalRelay().install()  # in the worker's main thread, before granian's wait that it exists for
    app = build_worker_app(config, policy_dir)
    _boot.app_built()
    return app
