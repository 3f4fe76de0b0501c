"""The timing equalizer (service/domain/passwords.py): hashed by a process's first verification, not at import."""
from __future__ import annotations

import subprocess
import sys

from service.domain import passwords
from tests.conftest import ROOT


def test_importing_the_module_hashes_nothing():
    """A process that never verifies a secret does not pay a production-cost hash to start."""
    done = subprocess.run([sys.executable, "-c", "import service.domain.passwords as p; print(p.DUMMY_HASH)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_the_first_verification_makes_the_equalizer_on_either_path(monkeypatch):
    """An unknown username and a known one both make it, so the first verification costs the same on either."""
    stored = passwords.hash_secret("Right#Horse7")
    for stored_hash, secret, expected in ((None, "Right#Horse7", False), (stored, "Right#Horse7", True),
                                          (stored, "Wrong#Horse7", False)):
        monkeypatch.setattr(passwords, "DUMMY_HASH", None)
        assert passwords.verify_secret(stored_hash, secret) is expected
        assert passwords.DUMMY_HASH is not None and passwords._hasher.verify(passwords.DUMMY_HASH, passwords.EQUALIZER)
        made = passwords.DUMMY_HASH
        assert passwords.verify_secret(stored_hash, secret) is expected
        assert passwords.DUMMY_HASH == made  # made once, then kept


def test_the_equalizer_is_at_the_hashers_cost(monkeypatch):
    monkeypatch.setattr(passwords, "DUMMY_HASH", None)
    assert "$m=1024,t=1,p=1$" in passwords.timing_equalizer()  # the suite's hasher (passwords.CHEAP)
