"""Bodies built to reach a 500: a problem with a stable code instead, on every JSON endpoint.

- JSON nested 5,000 deep, sent as UTF-16-LE with an escaped quote inside a string: the depth check
  must read the decoded text (on bytes, the escaped quote's NUL ends the string early and the brackets
  after it are never counted), and JSON is UTF-8 (RFC 8259): any other encoding is refused, a declared
  charset other than UTF-8 with 415 (AuthZEN: 400, it never answers 415).
- A lone surrogate escape (`"\\ud800"`) in the actor, an organization id, a comment, a key: no character
  at all, so 422 `validation_error` with `errors[].code` `invalid_unicode` (AuthZEN: 400).
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import make_key
from tests.fixtures.http import ADDRESS

DEEP = 5000
QUESTION = {"portal": "ahcccs", "actor": "mara", "action": "claims", "resource": {"type": "organization", "id": "P-1"}}
EVALUATION = {"subject": {"type": "account", "id": "mara"},
              "action": {"name": "claims"}, "resource": {"type": "organization", "id": "P-1"}}


def deep_utf16() -> bytes:
    """The quote after the escaped one opens, read as bytes, a string that runs over every bracket."""
    return ('{"a":"\\"","b":' + "[" * DEEP + "]" * DEEP + ',"c":"d"}').encode("utf-16-le")


@pytest.fixture
def key(database, clock):
    return make_key(database, ("authorize", "manage", "enroll"), clock.now())


@pytest.fixture
def post(client, key):
    def _post(path, body: bytes, content_type="application/json"):
        return client.post(path, data=body, headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})

    return _post


ENDPOINTS = {"authorize": ("/v1/authorize", 400), "sessions": ("/v1/portals/ahcccs/sessions", 400),
             "authzen evaluation": ("/authzen/ahcccs/access/v1/evaluation", 400),
             "authzen evaluations": ("/authzen/ahcccs/access/v1/evaluations", 400)}


@pytest.mark.parametrize("path", [p for p, _ in ENDPOINTS.values()], ids=list(ENDPOINTS))
def test_deep_utf16_with_an_escaped_quote_is_malformed_json_not_a_recursion(post, path):
    answer = post(path, deep_utf16())
    assert (answer.status_code, answer.get_json()["code"]) == (400, "malformed_json"), answer.get_data()[:300]
    assert answer.mimetype == "application/problem+json"


@pytest.mark.parametrize("path", [p for p, _ in ENDPOINTS.values()], ids=list(ENDPOINTS))
def test_deep_nesting_in_utf8_behind_an_escaped_quote_is_refused(post, path):
    answer = post(path, ('{"a":"\\"","b":' + "[" * DEEP + "]" * DEEP + ',"c":"d"}').encode())
    assert (answer.status_code, answer.get_json()["code"]) == (400, "malformed_json")


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/authorize", QUESTION, 415), ("/v1/portals/ahcccs/sessions", {"username": "mara", "password": "x"}, 415),
    ("/authzen/ahcccs/access/v1/evaluation", EVALUATION, 400)], ids=["authorize", "sessions", "authzen"])
def test_a_charset_other_than_utf8_is_refused(post, path, body, status):
    declared = post(path, json.dumps(body).encode("utf-16"), "application/json; charset=utf-16")
    assert (declared.status_code, declared.get_json()["code"]) == (status, "unsupported_media_type")
    undeclared = post(path, json.dumps(body).encode("utf-16-le"))  # no charset: read as UTF-8, not JSON
    assert (undeclared.status_code, undeclared.get_json()["code"]) == (400, "malformed_json")
    invalid = post(path, b'{"actor": "\xff\xfe"}')  # not UTF-8 at all
    assert (invalid.status_code, invalid.get_json()["code"]) == (400, "malformed_json")


def _lone(body: dict, *path) -> bytes:
    """`body` with the string at `path` replaced by a lone high surrogate escape, as a client would send it."""
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "x\ud800y"
    text = json.dumps(copy)  # ensure_ascii: the surrogate travels as the escape \ud800
    assert "\\ud800" in text
    return text.encode()


def _invalid_unicode(answer, status, field):
    body = answer.get_json()
    assert (answer.status_code, body["code"]) == (status, "validation_error"), body
    assert body["errors"] == [{"field": field, "code": "invalid_unicode",
                               "message": "a surrogate escape must be one of a high-low pair"}]


def test_a_lone_surrogate_in_the_actor_or_an_organization_id_of_a_question(post):
    _invalid_unicode(post("/v1/authorize", _lone(QUESTION, "actor")), 422, "actor")
    _invalid_unicode(post("/v1/authorize", _lone(QUESTION, "resource", "id")), 422, "resource.id")
    _invalid_unicode(post("/authzen/ahcccs/access/v1/evaluation", _lone(EVALUATION, "subject", "id")), 400, "subject.id")
    _invalid_unicode(post("/authzen/ahcccs/access/v1/evaluation", _lone(EVALUATION, "resource", "id")), 400, "resource.id")
    key = post("/v1/authorize", json.dumps({**QUESTION, "context": {"\ud800": 1}}).encode())
    _invalid_unicode(key, 422, "context.\\ud800")


def test_a_lone_surrogate_in_sign_in_enrolment_and_a_comment(post, api):
    _invalid_unicode(post("/v1/portals/ahcccs/sessions", _lone({"username": "mara", "password": "pw"}, "password")),
                     422, "password")
    organization = {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}
    _invalid_unicode(post("/v1/portals/ahcccs/organizations", _lone(organization, "key")), 422, "key")
    _invalid_unicode(post("/v1/portals/ahcccs/organizations", _lone(organization, "addresses", 0, "line1")),
                     422, "addresses.0.line1")
    _invalid_unicode(post("/v1/portals/ahcccs/accounts/mara/disable", _lone({"comment": "why"}, "comment")),
                     422, "comment")


def test_a_surrogate_pair_is_a_character_and_passes(post, api):
    """An escaped pair (U+1F600) is well-formed: the question is answered, not refused."""
    api("ahcccs").call("POST", "/organizations", {"key": "P-1", "name": "Clinic", "addresses": [ADDRESS]}, expect=201)
    answer = post("/v1/authorize", json.dumps({**QUESTION, "actor": "mara\U0001F600"}).encode())
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["allowed"] is False
