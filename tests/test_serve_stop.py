"""A stopped `portal-authz serve` (granian) exits at once and with status 0, lets requests in flight finish, and
never leaves a worker for granian to kill after its grace period.

Real servers (tests/fixtures/servers.py), stopped as a service manager does: SIGTERM to the main process, which
sends SIGTERM to every worker and waits for them. A worker that misses it is killed GRACEFUL_SECONDS later, and
granian says so ("Killing worker-N after it refused to gracefully stop"): each test asserts that line is absent.
A worker that is still starting is held at a known point by a test-only hook (tests/fixtures/hooked_serve.py)
until the signal has reached it, so the stop arrives there every time and without a sleep.
"""
from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.reload import RELOAD_SIGNAL
from service.server import MainLoopWakeup, WorkerBoot, process_is_alive
from tests.fixtures.hooked_serve import GATE_ENV, HOOKS_ENV
from tests.fixtures.servers import (KILLED, Server, member_with_claims, processes, running, stop_and_wait, wait_for,
                                    worker_numbers)

HOOKED = "tests.fixtures.hooked_serve"
QUESTION = {"portal": "ahcccs", "actor": "alice", "action": "claims",
            "resource": {"type": "organization", "id": "ORG-1"}}


@pytest.fixture
def seeded(tmp_path, config):
    return member_with_claims(tmp_path, config, "stop")


def log(server: Server) -> str:
    return server.stderr_path.read_text()


def loaded(server: Server, pid: int) -> bool:
    """Whether worker `pid` logged a policy reload."""
    return re.search(rf"worker {pid}: policy \S+ loaded", log(server)) is not None


def gated_worker(server: Server, hooks: Path) -> int:
    """The pid of the worker the hook holds (it waits for a signal before it goes on starting)."""
    [marker] = wait_for(lambda: list(hooks.glob("gated-*")), server, "a worker waits in the hook")
    return int(marker.name.removeprefix("gated-"))


def assert_stopped_cleanly(server: Server, code: int) -> None:
    """Exit status 0, every worker stopped on its own (granian logs a kill before it kills), no process left."""
    text = log(server)
    assert code == 0, server.output()
    assert KILLED not in text, server.output()
    for number in worker_numbers(server).values():
        assert f"Stopped worker-{number}" in text, (number, server.output())
    assert "Granian shutdown completed" in text, server.output()
    assert not processes(session=server.process.pid), "a process of the server is left"


@pytest.mark.slow
@pytest.mark.parametrize("when", ["idle", "after an in-place reload"])
def test_a_stop_ends_every_worker_without_a_kill(seeded, tmp_path, when):
    url, _ = seeded
    with running(["stop"], url, tmp_path) as [server]:
        workers = processes(parent=server.process.pid)
        if when == "after an in-place reload":
            server.process.send_signal(signal.SIGHUP)
            wait_for(lambda: all(loaded(server, pid) for pid in workers), server, "every worker reloads")
        assert_stopped_cleanly(server, stop_and_wait(server))
        assert set(worker_numbers(server)) == workers  # no other worker started meanwhile


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before-build", "after-build"])
def test_a_stop_reaches_a_worker_that_is_still_starting(seeded, tmp_path, where):
    """One worker serves, the other is held while it starts (before its app is built, or after it but before
    granian's own handlers are in place) until the main process's SIGTERM has reached it: it leaves without ever
    serving, and the server stops without killing it and exits 0."""
    url, _ = seeded
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    with running(["starting"], url, tmp_path, module=HOOKED,
                 env={HOOKS_ENV: str(hooks), GATE_ENV: where}) as [server]:  # ready: the other worker serves
        held = gated_worker(server, hooks)
        code = stop_and_wait(server)
        number = worker_numbers(server)[held]
        assert_stopped_cleanly(server, code)
        assert f"Started worker-{number}" not in log(server), server.output()  # it never served


