"""The only module that talks to oso.

Loads `policies/*.polar`, names the loaded text by a hash (`policy_version`),
and answers decisions with reasons: `allow` decides, and only when it fails
is `deny_reason` asked why (both derived in portal.polar from each action's
rule, a list of named requirements; reasons.polar maps them to reason codes). A policy that does not load is an error at start
(never a silent allow-nothing), and a reload that fails keeps the running one.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from oso import Oso, Variable
from polar.exceptions import OsoError

from service.catalog import ACCOUNT_ACTIONS, ACCOUNT_STATUSES, ORGANIZATION_ACTIONS, ROLES
from service.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts

log = logging.getLogger(__name__)

# Human-readable explanations of the reason codes the policy produces.
REASON_MESSAGES = {
    "unknown_actor": "The actor is not an account of this portal.",
    "actor_inactive": "The actor's account is not active.",
    "password_expired": "The actor's password has expired and must be changed.",
    "terms_not_accepted": "The actor has not accepted the terms of use (they are accepted at sign-in).",
    "not_member": "The actor is not a member of the organization.",
    "not_admin": "Only an admin of the organization may do this.",
    "permission_not_granted": "The actor has not been granted this function for the organization.",
    "permission_unknown": "The function is not in this portal's catalog.",
    "action_unknown": "No such action on an account.",
    "permission_not_held": ("A delegated manager cannot grant a function it does not hold itself, "
                            "nor take over an account that holds one."),
    "self_action": "An account cannot do this to itself.",
    "target_status": "The account's status does not allow this action.",
    "target_terms_not_accepted": "The account has not accepted the terms of use yet; it becomes an admin only after.",
    "last_admin": "The organization would be left with active members and no active admin.",
    "cannot_make_admin": "Only an admin can make or unmake admins.",
    "support_only": "Only portal support staff may do this.",
    "account_elsewhere": ("The account also belongs to an organization where the actor has no authority; "
                          "only this organization's link to it may be changed here."),
    "not_offered": "This portal does not offer this (its documents do not describe it).",
    "policy_error": "The policy could not be evaluated; denied to fail closed.",
    "policy_gap": "No rule allows this and the policy gave no reason.",
}

# The action lists come from the one catalog (service/catalog.py); re-exported for the modules that read them here.
__all__ = ["ACCOUNT_ACTIONS", "ORGANIZATION_ACTIONS", "Decision", "Policy", "PolicyLoadError", "REASON_MESSAGES"]


class PolicyLoadError(Exception):
    """The policy files could not be read or do not compile."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[str, ...]
    policy_version: str
    # The (actor, resource) facts the policy decided on, for the decision log to record so that
    # `policy diff` can replay the decision (issue 15); not part of the answer or of equality.
    facts: tuple | None = field(default=None, compare=False, repr=False)

    def reason_objects(self) -> list[dict[str, str]]:
        return [{"code": code, "message": REASON_MESSAGES.get(code, code)} for code in self.reasons]


def policy_files(policy_dir: Path) -> list[Path]:
    return sorted(p for p in Path(policy_dir).glob("*.polar") if p.is_file())


