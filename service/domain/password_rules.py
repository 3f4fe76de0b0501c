"""R17: a portal's password rules, every broken rule reported at once."""
from __future__ import annotations

from service.config import PasswordRules


def _fold(text: str) -> tuple[str, ...]:
    return tuple(c.casefold() for c in text)


def broken_rules(password: str, username: str, rules: PasswordRules,
                 previous_hashes: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """One error per broken rule, with the contract's codes (too_short, missing_lowercase, ...)."""
    errors: list[dict[str, str]] = []

    def broken(code: str, message: str) -> None:
        errors.append({"field": "password", "code": code, "message": message})

    if len(password) < rules.min_length:
        broken("too_short", f"at least {rules.min_length} characters")
    if rules.require_lowercase and not any(c.islower() for c in password):
        broken("missing_lowercase", "at least one lower-case letter")
    if rules.require_uppercase and not any(c.isupper() for c in password):
        broken("missing_uppercase", "at least one upper-case letter")
    if rules.require_digit and not any(c.isdecimal() for c in password):  # 0-9 and other decimal digits, not '²'
        broken("missing_digit", "at least one digit")
    if rules.special_characters and not any(c in rules.special_characters for c in password):
        broken("missing_special", f"at least one of {rules.special_characters}")
    # Folded one character at a time, so positions stay put ("ß".casefold() is "ss", two characters).
    folded = _fold(password)
    if rules.max_repeated is not None:
        run = rules.max_repeated + 1
        if any(len(set(folded[i:i + run])) == 1 for i in range(len(folded) - run + 1)):
            broken("repeated_characters", f"no character {run} or more times in a row (ignoring case)")
    if rules.username_overlap is not None:
        size, name = rules.username_overlap, _fold(username)
        windows = {name[i:i + size] for i in range(len(name) - size + 1)}
        if any(folded[i:i + size] in windows for i in range(len(folded) - size + 1)):
            broken("shares_username", f"no {size} consecutive characters in common with the user name")
    if previous_hashes and rules.history:
        from service.domain.passwords import verify_secret

        if any(verify_secret(h, password) for h in previous_hashes[: rules.history]):
            broken("reused_password", "may not equal the previous password")
    return errors
