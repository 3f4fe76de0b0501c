"""The optional decision log: one JSON line per decision, appended to one file by every worker.

Each request's entries (one per check of a batch) are written with a single
`os.write` on a file descriptor opened with O_APPEND: the kernel appends each
write at the end of the file as a whole, so lines from several worker processes
never interleave. Sampling is per request: a batch is logged whole or not at all.

An entry holds what explains a decision and nothing secret: the time, the
request id, the calling client's name, the policy version, the portal, the
actor's username, the action, the resource (type, id, organization),
`context.permission` for grant/revoke, whether it was allowed and the reason
codes, and `facts`: the actor's and the resource's facts the policy
decided on (standing, memberships, grants, statuses, links; no secret among
them), so that `portal-authz policy diff` can ask a changed policy the same
question. No other context, no headers, no passwords, keys or codes.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import weakref
from pathlib import Path

from service.config import DecisionLog as Settings
from service.workbench.explain import facts_json

log = logging.getLogger(__name__)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _resource(resource) -> dict:
    return {"type": resource.type, "id": resource.id, "organization": resource.organization}


def _permission(question) -> str | None:
    context = getattr(question, "context", None) or {}
    permission = context.get("permission") if isinstance(context, dict) else None
    return permission if isinstance(permission, str) else None


class DecisionLog:
    """Writes entries when the mode and the sample say so; `wanted()` is asked once per request."""

    def __init__(self, settings: Settings, path: Path, on_error=None):
        self.mode = settings.mode
        self.rate = settings.sample_rate
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None
        self._closer: weakref.finalize | None = None
        self._lock = threading.Lock()  # threaded workers: one descriptor, opened once
        self._on_error = on_error
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def wanted(self) -> bool:
        """Whether this request's decisions are logged: always, never, or with probability sample_rate."""
        if self.mode == "all":
            return True
        if self.mode == "sampled":
            return random.random() < self.rate  # random() is in [0, 1): rate 0 never, rate 1 always
        return False

    @staticmethod
    def entries(base: dict, questions, decisions) -> list[dict]:
        out = []
        batch = len(questions) > 1
        for index, (question, decision) in enumerate(zip(questions, decisions)):
            entry = dict(base)
            if batch:
                entry["index"] = index
            entry.update(policy_version=decision.policy_version, action=question.action,
                         resource=_resource(question.resource), permission=_permission(question),
                         allowed=decision.allowed, reasons=list(decision.reasons))
            facts = getattr(decision, "facts", None)
            if facts is not None:
                entry["facts"] = facts_json(*facts)
            out.append(entry)
        return out

    @staticmethod
    def base(endpoint: str, request_id: str | None, client: str | None, portal: str, actor: str) -> dict:
        return {"time": _now(), "request_id": request_id, "endpoint": endpoint, "client": client,
                "portal": portal, "actor": actor}

    def write(self, entries: list[dict]) -> None:
        if not entries:
            return
        data = "".join(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
                       for entry in entries).encode()
        try:
            fd = self._descriptor()
            written = os.write(fd, data)
            while written < len(data):  # only on a full disk or a signal; the rest still appends
                written += os.write(fd, data[written:])
        except OSError as exc:
            if self._on_error:
                self._on_error()
            if not self._warned:
                self._warned = True
                log.warning("cannot write the decision log %s: %s", self.path, exc.strerror or exc)

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is not None and self._pid == pid:
            return self._fd
        with self._lock:  # opened lazily in each worker, never shared across fork
            if self._fd is None or self._pid != pid:
                if self._closer is not None:
                    self._closer()  # a descriptor inherited from the parent: close our copy
                # Who asked about whom is the service user's alone (0700 directory, 0600 file).
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._closer = weakref.finalize(self, _close, fd)
                self._fd, self._pid = fd, pid
            return self._fd


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
