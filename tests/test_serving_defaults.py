"""How `serve` runs granian by default, and the one granian warning that choice silences."""
from __future__ import annotations

import logging
import multiprocessing

from service.server import MeasuredWorkers, _granian_logconfig, default_threads, default_workers


def test_granian_runs_one_single_threaded_worker_per_core_beside_a_local_database_and_two_beside_a_remote_one():
    """Measured in bench/mixed.py and bench/serving.py (docs/operations.md, "Why granian"); gunicorn keeps its sync
    workers whatever the database."""
    cores = multiprocessing.cpu_count()
    for local in ("sqlite:////srv/portal-authz.db", "postgresql://authz@127.0.0.1:5432/authz",
                  "postgresql+psycopg://authz@localhost/authz", "postgresql:///authz?host=/var/run/postgresql",
                  "postgresql://authz@[::1]/authz"):
        assert (default_workers("granian", local), default_threads("granian")) == (cores, 1), local
    for remote in ("postgresql://authz@db.internal:5432/authz", "postgresql://authz@10.0.0.5/authz",
                   "postgresql:///authz?host=db.internal", "postgresql://authz@127.0.0.1/authz?host=db.internal"):
        assert default_workers("granian", remote) == 2 * cores, remote
    for url in ("sqlite:////srv/portal-authz.db", "postgresql://authz@db.internal/authz"):
        assert (default_workers("gunicorn", url), default_threads("gunicorn")) == (2 * cores + 1, 1)


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("_granian", logging.WARNING, __file__, 0, message, None, None)


def test_only_granians_workers_over_cores_warning_is_dropped(config):
    measured = MeasuredWorkers()
    assert not measured.filter(_record("Configured number of workers appears to be higher than the amount of CPU "
                                       "cores available. Mind that such value might actually decrease ..."))
    assert measured.filter(_record("Spawning worker-1 with PID: 12"))
    assert measured.filter(_record("Worker (pid: 12) died"))
    logconfig = _granian_logconfig(config)
    assert logconfig["filters"]["measured_workers"]["()"] is MeasuredWorkers
    assert logconfig["loggers"]["_granian"]["filters"] == ["measured_workers"]
