"""R17: the password validator, against an independent reference and by example.

The reference below is written differently on purpose: regular expressions
(with re.IGNORECASE for "ignoring case") and Unicode categories, where the
validator uses str methods and per-character case folding. Hypothesis looks
for any password, user name and rule set on which the two disagree.
"""
from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config import PasswordRules
from service.domain.password_rules import broken_rules
from service.domain.passwords import hash_secret

CONTRACT_SPECIALS = "@!#=$%^&'()*?_~"
ORDER = ["too_short", "missing_lowercase", "missing_uppercase", "missing_digit", "missing_special",
         "repeated_characters", "shares_username", "reused_password"]
# Characters near the special set that are NOT in it, letters with case quirks, digits that are not 0-9.
NEAR_MISSES = "-+\"./\\<>[]{}|,;:` "
# Final sigma is left out: re's backreferences compare simple lower case, and lower("ς") is "ς",
# while Unicode caseless matching (casefold) makes ς, σ and Σ one letter; see the example test.
QUIRKS = "éÉßẞǄǅǆKΣσ²٣"
ALPHABET = "abcxyzABCXYZ0129" + CONTRACT_SPECIALS + NEAR_MISSES + QUIRKS


def reference(password: str, username: str, rules: PasswordRules) -> list[str]:
    """R17 restated: what the contract says, in another formulation."""
    codes = []
    if len(password) < rules.min_length:
        codes.append("too_short")
    categories = {unicodedata.category(c) for c in password}
    if rules.require_lowercase and "Ll" not in categories:
        codes.append("missing_lowercase")
    if rules.require_uppercase and "Lu" not in categories:
        codes.append("missing_uppercase")
    if rules.require_digit and "Nd" not in categories:
        codes.append("missing_digit")
    if rules.special_characters and not re.search("[" + re.escape(rules.special_characters) + "]", password):
        codes.append("missing_special")
    if rules.max_repeated is not None:
        # One character followed by max_repeated more of itself, ignoring case.
        if re.search(r"(.)\1{%d}" % rules.max_repeated, password, re.IGNORECASE | re.DOTALL):
            codes.append("repeated_characters")
    if rules.username_overlap is not None:
        n = rules.username_overlap
        pieces = [username[i:i + n] for i in range(len(username) - n + 1)]
        if any(re.search(re.escape(piece), password, re.IGNORECASE) for piece in pieces):
            codes.append("shares_username")
    return codes


def codes(password: str, username: str, rules: PasswordRules, previous: tuple[str, ...] = ()) -> list[str]:
    return [e["code"] for e in broken_rules(password, username, rules, previous)]


@pytest.fixture(scope="module")
def rules(config) -> PasswordRules:
    return config.portals["ahcccs"].password


# --- The reference, over generated passwords ---------------------------------------------------

characters = st.sampled_from(ALPHABET)
rule_sets = st.builds(
    PasswordRules,
    min_length=st.integers(1, 14),
    require_lowercase=st.booleans(),
    require_uppercase=st.booleans(),
    require_digit=st.booleans(),
    special_characters=st.sampled_from([CONTRACT_SPECIALS, "", "@#", "-"]),
    max_repeated=st.one_of(st.none(), st.integers(1, 3)),
    username_overlap=st.one_of(st.none(), st.integers(1, 4)),
    history=st.just(1),
    expiry_days=st.none(),
)


@st.composite
def password_and_username(draw):
    """Passwords built from pieces that provoke the rules: runs of one letter in mixed case, bits of the name."""
    # No Σ in names: swapcase() of a name ending in Σ writes final sigma ς, which the reference cannot match.
    username = draw(st.text(alphabet=st.sampled_from("abcxyzABCXYZ019._-éßǅÉ"), min_size=0, max_size=10))
    piece = st.one_of(
        characters,
        characters.map(lambda c: c * 3),
        characters.map(lambda c: c + c.swapcase() + c),
        st.integers(0, 12).map(lambda i: username[i:i + 3]),
        st.integers(0, 12).map(lambda i: username[i:i + 4].swapcase()),
    )
    password = "".join(draw(st.lists(piece, max_size=8)))
    return password, username


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=password_and_username(), rules=rule_sets)
def test_validator_agrees_with_the_reference(pair, rules):
    password, username = pair
    assert codes(password, username, rules) == reference(password, username, rules)


@settings(max_examples=500, deadline=None)
@given(pair=password_and_username())
def test_validator_agrees_with_the_reference_on_the_shipped_rules(pair, config):
    password, username = pair
    for portal in ("ahcccs", "qm", "ahw", "masshealth"):
        rules = config.portals[portal].password
        assert codes(password, username, rules) == reference(password, username, rules), portal


# --- The shipped rules are the contract's ------------------------------------------------------