@pytest.mark.slow
def test_a_reload_that_reaches_a_worker_while_it_starts_is_not_lost(seeded, tmp_path):
    """The policy a starting worker read may be the one a reload replaces: it loads the new one once it can."""
    url, _ = seeded
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    with running(["reload"], url, tmp_path, module=HOOKED,
                 env={HOOKS_ENV: str(hooks), GATE_ENV: "before-build"}) as [server]:
        held = gated_worker(server, hooks)
        server.process.send_signal(signal.SIGHUP)  # forwarded to every worker, the held one too
        wait_for(lambda: loaded(server, held), server, "the worker that was starting reloads the policy")
        assert_stopped_cleanly(server, stop_and_wait(server))


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_every_worker_without_a_kill(seeded, tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole process group: each worker gets it, then the main process's
    SIGTERM. Before SignalRelay, one stop in two left a worker whose two signals had landed on threads other than
    its main thread, killed GRACEFUL_SECONDS later."""
    url, _ = seeded
    with running(["ctrl-c"], url, tmp_path) as [server]:
        os.killpg(server.process.pid, signal.SIGINT)
        assert_stopped_cleanly(server, stop_and_wait(server, None))


@pytest.mark.slow
def test_a_request_in_flight_is_answered_across_a_stop(seeded, tmp_path):
    """The worker takes the request and reads its body, which the test holds back; SIGTERM reaches the worker
    (granian logs that it is stopping); then the rest of the body comes and the answer is a full 200."""
    url, key = seeded
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    payload = json.dumps(QUESTION).encode()
    head = (f"POST /v1/authorize HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nX-Test-Hold: 1\r\n"
            f"Connection: close\r\n\r\n").encode()
    with running(["drain"], url, tmp_path, workers=1, module=HOOKED, env={HOOKS_ENV: str(hooks)}) as [server]:
        [worker] = processes(parent=server.process.pid)
        data = b""
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head + payload[:10])
            wait_for(lambda: list(hooks.glob("entered-*")), server, "the request enters the app")
            server.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "Stopping worker-1" in log(server) or worker not in processes(parent=server.process.pid),
                     server, "the worker is asked to stop")
            try:
                sock.sendall(payload[10:])
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError as exc:  # the worker left without answering
                data = repr(exc).encode()
        head_in, _, body = data.partition(b"\r\n\r\n")
        assert head_in.startswith(b"HTTP/1.1 200 "), (data, server.output())
        assert json.loads(body)["allowed"] is True
        assert_stopped_cleanly(server, stop_and_wait(server, None))


# ---- without a server ----------------------------------------------------------------------------------------

def test_a_stop_asked_before_the_main_loop_clears_its_event_is_kept():
    stopping = False
    wakeup = MainLoopWakeup(lambda: stopping)
    wakeup.set()  # a reload woke the loop ...
    wakeup.clear()  # ... which clears the event before it reloads
    assert not wakeup.is_set()
    stopping = True  # SIGTERM's handler ran between the loop's look and its clear()
    wakeup.set()
    wakeup.clear()
    assert wakeup.is_set()


def test_a_starting_worker_ends_outright_on_a_stop_and_redoes_a_reload(monkeypatch):
    ended = []
    boot = WorkerBoot(end=ended.append)
    boot.stop()  # not an exception a frame could swallow (or print, inside a __del__): the process's end
    assert ended == [0]

    raised = []
    monkeypatch.setattr(signal, "raise_signal", raised.append)
    boot = WorkerBoot()
    boot.app_built()
    assert raised == []
    boot.reload()
    boot.app_built()
    assert raised == [RELOAD_SIGNAL]


def test_a_worker_another_thread_reaped_is_not_taken_for_alive():
    """granian joins a worker from its watcher thread and from the main thread: the one that reaps it second
    sees `Process.is_alive()` True for a process that has ended (its status went to the other), and granian
    logged a kill of a worker that had stopped on its own. The sentinel tells the truth."""
    process = multiprocessing.get_context("fork").Process(target=int)
    process.start()
    os.waitpid(process.pid, 0)  # the other thread's join, before it records the status
    assert process.is_alive()  # what granian asked
    assert not process_is_alive(process)


# The main thread waits as a granian worker's does (an Event, here with a bound so that a failure ends); another
# thread takes the signal once the main thread is asleep in that wait (asleep three times 10 ms apart, while the other
# thread sleeps too: a main thread waiting for the GIL would have had it by then).
RELAYED = """
import signal, sys, threading, time
from service.server import SignalRelay
handled = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: handled.set())
if sys.argv[1] == "relay":
    SignalRelay().install()
main = threading.get_native_id()

def asleep():
    with open(f"/proc/self/task/{main}/stat") as status:
        return status.read().rsplit(")", 1)[1].split()[0] == "S"

def bystander():
    seen = 0
    while seen < 3:
        time.sleep(0.01)
        seen = seen + 1 if asleep() else 0
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=bystander, daemon=True).start()
print("handled" if handled.wait(20) else "still waiting")
"""


def test_a_signal_another_thread_takes_still_runs_its_handler_in_the_main_thread():
    """CPython runs a Python handler only in the main thread; a signal that another thread takes leaves a main
    thread asleep in a wait asleep. SignalRelay wakes it."""
    answer = subprocess.run([sys.executable, "-c", RELAYED, "relay"], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert answer.stdout.strip() == "handled", answer.stderr


def test_granians_names_the_fix_relies_on_are_still_there():
    """service/server.py overrides these of granian 2.8.7; a granian that renames or reorders them must fail here
    first: the main process installs its two handlers after setting `pid`, the main loop waits on
    `main_loop_interrupt` and checks `interrupt_signal`, and a WSGI worker calls its loader before it installs
    its own handlers, and stopping the workers asks each worker object whether it is alive."""
    from granian.server import common, mp

    startup = inspect.getsource(common.AbstractServer.startup)
    assert startup.index("self.pid = os.getpid()") < startup.index(
        "set_main_signals(self.signal_handler_interrupt, self.signal_handler_reload)")
    handler = inspect.getsource(common.AbstractServer.signal_handler_interrupt)
    assert "self.interrupt_signal = True" in handler and "self.main_loop_interrupt.set()" in handler
    loop = inspect.getsource(common.AbstractServer._serve_loop)
    assert "self.main_loop_interrupt.wait()" in loop and "self._reload(" in loop
    wrapped = inspect.getsource(mp.WorkerProcess.wrap_target)
    assert "callback = callback_loader()" in wrapped
    worker = inspect.getsource(mp.MPServer._spawn_wsgi_worker)
    assert "shutdown_event = set_sync_signals()" in worker
    assert "evp.wait()" in worker  # the main thread's wait SignalRelay wakes
    stopping = inspect.getsource(common.AbstractServer._stop_workers)  # asks the worker object, which we answer
    assert "wrk.is_alive()" in stopping and "wrk.join(timeout)" in stopping
    assert "def _watcher(self)" in inspect.getsource(common.AbstractWorker)
