"""A policy load reads each Polar text once, and a load of texts already read reads none again: the compiled
evaluator's parser, the renaming check and the generated clauses share one reading of each text, and a reload
(or a copy of the policy with one file changed, as the workbench and the decision tables' mutation tests load)
reads only what changed. The answers are those of a load that read everything afresh."""
from __future__ import annotations

import re

import pytest

from service import polar_text
from service.kernel.facts import ActorFacts, MembershipFacts, OrganizationFacts
from service.policy import Policy
from tests.fixtures.fact_strategies import CATALOG
from tests.fixtures.policies import copy_policy


class CountingPattern:
    """The tokenizer's pattern, counting the texts read from their start."""

    def __init__(self, pattern: re.Pattern):
        self.pattern, self.read = pattern, []

    def match(self, text: str, pos: int = 0):
        if pos == 0:
            self.read.append(text)
        return self.pattern.match(text, pos)


@pytest.fixture
def counting(monkeypatch):
    counter = CountingPattern(polar_text._TOKEN)
    monkeypatch.setattr(polar_text, "_TOKEN", counter)
    return counter


def unique_copy(tmp_path, mark: str):
    """The shipped policy, its texts made new to any reading kept (a comment of their own)."""
    (tmp_path / mark).mkdir()
    folder = copy_policy(tmp_path / mark)
    for path in folder.glob("*.polar"):
        path.write_text(path.read_text(encoding="utf-8") + f"\n# {mark}\n", encoding="utf-8")
    return folder


def test_a_load_reads_each_text_once_and_a_reload_reads_none(tmp_path, counting):
    folder = unique_copy(tmp_path, "a copy read once")
    policy = Policy(folder)
    assert policy.generated and policy.compiled
    assert counting.read, "the load read no text: the count does not see the tokenizer"
    assert len(counting.read) == len(set(counting.read)), "a text was read more than once in one load"
    counting.read.clear()
    policy.reload()
    assert counting.read == []


def test_a_copy_with_one_file_changed_reads_that_file_alone_and_answers_as_a_fresh_load(tmp_path, counting, config):
    folder = unique_copy(tmp_path, "a copy with a file changed")
    Policy(folder)
    counting.read.clear()
    reasons = folder / "reasons.polar"
    reasons.write_text(reasons.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    changed = Policy(folder)
    assert [text for text in counting.read if text.endswith("# changed\n")] == [reasons.read_text(encoding="utf-8")]
    assert not any(text.endswith("# a copy with a file changed\n") for text in counting.read)
    # The answers of the shipped policy (a comment changes nothing), read afresh.
    shipped = Policy(config.policy_path)
    org = OrganizationFacts("O1", CATALOG, "manage_account", 1, True, offers_links=True, offers_subordinates=True,
                            portal="ahw")
    for actor in (ActorFacts("ann", True, "active", True, False, (MembershipFacts("O1", "admin", True, ()),), True),
                  ActorFacts("bob", True, "active", True, False, (MembershipFacts("O1", "member", True, ()),), True)):
        for action in ("claims", "create_account", "view"):
            ours, theirs = changed.decide(actor, action, org), shipped.decide(actor, action, org)
            assert (ours.allowed, ours.reasons) == (theirs.allowed, theirs.reasons)
