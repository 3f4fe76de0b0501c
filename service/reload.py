"""Policy reload in every worker of a running `portal-authz serve`, and the pid file that finds it.

`portal-authz policy reload` compiles `policies/*.polar` first and refuses a
policy that does not load; only then does it send SIGHUP to the server's main
process, found through the pid file `serve` writes. The main process does not
restart anything:

1. It copies the `.polar` files into a fresh snapshot directory of its own (a
   private temporary directory per server run), compiles the copy, and only if
   that loads points `current` at it (one symlink swap). A policy that does not
   load is logged and goes no further: the workers keep the running policy.
2. It forwards SIGHUP to each worker. A worker's handler only writes a byte to
   a pipe; a reloader thread of that worker reads it and calls the app's
   `Policy.reload()`, which builds a new engine beside the running one and
   swaps it in with one reference assignment (a request sees the old policy or
   the new, never a mix). A reload that fails anyway keeps the running policy
   and is logged; the worker lives on.

Workers load from `current`, never from `policies/` itself, so every worker
loads the same text the main process checked, and a worker started later (a
replacement for one that died) loads the last good policy even if the files on
disk are broken at that moment: it cannot fail to boot on them. (Should two
reloads follow each other so closely that `current` moves while a worker is
reading it, that worker has a second SIGHUP pending and reads it again.)
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from service.config import Config
from service.policy import Policy, PolicyCheckError, PolicyLoadError, policy_files

log = logging.getLogger(__name__)

RELOAD_SIGNAL = signal.SIGHUP
KEEP_SNAPSHOTS = 2  # the current one and the one before (a slow worker may still be reading it)


# ---- the main process: validated snapshots ------------------------------------------------------

class PolicySnapshots:
    """The policy text this server run serves: checked copies of `policies/*.polar`, newest as `current`."""

    def __init__(self, source: Path):
        self.source = Path(source)
        self.root = Path(tempfile.mkdtemp(prefix="portal-authz-policy-"))
        self.current = self.root / "current"
        self.version: str | None = None
        self._serial = 0
        atexit.register(_remove_tree, self.root, os.getpid())

    def refresh(self) -> str:
        """Copy, compile and publish the source's policy; raises PolicyLoadError and keeps the current one."""
        files = policy_files(self.source)
        if not files:
            raise PolicyLoadError(f"no .polar files in {self.source}")
        self._serial += 1
        target = self.root / f"v{self._serial:06d}"
        target.mkdir()
        try:
            for path in files:
                (target / path.name).write_bytes(path.read_bytes())  # each file read once: what is checked is served
            version = Policy(target).version  # compiles it: PolicyLoadError if it does not load
        except (PolicyLoadError, OSError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(exc, OSError):
                raise PolicyLoadError(f"policy in {self.source} cannot be read: {exc}") from exc
            if isinstance(exc, PolicyCheckError):  # each problem names the author's file, not the snapshot
                raise PolicyCheckError(self.source, [p.replace(str(target), str(self.source))
                                                     for p in exc.problems]) from exc
            raise PolicyLoadError(str(exc).replace(str(target), str(self.source))) from exc
        link = self.root / f".current-{self._serial}"
        link.symlink_to(target.name)
        os.replace(link, self.current)  # atomic: a worker resolves the old snapshot or the new one
        self.version = version
        self._prune()
        return version

    def _prune(self) -> None:
        snapshots = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())
        for old in snapshots[:-KEEP_SNAPSHOTS]:
            shutil.rmtree(old, ignore_errors=True)

    def reload(self) -> bool:
        """On SIGHUP in the main process: publish the new policy if it loads; whether workers should reload."""
        previous = self.version
        try:
            version = self.refresh()
        except PolicyLoadError as exc:
            log.error("policy reload refused, the workers keep policy %s: %s", previous, exc)
            from service.observe.metrics import refused_policy_reload

            refused_policy_reload()
            return False
        if version == previous:
            log.info("policy reload: policy %s unchanged; asking the workers anyway", version)
        else:
            log.info("policy reload: policy %s replaces %s; asking every worker to load it", version, previous)
        return True


def _remove_tree(directory: Path, owner: int) -> None:
    if os.getpid() == owner:  # forked workers run atexit too; only the main process removes it
        shutil.rmtree(directory, ignore_errors=True)


# ---- each worker: reload in place ---------------------------------------------------------------

