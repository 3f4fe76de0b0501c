"""Usernames that cannot be borrowed (R6): no one registers a look-alike of another's name.

Every name that reaches the service is first normalised (Unicode NFKC, so a fullwidth
`ｍｈ.ｐｕ` is `mh.pu`) and case-folded: that is the lookup key, used for registration,
subordinates, designated admins, support staff, links, sign-in and every lookup.

Beside the key each account stores its confusable *skeleton* in the sense of Unicode
Technical Standard #39 (section 4), computed by ICU's SpoofChecker (ICU 77, Unicode 16,
from the pinned `pyicu-wheels`): two names that look alike (a Cyrillic `у` for a Latin
`y`, `rn` for `m`, `0` for `O`) have the same skeleton, and the skeleton is unique per
portal, so the second is refused as `username_taken`. Two skeletons are kept: of the lookup key
(folded) and of the name as typed, because folding turns a capital `I` into `i`, not into the `l`
it looks like; a new name is refused when either of its skeletons is either of an existing
account's. Skeletons are compared without case (ICU maps `0` to `O`) and without combining marks
(`jsmi̇th`, an i with a dot above, is `jsmith`). A new name may not hold invisible
or format characters (zero-width space, joiners, bidi controls, unassigned code points,
whitespace): the domain refuses those with 422 `validation_error` (`errors[].code`: `invalid_username`,
service/domain/people.py's `check_new_username`).

The skeleton depends on ICU's confusables data: upgrading pyicu-wheels to a release with a
newer ICU calls for recomputing the stored skeletons (migrations 0008 and 0013 show how).
"""
from __future__ import annotations

import unicodedata
from functools import cache

# Categories refused in a new username: controls, format characters (ZWSP, ZWJ, bidi marks), surrogates,
# private use, unassigned, and every kind of space or separator.
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
# Default-ignorable code points of other categories: they render as nothing (Unicode DerivedCoreProperties).
INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
             *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def normalise(username: str) -> str:
    """The name as stored and shown: NFKC, surrounding whitespace dropped, case kept."""
    return unicodedata.normalize("NFKC", username.strip())


def username_key(username: str) -> str:
    """The lookup key: NFKC, then case-folded (and NFKC again: case folding can denormalise)."""
    return unicodedata.normalize("NFKC", normalise(username).casefold())


@cache
def _checker():
    import icu

    return icu.SpoofChecker()


def skeleton(username: str) -> str:
    """UTS #39 skeleton of the lookup key (the folded form): `mh.py` and `ＭＨ.ＰＹ` share it."""
    return _comparable(_checker().getSkeleton(0, username_key(username)))


def typed_skeleton(username: str) -> str:
    """UTS #39 skeleton of the name as typed (NFKC, case kept): case folding turns a capital I into an i,
    not into the l it looks like, so `IoIa.boIt` and `lola.bolt` share only this one."""
    return _comparable(_checker().getSkeleton(0, normalise(username)))


def _comparable(skeleton_: str) -> str:
    """A skeleton compared without case and combining marks: ICU maps `0` to a capital `O` (so `l0la` is
    `lOla`), and a mark on a letter can be all but invisible (a dot above `i` in `jsmi̇th`)."""
    bare = "".join(c for c in unicodedata.normalize("NFD", skeleton_) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare).casefold()


def skeleton_columns(username: str) -> dict[str, str]:
    """Both skeletons, as an account stores them: a new name may share neither with an existing account's."""
    return {"username_skeleton": skeleton(username), "username_skeleton_typed": typed_skeleton(username)}


def invisible_characters(username: str) -> list[str]:
    """The code points of `username` (normalised) that a reader cannot see, as U+XXXX."""
    return [f"U+{ord(c):04X}" for c in normalise(username)
            if unicodedata.category(c) in REFUSED_CATEGORIES or ord(c) in INVISIBLE]