@pytest.mark.parametrize("portal", ["ahcccs", "qm"])
def test_r17_portals_ship_the_contract_rules(config, portal):
    rules = config.portals[portal].password
    assert rules.special_characters == CONTRACT_SPECIALS
    assert (rules.min_length, rules.max_repeated, rules.username_overlap, rules.history) == (9, 2, 3, 1)
    assert rules.require_lowercase and rules.require_uppercase and rules.require_digit


# --- By example ---------------------------------------------------------------------------------

GOOD = "Valid#Pass2024x"


def test_a_good_password_breaks_nothing(rules):
    assert codes(GOOD, "johnsmith", rules) == []


def test_an_empty_password_breaks_every_composition_rule_at_once(rules):
    assert codes("", "johnsmith", rules) == ORDER[:5]


@pytest.mark.parametrize(("password", "expected"), [
    ("Vali#Pa1x", []),               # 9 characters: enough
    ("Val#Pa1x", ["too_short"]),      # 8
    ("VALID#PASS1", ["missing_lowercase"]),
    ("valid#pass1", ["missing_uppercase"]),
    ("Valid#Passx", ["missing_digit"]),
    ("ValidPass12", ["missing_special"]),
    ("Valid#Paaas1", ["repeated_characters"]),
    ("Valid#PaAas1", ["repeated_characters"]),   # aAa: ignoring case
    ("Valid#111ab", ["repeated_characters"]),
    ("Valid#11ab1", []),                          # two in a row is allowed
    ("Valid#PaAbs1", []),
])
def test_each_rule_by_itself(rules, password, expected):
    assert codes(password, "johnsmith", rules) == expected


@pytest.mark.parametrize("special", list(CONTRACT_SPECIALS))
def test_every_special_character_counts(rules, special):
    assert codes(f"Valid{special}Pass1", "johnsmith", rules) == []


@pytest.mark.parametrize("near_miss", list(NEAR_MISSES) + ["£", "€", "¿", "¡"])
def test_characters_outside_the_set_are_not_special(rules, near_miss):
    assert codes(f"Valid{near_miss}Pass1", "johnsmith", rules) == ["missing_special"]


@pytest.mark.parametrize(("password", "username", "shares"), [
    ("Xy#Joh1zzq", "johnsmith", True),     # "joh", other case
    ("Xy#SMI1zzq", "johnsmith", True),     # "smi" from the middle, upper case
    ("Xy#ith1zzq", "johnsmith", True),     # the last window
    ("Xy#jo1hzzq", "johnsmith", False),    # only two in a row
    ("Xy#nsm1zzq", "john.smith", False),   # "nsm" is not in "john.smith"
    ("Xy#n.s1zzq", "john.smith", True),    # punctuation belongs to the name too
    ("Xy#ab1zzqw", "ab", False),           # a name shorter than three shares nothing
])
def test_three_consecutive_characters_of_the_user_name(rules, password, username, shares):
    assert ("shares_username" in codes(password, username, rules)) is shares


def test_case_folding_keeps_positions(rules):
    """'ß' folds to 'ss' but is one character: 'ßs' is not three of a kind; ß, ẞ and ß are."""
    assert "repeated_characters" not in codes("Valid#ßs1x", "johnsmith", rules)
    assert "repeated_characters" in codes("Valid#ßẞß1x", "johnsmith", rules)


def test_final_sigma_is_sigma_ignoring_case(rules):
    assert "repeated_characters" in codes("Valid#ςΣσ1x", "johnsmith", rules)


def test_unicode_digits_that_are_not_decimal_do_not_count(rules):
    assert codes("Valid#Pass²", "johnsmith", rules) == ["missing_digit"]


def test_reused_password_is_the_previous_one_only_within_the_history(rules):
    previous = (hash_secret(GOOD),)
    assert codes(GOOD, "johnsmith", rules, previous) == ["reused_password"]
    assert codes("Other#Pass2024x", "johnsmith", rules, previous) == []
    no_history = rules.model_copy(update={"history": 0})
    assert codes(GOOD, "johnsmith", no_history, previous) == []
    older = (hash_secret("Other#Pass2024x"), hash_secret(GOOD))
    assert codes(GOOD, "johnsmith", rules, older) == []          # history 1: only the newest counts
    two = rules.model_copy(update={"history": 2})
    assert codes(GOOD, "johnsmith", two, older) == ["reused_password"]


def test_every_broken_rule_is_reported_once_in_order(rules):
    previous = (hash_secret("aaa"),)
    assert codes("aaa", "xaaay", rules, previous) == [
        "too_short", "missing_uppercase", "missing_digit", "missing_special", "repeated_characters",
        "shares_username", "reused_password"]


def test_errors_name_the_field_and_say_why(rules):
    errors = broken_rules("short", "johnsmith", rules)
    assert all(set(e) == {"field", "code", "message"} and e["field"] == "password" and e["message"]
               for e in errors)