def install_worker_reload(policy: Policy) -> None:
    """In a worker process: SIGHUP makes a reloader thread call `policy.reload()`; nothing runs in the handler.

    The handler only writes to a pipe (no locks, no allocation worth mentioning), so it is safe whatever the
    worker's main thread was doing; the reload itself runs in this process's reloader thread, beside the
    request threads, and swaps the engine in one assignment. Several signals before it wakes are one reload.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    for fd in (read_fd, write_fd):
        os.set_inheritable(fd, False)

    def on_signal(signum, frame):
        try:
            os.write(write_fd, b"\0")
        except BlockingIOError:  # the pipe is full: a reload is already pending
            pass

    def reloader():
        while True:
            try:
                os.read(read_fd, 4096)  # blocks until a signal; drains any that piled up
            except InterruptedError:
                continue
            previous = policy.version
            try:
                version = policy.reload()
            except PolicyLoadError as exc:
                log.error("worker %d: policy reload failed, keeping policy %s: %s", os.getpid(), previous, exc)
            except Exception:  # never let a reload take the worker down
                log.exception("worker %d: policy reload failed, keeping policy %s", os.getpid(), previous)
            else:
                log.info("worker %d: policy %s loaded (was %s)", os.getpid(), version, previous)

    threading.Thread(target=reloader, name="policy-reloader", daemon=True).start()
    signal.signal(RELOAD_SIGNAL, on_signal)


# ---- the pid file ------------------------------------------------------------------------------

def pid_file_path(config: Config, port: int, override: str | os.PathLike | None = None) -> Path:
    """`--pid-file`, else `server.pid_file`, else `portal-authz-<config name>-<port>.pid` beside the config file
    (config.yaml on port 8000: portal-authz-config-8000.pid), so servers of two configs never share one."""
    if override:
        return Path(override).resolve()
    if config.server.pid_file is not None:
        return (config.base_dir / config.server.pid_file).resolve()
    return (config.base_dir / f"portal-authz-{config.config_name}-{port}.pid").resolve()


class PortTaken(Exception):
    """Another process listens on the address `serve` was asked to bind."""


def check_port_free(host: str, port: int) -> None:
    """Bind the address once without SO_REUSEPORT, and let go: PortTaken if another process listens there.

    The workers bind with SO_REUSEPORT, which would let a second server share a port with the first (the
    kernel then splits connections between two servers, perhaps over two databases). A plain bind fails
    against any listener, reuse or not; SO_REUSEADDR only lets it past connections left in TIME_WAIT."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortTaken(f"cannot resolve host {host!r}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos[:1]:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            raise PortTaken(f"port {port} on {host} is taken by another process ({exc.strerror}); "
                            "stop it or choose another --port") from None
        finally:
            probe.close()


class PidFileTaken(Exception):
    """The pid file names another running `portal-authz serve`."""


def check_pid_file_free(path: Path) -> None:
    """PidFileTaken when the pid file names another running server: never take (nor later delete) its file."""
    try:
        pid = server_pid(path)
    except ServerNotFound:
        return  # none, stale or not a server: ours to write
    if pid != os.getpid():
        raise PidFileTaken(f"pid file {path} belongs to a running server (pid {pid}); "
                           "stop it or choose another --pid-file")


def write_pid_file(path: Path) -> bool:
    """Write this process's pid (atomically); removed at exit by this process only. False if it cannot."""
    pid = os.getpid()
    temp = path.with_name(f".{path.name}.{pid}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(f"{pid}\n")
        os.replace(temp, path)
    except OSError as exc:
        log.warning("cannot write the pid file %s (%s): `portal-authz policy reload` will need --pid-file",
                    path, exc.strerror or exc)
        return False
    atexit.register(remove_pid_file, path, pid)
    return True


def remove_pid_file(path: Path, pid: int) -> None:
    """Remove the pid file if it is still this process's (another server may have taken the port since)."""
    if os.getpid() != pid:
        return
    try:
        if int(path.read_text().strip()) == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


class ServerNotFound(Exception):
    """No running server behind the pid file."""


def server_pid(path: Path) -> int:
    """The pid in the file, if that process is alive and is a `portal-authz serve`; else ServerNotFound."""
    try:
        pid = int(path.read_text().strip())
    except FileNotFoundError:
        raise ServerNotFound(f"no pid file {path}: is `portal-authz serve` running with this config and port?"
                             " (or pass --pid-file)") from None
    except (OSError, ValueError) as exc:
        raise ServerNotFound(f"cannot read a pid from {path}: {exc}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ServerNotFound(f"stale pid file {path}: process {pid} is not running") from None
    except PermissionError:
        raise ServerNotFound(f"process {pid} from {path} belongs to another user") from None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: make sure a recycled pid is not some other program
        try:
            command = cmdline.read_bytes()
        except OSError:
            command = b""
        # `... service.cli ... serve`, or the title a server gives itself when setproctitle is installed
        if command and not any(word in command for word in (b"serve", b"portal-authz", b"granian", b"gunicorn")):
            raise ServerNotFound(f"stale pid file {path}: process {pid} is not `portal-authz serve`")
    return pid


def signal_reload(pid: int) -> None:
    os.kill(pid, RELOAD_SIGNAL)
