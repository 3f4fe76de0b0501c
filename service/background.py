"""The delivery loop as a child of `portal-authz serve`: started, watched, restarted, stopped.

The child is `portal-authz deliver --parent-pid <serve's pid>` in a fresh
interpreter (nothing inherited from the server: no listening socket, no
connection pool), started once the server is up (after the schema upgrade).
It is stopped with the server: SIGTERM, and SIGKILL after a grace period. If
the server's main process dies without stopping it (SIGKILL, OOM), the child
notices its parent is gone within a second and exits, so it never outlives the
server. If the child dies, the server logs its exit status and starts it again
after a pause that doubles while it keeps dying (2 s up to 60 s).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds for a batch in flight to finish before SIGKILL
STABLE_SECONDS = 60.0  # a child that ran this long resets the restart backoff
MAX_BACKOFF = 60.0


class DeliveryProcess:
    """One `portal-authz deliver` child of this process; only the process that created it may stop it."""

    def __init__(self, config_path: Path, interval: float):
        self.owner = os.getpid()
        self.command = [sys.executable, "-m", "service.cli", "--config", str(config_path), "deliver",
                        "--interval", f"{interval:g}", "--parent-pid", str(self.owner)]
        self.process: subprocess.Popen | None = None
        self.stopping = False
        self._failures = 0
        self._started_at = 0.0
        self._next_start = 0.0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        with self._lock:
            if self.stopping or os.getpid() != self.owner or self.process is not None:
                return
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, close_fds=True)
            self._started_at = time.monotonic()
        log.info("delivery worker started (pid %d)", self.process.pid)

    def poll(self) -> None:
        """Reap the child if it exited (logging how), and schedule its restart."""
        with self._lock:
            process = self.process
            if process is None or process.poll() is None:
                return
            self.process = None
            if self.stopping:
                return
            ran = time.monotonic() - self._started_at
            self._failures = 0 if ran >= STABLE_SECONDS else self._failures + 1
            delay = min(MAX_BACKOFF, 2.0 ** max(1, self._failures))
            self._next_start = time.monotonic() + delay
        code = process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        log.error("delivery worker (pid %d) %s after %.0f s; restarting it in %.0f s", process.pid, how, ran, delay)

    def ensure(self) -> None:
        """Called periodically by the server's main process: reap, and restart when due."""
        self.poll()
        if self.process is None and not self.stopping and time.monotonic() >= self._next_start:
            self.start()

    def watch(self, interval: float = 1.0) -> threading.Thread:
        """For servers without a periodic hook of their own: a thread that calls ensure() until stop()."""
        def loop():
            while not self.stopping:
                self.ensure()
                time.sleep(interval)

        thread = threading.Thread(target=loop, name="delivery-watch", daemon=True)
        thread.start()
        return thread

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`; a no-op in any process but the one that started it."""
        if os.getpid() != self.owner:  # a forked worker unwinding through the server's code
            return
        with self._lock:
            self.stopping = True
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("delivery worker (pid %d) did not stop within %.0f s; killing it", process.pid, timeout)
            process.kill()
            process.wait()
        log.info("delivery worker (pid %d) stopped", process.pid)


class Stop:
    """In the child: SIGTERM/SIGINT and the parent's death end the loop between batches, never mid-send."""

    def __init__(self, parent_pid: int):
        import signal

        self.parent_pid = parent_pid
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def __bool__(self) -> bool:
        if not self.requested and os.getppid() != self.parent_pid:
            log.warning("delivery worker: the server (pid %d) is gone; stopping", self.parent_pid)
            self.requested = True
        return self.requested

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking within 0.5 s of a stop request or the parent's death."""
        deadline = time.monotonic() + seconds
        while not self and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
