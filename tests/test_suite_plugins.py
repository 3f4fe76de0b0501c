"""The suite's own set-up: pytest plugins that installed packages register but no test uses are not loaded."""
from __future__ import annotations


def test_the_unused_plugins_are_not_loaded(request):
    """schemathesis is run as a command (tests/test_contract_fuzz.py) and no test is an anyio test; importing
    their plugins cost every pytest process about 1.5 s of CPU (bench/README.md)."""
    for name in ("schemathesis", "anyio"):
        assert request.config.pluginmanager.is_blocked(name)
        assert request.config.pluginmanager.get_plugin(name) is None
