"""Usernames that cannot be borrowed (R6, issue 18 item 3).

Every name that reaches the service is first normalised (Unicode NFKC, so a fullwidth
`ｍｈ.ｐｕ` is `mh.pu`) and case-folded: that is the lookup key, used for registration,
subordinates, designated admins, support staff, links, sign-in and every lookup.

Beside the key each account stores its confusable *skeleton* in the sense of Unicode
Technical Standard #39 (section 4), computed by ICU's SpoofChecker (ICU 77, Unicode 16,
from the pinned `pyicu-wheels`): two names that look alike (a Cyrillic `у` for a Latin
`y`, `rn` for `m`, `0` for `O`) have the same skeleton, and the skeleton is unique per
portal, so the second is refused as `username_taken`. A new name may not hold invisible
or format characters (zero-width space, joiners, bidi controls, unassigned code points,
whitespace): those are refused with 422 `validation_error` (`errors[].code`: `invalid_username`).

The skeleton depends on ICU's confusables data: upgrading pyicu-wheels to a release with a
newer ICU calls for recomputing the stored skeletons (migration 0008 shows how).
"""
from __future__ import annotations

import unicodedata
from functools import cache

from service.domain.errors import Invalid

# Categories refused in a new username: controls, format characters (ZWSP, ZWJ, bidi marks), surrogates,
# private use, unassigned, and every kind of space or separator.
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
# Default-ignorable code points of other categories: they render as nothing (Unicode DerivedCoreProperties).
INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
             *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def normalise(username: str) -> str:
    """The name as stored and shown: NFKC, surrounding whitespace dropped, case kept."""
    return unicodedata.normalize("NFKC", username.strip())


def key(username: str) -> str:
    """The lookup key: NFKC, then case-folded (and NFKC again: case folding can denormalise)."""
    return unicodedata.normalize("NFKC", normalise(username).casefold())


@cache
def _checker():
    import icu

    return icu.SpoofChecker()


def skeleton(username: str) -> str:
    """UTS #39 skeleton of the lookup key: names that look alike share it."""
    return _checker().getSkeleton(0, key(username))


def invisible_characters(username: str) -> list[str]:
    """The code points of `username` (normalised) that a reader cannot see, as U+XXXX."""
    return [f"U+{ord(c):04X}" for c in normalise(username)
            if unicodedata.category(c) in REFUSED_CATEGORIES or ord(c) in INVISIBLE]


def check_new(username: str) -> str:
    """The normalised name for a new account, or 422 with `errors[].code` `invalid_username`."""
    hidden = invisible_characters(username)
    if hidden or not normalise(username):
        what = ("invisible or format characters " + ", ".join(dict.fromkeys(hidden))) if hidden else "nothing"
        problem = Invalid(f"the username holds {what}; use visible characters only",
                          [{"field": "username", "code": "invalid_username",
                            "message": "visible characters only: no spaces, zero-width or format characters"}])
        raise problem
    return normalise(username)
