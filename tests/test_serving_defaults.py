"""How `serve` runs granian by default, and the one granian warning that choice silences."""
from __future__ import annotations

import logging
import multiprocessing

from service.server import MeasuredWorkers, _granian_logconfig, default_threads, default_workers


def test_granian_runs_two_single_threaded_workers_per_core():
    """Measured in bench/serving.py (docs/operations.md, "Why granian"); gunicorn keeps its sync workers."""
    cores = multiprocessing.cpu_count()
    assert (default_workers("granian"), default_threads("granian")) == (2 * cores, 1)
    assert (default_workers("gunicorn"), default_threads("gunicorn")) == (2 * cores + 1, 1)


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
