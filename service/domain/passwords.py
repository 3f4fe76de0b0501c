"""Argon2id hashing for everything a person chooses or types."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when an account does not exist, so both paths cost the same.
DUMMY_HASH = _hasher.hash("portal-authz timing equalizer")
# `testing: {hashing: cheap}` (a QA server only, see service/config.py): the in-process test runs' cost.
CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def use_cheap_hashing() -> None:
    """Hash at CHEAP cost from now on in this process, the timing equalizer too (both paths still cost the same)."""
    global _hasher, DUMMY_HASH
    _hasher = PasswordHasher(**CHEAP)
    DUMMY_HASH = _hasher.hash("portal-authz timing equalizer")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash or DUMMY_HASH, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
