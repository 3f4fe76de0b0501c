"""The app's URL rules compile their URL builders at the first url_for that needs one (service/api/routing.py)."""
from __future__ import annotations

from flask import url_for
from werkzeug.routing import Map, Rule

from service.app import create_app


def test_building_the_app_compiles_no_url_builder(config, database, policy, clock, monkeypatch):
    compiled = []
    compile_builder = Rule._compile_builder

    def counting(rule, append_unknown=True):
        compiled.append((rule.rule, append_unknown))
        return compile_builder(rule, append_unknown)

    monkeypatch.setattr(Rule, "_compile_builder", counting)
    app = create_app(config, database=database, policy=policy, clock=clock)
    assert compiled == []
    assert app.test_client().get("/healthz").status_code == 200  # matching a request builds nothing either
    assert compiled == []
    with app.test_request_context():
        first = url_for("console.account", portal="qm", username="ann.lee", organization="Q-1")
        assert compiled == [("/console/<portal>/accounts/<username>", True)]
        assert url_for("console.account", portal="ahcccs", username="bo", organization="P-2") != first
        assert len(compiled) == 1  # compiled once, then kept on the rule


def test_every_rule_builds_the_url_a_plain_werkzeug_rule_builds(app):
    """With its variables filled in, with and without a query argument it does not name, and with a variable
    called `rule` (the builder's own first parameter is positional-only)."""
    plain = Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods) for rule in app.url_map.iter_rules()])
    lazy, eager = app.url_map.bind("localhost"), plain.bind("localhost")
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 50
    for rule in rules:
        values = {name: f"v-{name}/ä" for name in rule.arguments}
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        for extra in ({}, {"rule": "x y", "next": "/a?b"}):
            assert lazy.build(rule.endpoint, {**values, **extra}, method) == \
                eager.build(rule.endpoint, {**values, **extra}, method), rule.rule
            assert lazy.build(rule.endpoint, {**values, **extra}, method, append_unknown=False) == \
                eager.build(rule.endpoint, {**values, **extra}, method, append_unknown=False), rule.rule
