"""The invariant search can fail: with one clause of the reach rule dropped from a scratch copy of the policy,
the search of tests/test_invariants.py finds the takeover (SQLite, masshealth, no shrinking, stopping at the
first violation; at most 300 sequences). A file of its own so that the whole-suite run's two workers can take
it and the searches that must find nothing at the same time (--dist loadfile keeps a file on one worker).
"""
from __future__ import annotations

import shutil

import pytest

from service.policy import Policy
from tests.invariants import Violation
from tests.test_invariants import cheap_argon2, run_machine, sqlite_databases  # noqa: F401 (fixtures)

BREAKS = {
    # authority in the named organization is enough: the admin duties' rule no longer lists the
    # requirement administers_everywhere
    "reach": ('    "administers_everywhere", "no_capture",\n', "without authority in every organization"),
    # R15: a delegate may point the email or the recovery of an account holding more than it at itself
    # (the requirement no_capture always holds)
    "capture": ('requirement("no_capture", actor, action, target) if\n'
                "    (not captures(action)) or may_capture(actor, target);\n", "without holding its functions"),
}


def broken_policy(tmp_path, config, clause: str) -> Policy:
    """A scratch copy of the policy with one clause of the reach rule dropped."""
    scratch = tmp_path / "policies"
    shutil.copytree(config.policy_path, scratch)
    portal = scratch / "portal.polar"
    text = portal.read_text()
    assert clause in text, clause
    if clause.startswith("requirement("):  # a requirement that always holds
        name = clause.split(",", 1)[0]
        portal.write_text(text.replace(clause, f"{name}, _actor, _action, _target);\n"))
    elif clause.strip().startswith('"'):  # a requirement dropped from a rule's list
        portal.write_text(text.replace(clause, '    "no_capture",\n', 1))
    else:
        portal.write_text(text.replace(clause, "    true;\n" if clause.rstrip().endswith(";") else ""))
    return Policy(scratch)


@pytest.mark.R1
@pytest.mark.R15
@pytest.mark.parametrize("broken", sorted(BREAKS))
def test_the_search_finds_the_takeover_when_a_reach_clause_is_dropped(broken, sqlite_databases, config, clock,
                                                                       tmp_path, cheap_argon2):
    clause, expected = BREAKS[broken]
    ran: dict = {}
    with pytest.raises(Violation) as found:
        run_machine(sqlite_databases, config, broken_policy(tmp_path, config, clause), clock, 300,
                    portals=("masshealth",), shrink=False, ran=ran)
    print(f"\nfound with the {broken} clause dropped, in sequence {ran.get('sequences')}: {found.value}")
    assert expected in str(found.value)