def version_of(files: list[Path]) -> str:
    """A hash of the files' names and contents: the same text gives the same version in every process."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _build(files: list[Path]) -> Oso:
    oso = Oso()
    oso.register_class(ActorFacts, name="Account")
    oso.register_class(MembershipFacts, name="Membership")
    oso.register_class(OrganizationFacts, name="Organization")
    oso.register_class(AccountFacts, name="TargetAccount")
    oso.register_class(LinkFacts, name="Link")
    oso.load_files([str(p) for p in files])
    return oso


class _Engine:
    """One loaded policy and the answers it gave, swapped in and out as a whole.

    Answers are memoized keyed by exactly what Polar is handed: the facts are frozen
    dataclasses holding everything the policy reads (and nothing it could read
    elsewhere), so equal keys get equal answers, and a changed fact is a different
    key. The memo belongs to this engine, so a reload can never serve an old answer.
    An evaluation error raises through the memo and is never remembered.
    """

    def __init__(self, oso: Oso, version: str, memo_size: int):
        self.oso = oso
        self.version = version
        self.decide = lru_cache(maxsize=memo_size)(self._decide)
        self.authorized_actions = lru_cache(maxsize=memo_size)(self._authorized_actions)
        self.target_states = lru_cache(maxsize=64)(self._target_states)
        self.account_wide = lru_cache(maxsize=64)(lambda action: self.oso.query_rule_once("account_wide", action))
        self.sees_membership = lru_cache(maxsize=memo_size)(
            lambda actor, username, link: self.oso.query_rule_once("sees_membership", actor, username, link))

    def _target_states(self, action: str) -> frozenset[tuple[str, str]]:
        """The (status, role) pairs of a target account for which the policy's `status_allows` holds."""
        org = OrganizationFacts("", (), None, 0, False)
        return frozenset(
            (status, role) for status in ACCOUNT_STATUSES for role in ROLES
            if self.oso.query_rule_once("status_allows", action, AccountFacts("", org, role, status))
        )

    def _decide(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        if self.oso.is_allowed(actor, action, resource):
            return Decision(True, (), self.version, (actor, resource))
        reasons = _reasons(self.oso, actor, action, resource)
        if not reasons:
            log.error("policy gap: %s %s %r denied without a reason", actor.username, action, resource)
            reasons = ("policy_gap",)
        return Decision(False, reasons, self.version, (actor, resource))

    def _authorized_actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> tuple[str, ...]:
        allowed = self.oso.authorized_actions(actor, resource)
        if isinstance(resource, OrganizationFacts):
            order = [*resource.catalog, *ORGANIZATION_ACTIONS]
        else:
            order = list(ACCOUNT_ACTIONS)
        unlisted = set(allowed) - set(order)
        if unlisted:  # tests/test_catalog.py keeps this from happening; never drop one silently
            log.error("policy allows actions the catalog lacks (service/catalog.py): %s", sorted(unlisted))
        return tuple(a for a in order if a in allowed)


def _reasons(oso: Oso, actor, action, resource) -> tuple[str, ...]:
    found = {
        result["bindings"]["code"]
        for result in oso.query_rule("deny_reason", actor, action, resource, Variable("code"))
    }
    # A stable order (the order of REASON_MESSAGES) so answers compare equal across runs.
    rank = {code: i for i, code in enumerate(REASON_MESSAGES)}
    return tuple(sorted(found, key=lambda code: (rank.get(code, len(rank)), code)))


class Policy:
    """A loaded policy. Thread-safe: a reload swaps in a fully built engine with an empty memo."""

    MEMO_SIZE = 65536

    def __init__(self, policy_dir: Path, memo_size: int = MEMO_SIZE):
        self.policy_dir = Path(policy_dir)
        self.memo_size = memo_size
        self._engine = self._load()

    @property
    def version(self) -> str:
        return self._engine.version

    def _load(self) -> _Engine:
        files = policy_files(self.policy_dir)
        if not files:
            raise PolicyLoadError(f"no .polar files in {self.policy_dir}")
        try:
            return _Engine(_build(files), version_of(files), self.memo_size)
        except (OsoError, OSError) as exc:
            raise PolicyLoadError(f"policy in {self.policy_dir} does not load: {exc}") from exc

    def reload(self) -> str:
        """Load the files again; on error the running policy stays in force and the error is raised."""
        engine = self._load()
        self._engine = engine  # one reference swap: a request sees the old engine or the new, never a mix
        return engine.version

    def decide(self, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Decision:
        """Allow or deny, with every reason the policy gives for a denial."""
        engine = self._engine
        try:
            return engine.decide(actor, action, resource)
        except OsoError:
            log.exception("policy evaluation failed; denying")
            return Decision(False, ("policy_error",), engine.version)

    def authorized_actions(self, actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> list[str]:
        """Every action the actor may take on the resource, in catalog order."""
        try:
            return list(self._engine.authorized_actions(actor, resource))
        except OsoError:
            log.exception("policy evaluation failed; no actions")
            return []

    def visible_memberships(self, actor: ActorFacts, username: str,
                            links: Iterable[LinkFacts]) -> tuple[LinkFacts, ...]:
        """The links among `links` (memberships of the account `username`) the actor may see: portal.polar's
        `sees_membership`, the one read-scoping rule every read of an account follows (its role, grants and
        comments in each organization). On an evaluation error, none (fail closed)."""
        engine = self._engine
        # The rule reads the account's username only to tell the actor's own account from any other (as the
        # roster's visibility does), so every other account is asked as "" (someone else): a roster page
        # reuses one memoized answer per (actor, link) instead of asking again for each account on it.
        asked = username if username == actor.username else ""
        try:
            return tuple(link for link in links if engine.sees_membership(actor, asked, link))
        except OsoError:
            log.exception("policy evaluation failed; no memberships visible")
            return ()

    def target_states(self, action: str) -> frozenset[tuple[str, str]]:
        """The (status, role) pairs of a target account that `action` applies to, read from the policy's
        `status_allows` rule, so that database filters (AuthZEN search) follow the policy's own table."""
        try:
            return self._engine.target_states(action)
        except OsoError:
            log.exception("policy evaluation failed; no target states")
            return frozenset()

    def account_wide(self, action: str) -> bool:
        """Whether `action` reaches the whole account (portal.polar's `account_wide`), for database filters
        that must follow the reach (AuthZEN search); on an evaluation error, the stricter answer."""
        try:
            return self._engine.account_wide(action)
        except OsoError:
            log.exception("policy evaluation failed; treating %r as account-wide", action)
            return True

    def oso(self) -> Oso:
        """The engine itself, for the plain path the fast path is tested against."""
        return self._engine.oso
