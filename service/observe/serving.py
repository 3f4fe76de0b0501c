"""What `portal-authz serve` sets up before any worker starts, and gunicorn's hooks for it."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from service.config import Config
from service.observe import logs
from service.observe.metrics import MULTIPROC_ENV

# Set for the server's processes: a worker that was spawned rather than forked sets up its logging itself.
SERVING_ENV = "PORTAL_AUTHZ_SERVING"


def prepare(config: Config) -> str:
    """Log as configured from now on; a fresh, empty metrics directory for this server run, removed when it ends.

    Must run in the server's main process before it starts workers: prometheus-client reads
    PROMETHEUS_MULTIPROC_DIR when the workers first create metrics, and they inherit it from here.
    """
    logs.configure(config.logging)
    directory = tempfile.mkdtemp(prefix="portal-authz-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    os.environ[SERVING_ENV] = "1"
    atexit.register(_remove, directory, os.getpid())
    # Imported now, single-threaded: child_exit may run in a server's watcher thread while the main thread
    # forks a replacement worker, and a fork during that thread's first import would inherit a held import lock.
    import prometheus_client.multiprocess  # noqa: F401
    return directory


def _remove(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # forked workers run atexit too; only the main process removes the directory
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(_server, worker) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges (its pool) stop counting; its counters stay."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess  # already imported by prepare()

        multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(config: Config) -> dict:
    """gunicorn settings for the above: the child_exit hook, and gunicorn's own records in the service's format."""
    return {"child_exit": child_exit, "logconfig_dict": logs.gunicorn_logconfig(config.logging)}
