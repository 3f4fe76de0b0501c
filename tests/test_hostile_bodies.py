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
from hypothesis import example, given
from hypothesis import strategies as st

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


# --- The body's reading, against its plain statement ---------------------------------------------------

def _plain_reading(data: bytes):
    """What admission's `parse_json` states, read the plain way (the codec utf-8-sig, then `json.loads`): the
    value, or the problem's (status, code, detail)."""
    from service.api.admission import MAX_JSON_DEPTH, json_depth, unpaired_surrogate

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return 400, "malformed_json", "the request body is not UTF-8 text"
    if json_depth(text) > MAX_JSON_DEPTH:
        return 400, "malformed_json", ("the body nests arrays and objects deeper than the limit of "
                                       f"{MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except ValueError:
        return 400, "malformed_json", "the request body is not valid JSON"
    if unpaired_surrogate(value) is not None:
        return 422, "validation_error", "a string holds an unpaired surrogate escape (\\uD800-\\uDFFF): not a character"
    return ("value", value)


def _reading(data: bytes):
    from service.api.admission import Problem, parse_json

    try:
        return ("value", parse_json(data))
    except Problem as problem:
        return problem.status, problem.code, problem.detail


PIECES = [b"\xef\xbb\xbf", b"\xef\xbb", b"\xef", b"\xfe\xff", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\x00",
          "\ufeff".encode(), b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\xc2\xa0", b"{", b"}", b"[", b"]", b'"',
          b"\\", b":", b",", b"1", b"-0", b"1e400", b"1" * 5000, b"NaN", b"Infinity", b"true", b"null", b'"a"',
          b'"\\ud800"', b'"\\ud83d\\ude00"', b'"\\u00e9"', b'"\\"', b'"\x01"', b'"a\nb"', json.dumps(QUESTION).encode()]


@given(st.lists(st.sampled_from(PIECES), max_size=8) | st.binary(max_size=40)
       | st.builds(lambda prefix, value: prefix + json.dumps(value).encode(), st.sampled_from([b"", b"\xef\xbb\xbf",
                   b"\xef\xbb\xbf\xef\xbb\xbf", b" ", b"\xef\xbb\xbf "]), st.recursive(
           st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
           max_leaves=12)))
@example([])
@example([b"\xef\xbb\xbf"])
@example([b"\xef\xbb\xbf", b"\xef\xbb\xbf", b"1"])
@example([b"\xef\xbb", b"1"])
@example([b'"\x01"'])
@example([b" ", b"1", b"\x0c"])
@example([b"\xc2\xa0", b"1"])
@example([b"1", b"1"])
@example([b"1" * 5000])
@example([b"NaN"])
@example([b"1e400"])
@example(["\ufeff".encode(), b"1"])
def test_the_body_is_read_as_the_codec_and_json_loads_read_it(pieces):
    """parse_json strips the byte order mark and parses without the codec's and json.loads' own calls: every body,
    with zero, one or two marks, bytes that are not UTF-8 and JSON of every kind, reads exactly as before."""
    data = pieces if isinstance(pieces, bytes) else b"".join(pieces)
    for body in (data, b"\xef\xbb\xbf" + data):
        assert repr(_reading(body)) == repr(_plain_reading(body))  # repr: a NaN read equals a NaN read


@pytest.mark.parametrize("path", ["/v1/authorize", "/authzen/ahcccs/access/v1/evaluation"])
def test_a_byte_order_mark_is_read_past_and_a_second_one_is_not_json(post, path):
    body = json.dumps(QUESTION if path == "/v1/authorize" else EVALUATION).encode()
    plain, marked, twice = post(path, body), post(path, b"\xef\xbb\xbf" + body), post(path, b"\xef\xbb\xbf" * 2 + body)
    assert plain.status_code == marked.status_code and plain.get_json() == marked.get_json()
    assert plain.status_code != 400
    assert (twice.status_code, twice.get_json()["code"]) == (400, "malformed_json")
