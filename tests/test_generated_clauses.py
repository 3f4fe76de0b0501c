"""The clauses generated from the rule lists when the policy loads (service/policy_generate.py) answer
exactly as the authored interpreter (`allow`, `deny_reason` in portal.polar): the same decisions,
the same reasons, the same authorized actions, on generated facts; and a policy whose interpreter
is not the one they stand for gets none and is asked as written."""
from __future__ import annotations

import logging
import shutil

from hypothesis import given
from oso import Variable

from service.policy import Policy
from tests.fixtures.fact_strategies import SETTINGS, actors, questions


def authored(oso, actor, action, resource):
    reasons = {r["bindings"]["code"] for r in oso.query_rule("deny_reason", actor, action, resource, Variable("code"))}
    return oso.is_allowed(actor, action, resource), reasons


@SETTINGS
@given(actor=actors, question=questions)
def test_generated_clauses_answer_as_the_authored_interpreter(policy, actor, question):
    action, resource = question
    assert policy.generated
    oso = policy.oso()
    allowed, reasons = authored(oso, actor, action, resource)
    assert oso.query_rule_once("generated_allow", actor, action, resource) == allowed
    generated_reasons = {r["bindings"]["code"]
                         for r in oso.query_rule("generated_deny", actor, action, resource, Variable("code"))}
    assert generated_reasons == reasons
    listed = {r["bindings"]["action"] for r in oso.query_rule("generated_allow", actor, Variable("action"), resource)}
    assert listed == set(oso.authorized_actions(actor, resource))


def test_a_policy_with_another_interpreter_is_asked_as_written(config, tmp_path, caplog):
    for path in config.policy_path.glob("*.polar"):
        shutil.copy(path, tmp_path / path.name)
    portal = tmp_path / "portal.polar"
    text = portal.read_text()
    # An extra way to be allowed, outside the rule lists: generated clauses would miss it.
    portal.write_text(text + '\nallow(actor: Account, "view", _org: Organization) if actor.support = true;\n')
    with caplog.at_level(logging.WARNING, logger="service.policy"):
        policy = Policy(tmp_path)
    assert not policy.generated
    assert "`allow` is not the requirement-list interpreter" in caplog.text
    assert Policy(config.policy_path).generated
