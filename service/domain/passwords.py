"""Argon2id hashing for everything a person chooses or types, and doing that work ahead of a write lock.

Argon2 is slow on purpose (tens of milliseconds). Inside a write transaction that is tens of
milliseconds of holding SQLite's database-wide write lock (or an account's row lock on PostgreSQL)
while every other writer waits, and under ordinary concurrency they wait past their timeout. So a
change that hashes or verifies runs its argon2 work first, outside any write transaction
(`worked_ahead` around the unit of work, and an `ahead` step that reads what the change will compare
with and calls the functions below), and the change itself, inside its short transaction, calls them
again with what it reads there: the same stored hash and secret find the result computed ahead,
a hash computed ahead for a secret is used once, a code drawn ahead is the next code issued. Nothing
computed ahead is trusted blindly: a verification is reused only for the very hash the transaction
read under its lock (a password changed in between is verified again, inside), so a decision is
always about the row as locked, and the work done is the same on every path.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when an account does not exist, so both paths cost the same. Hashed by the process's first
# verification, on either path (so that one costs the same whichever path it takes), not at import: a process that
# never verifies a secret (a CLI command, a server that only answers decisions) does not pay a production-cost
# hash (about 0.2 s of CPU) to start.
DUMMY_HASH: str | None = None
EQUALIZER = "portal-authz timing equalizer"
# `testing: {hashing: cheap}` (a QA server only, see service/config.py): the in-process test runs' cost.
CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def use_cheap_hashing() -> None:
    """Hash at CHEAP cost from now on in this process, the timing equalizer too (both paths still cost the same)."""
    global _hasher, DUMMY_HASH
    _hasher = PasswordHasher(**CHEAP)
    DUMMY_HASH = _hasher.hash(EQUALIZER)


def timing_equalizer() -> str:
    """The hash verified against when there is no account, at the current hasher's cost; made on first use."""
    global DUMMY_HASH
    if DUMMY_HASH is None:
        DUMMY_HASH = _hasher.hash(EQUALIZER)  # two threads may both make one: either serves
    return DUMMY_HASH

_ahead: ContextVar[dict | None] = ContextVar("argon2_ahead", default=None)


@contextmanager
def worked_ahead() -> Iterator[None]:
    """A scope (one request's change) in which argon2 results computed ahead are reused."""
    token = _ahead.set({})
    try:
        yield
    finally:
        _ahead.reset(token)


def _verify(stored_hash: str | None, secret: str) -> bool:
    equalizer = timing_equalizer()  # on both paths, so the first verification costs the same on either
    try:
        return _hasher.verify(stored_hash or equalizer, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    memo = _ahead.get()
    if memo is None:
        return _verify(stored_hash, secret)
    key = ("verify", stored_hash, secret)
    if key not in memo:
        memo[key] = _verify(stored_hash, secret)
    return memo[key]


def hash_secret(secret: str) -> str:
    memo = _ahead.get()
    ready = memo.get(("hash", secret)) if memo is not None else None
    if ready:
        return ready.pop()  # each hash computed ahead is used once (each has its own salt)
    return _hasher.hash(secret)


def hash_ahead(secret: str) -> None:
    """Compute now the hash that `hash_secret(secret)` will return inside the transaction."""
    memo = _ahead.get()
    if memo is not None:
        memo.setdefault(("hash", secret), []).append(_hasher.hash(secret))


def fresh_secret(generate: Callable[[], str]) -> tuple[str, str]:
    """A new random secret (a one-time code, a temporary password) and its hash: the one drawn ahead, if any."""
    memo = _ahead.get()
    drawn = memo.get(("drawn", generate)) if memo is not None else None
    if drawn:
        return drawn.pop()
    secret = generate()
    return secret, _hasher.hash(secret)


def draw_ahead(generate: Callable[[], str]) -> None:
    """Draw now the secret (and hash it) that the next `fresh_secret(generate)` will return."""
    memo = _ahead.get()
    if memo is not None:
        secret = generate()
        hashed = _hasher.hash(secret)
        memo.setdefault(("drawn", generate), []).append((secret, hashed))
        memo.setdefault(("hash", secret), []).append(hashed)  # for code that draws it, then hashes it itself
