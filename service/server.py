"""Serving with gunicorn (a production WSGI server), configured from code, one app per worker."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication

from service.config import Config
from service.observe import serving


class _Gunicorn(BaseApplication):
    def __init__(self, config: Config, options: dict):
        self._config = config
        self._options = options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Each worker builds its own app: its own engine and connection pool, never shared across fork.
        from service.app import create_app

        return create_app(self._config)


def serve(config: Config, *, host: str, port: int, workers: int) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        # gunicorn 27's control socket is one fixed path per user; several servers on a machine would share it.
        "control_socket_disable": True,
    }
    options.update(serving.gunicorn_options(config))  # metrics of exited workers; logs in the service's format
    _Gunicorn(config, options).run()
