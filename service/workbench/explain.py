"""Why a decision came out as it did, in the policy author's terms.

The policy (portal.polar) gives each action one or more rules, each a list of named
requirements; `allow` holds when every requirement of some rule holds, and a denial
is told by the reason codes (reasons.polar) of the failing requirements. An
explanation asks the same engine the same questions one requirement at a time:
for each rule of the action, each requirement, whether it holds, the code it is
told as (if it fails and is told), and the facts it reads.

This module only reads the loaded policy, through `Policy` (its rules, each requirement, and how a failure is
told, by the telling rules of Polar itself); the decision itself is still `Policy.decide`, and the explanation
carries it unchanged.

An explanation shows only what the actor may read, by the same read scoping as
every read of an account (portal.polar's `sees_membership`): the target's other
memberships only where the actor sees them, and the target's role, status and
acceptance, and the organization's head-counts, only when the actor sees the
target's membership of the organization asked about (of an organization asked
about: when the policy lets it `view` the organization). A requirement that reads
a withheld fact shows `holds: null`; the withheld facts are named in `withheld`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, OrganizationFacts, is_unread
from service.policy import Decision, Policy

# The facts each shipped requirement reads, shown beside it. Display only: the
# requirement's meaning is its definition in portal.polar; a requirement not
# listed here is still explained, with the decision's facts shown once above it.
# tests/test_policy_workbench.py holds it to the policy: every requirement a
# shipped rule names is listed, and changing a fact it does not list never
# changes whether it holds.
READS: dict[str, tuple[str, ...]] = {
    "known_actor": ("actor.exists",),
    "active_actor": ("actor.status",),
    "password_current": ("actor.password_current",),
    "terms_accepted": ("actor.terms_accepted",),
    "target_accepted_terms": ("target.terms_accepted",),
    "member_of_organization": ("actor.membership",),
    "member_of_organization_or_support": ("actor.membership", "actor.support"),
    "member_or_support": ("actor.membership", "actor.support"),
    "support": ("actor.support",),
    "administers_organization": ("actor.membership", "actor.support", "organization.delegate_permission"),
    "holds_function": ("actor.membership", "organization.catalog"),
    "known_function": ("organization.catalog",),
    "offered": ("organization.offers_links", "organization.offers_subordinates"),
    "not_self": ("actor.username", "target.username"),
    "other_account": ("actor.username", "target.username"),
    "self": ("actor.username", "target.username"),
    "known_action": (),
    "insider": ("actor.membership", "actor.support", "target.username"),
    "administers": ("actor.membership", "actor.support", "target.role", "organization.delegate_permission"),
    "self_or_administers": ("actor.membership", "actor.support", "target.username", "target.role"),
    "delegate": ("actor.membership", "organization.delegate_permission"),
    "delegate_or_administers": ("actor.membership", "actor.support", "target.role"),
    "makes_admins": ("actor.membership", "actor.support"),
    "administers_everywhere": ("actor.memberships", "actor.support", "target.links"),
    "no_capture": ("actor.memberships", "actor.support", "target.links"),
    "known_permission": ("target.permission", "organization.catalog"),
    "holds_permission": ("target.permission", "actor.membership", "actor.support"),
    "status_allows": ("target.status", "target.role"),
    "not_removed": ("target.status",),
    "not_orphaning": ("target.status", "target.role", "organization.active_admins",
                      "organization.has_active_members", "target.links"),
}


@dataclass(frozen=True)
class RequirementOutcome:
    name: str
    holds: bool | None  # None: it reads a fact withheld from the actor
    told_as: str | None  # the reason code this failure is told as; None when it holds or is not told
    reads: dict[str, object]


@dataclass(frozen=True)
class RuleOutcome:
    kind: str  # "rule" (may allow) or "unknown_action" (only explains a denial)
    requirements: tuple[RequirementOutcome, ...]
    every_requirement_holds: bool = False  # whether the rule allows: the decision itself, never withheld

    @property
    def holds(self) -> bool:
        return self.kind == "rule" and bool(self.requirements) and self.every_requirement_holds


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    action: str
    rules: tuple[RuleOutcome, ...]
    facts: dict = field(default_factory=dict)
    withheld: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {
            "allowed": self.decision.allowed,
            "reasons": list(self.decision.reasons),
            "policy_version": self.decision.policy_version,
            "action": self.action,
            "rules": [
                {"kind": rule.kind, "holds": rule.holds,
                 "requirements": [{"name": r.name, "holds": r.holds, "told_as": r.told_as, "reads": r.reads}
                                  for r in rule.requirements]}
                for rule in self.rules
            ],
            "facts": self.facts,
            "withheld": list(self.withheld),
        }

    def text(self) -> str:
        d = self.decision
        head = "allowed" if d.allowed else "denied" + (f" [{', '.join(d.reasons)}]" if d.reasons else "")
        lines = [f"{head} (policy {d.policy_version})"]
        if not self.rules:
            lines.append(f"  no rule of the policy is about {self.action!r}: denied (fail closed)")
        for i, rule in enumerate(self.rules, 1):
            label = "rule" if rule.kind == "rule" else "no rule (explains the denial)"
            verdict = "holds" if rule.holds else "fails"
            lines.append(f"  {label} {i} for {self.action!r}: {verdict}")
            for req in rule.requirements:
                mark = "?   " if req.holds is None else "ok  " if req.holds else "FAIL"
                told = f" -> {req.told_as}" if req.told_as else ("" if req.holds else " (not told)")
                reads = ", ".join(f"{k}={_short(v)}" for k, v in req.reads.items())
                lines.append(f"    {mark} {req.name}{told}" + (f"   [{reads}]" if reads else ""))
        if self.withheld:
            lines.append(f"  withheld from {self.facts['actor']['username']}: {', '.join(self.withheld)}")
        return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _organization_of(resource) -> OrganizationFacts:
    return resource.organization if isinstance(resource, AccountFacts) else resource


def fact_view(actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> dict[str, object]:
    """The facts a requirement may read, by the names READS uses."""
    org = _organization_of(resource)
    membership = next((m for m in actor.memberships if m.organization == org.key), None)
    view: dict[str, object] = {
        "actor.username": actor.username, "actor.exists": actor.exists, "actor.status": actor.status,
        "actor.password_current": actor.password_current, "actor.terms_accepted": actor.terms_accepted,
        "actor.support": actor.support,
        "actor.membership": (None if membership is None else
                             {"role": membership.role, "active": membership.active,
                              "permissions": list(membership.permissions)}),
        # Each place with its grants: a permission_not_held denial (no_capture) turns on them.
        "actor.memberships": {m.organization: {"role": m.role, "permissions": list(m.permissions)}
                              for m in actor.memberships if m.active},
        "organization.key": org.key, "organization.portal": org.portal, "organization.catalog": list(org.catalog),
        "organization.delegate_permission": org.delegate_permission,
        "organization.active_admins": org.active_admins,
        "organization.has_active_members": org.has_active_members,
        "organization.offers_links": org.offers_links,
        "organization.offers_subordinates": org.offers_subordinates,
    }
    if isinstance(resource, AccountFacts):
        view.update({
            "target.username": resource.username, "target.role": resource.role, "target.status": resource.status,
            "target.permission": resource.permission, "target.terms_accepted": resource.terms_accepted,
            "target.links": {link.organization.key: {"role": link.role, "permissions": list(link.permissions)}
                             for link in resource.links},
        })
    return view


def _as_json(value):
    """`dataclasses.asdict` of the facts, with a fact that was not read (UNREAD head counts) as null."""
    if is_unread(value):
        return None
    if hasattr(type(value), "__dataclass_fields__"):
        return {f.name: _as_json(getattr(value, f.name)) for f in fields(value)}
    if type(value) in (tuple, list):
        return type(value)(_as_json(item) for item in value)
    return value


def facts_json(actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> dict:
    """The whole facts of a decision as JSON (the decision log records these so a decision can be replayed); a
    head count the decision did not read is null."""
    kind = "account" if isinstance(resource, AccountFacts) else "organization"
    actor_json = _as_json(actor)
    # The decision log never holds the word "password" (a log search for secrets finds none): the fact is the
    # credentials' currency.
    actor_json["credentials_current"] = actor_json.pop("password_current")
    return {"actor": actor_json, "resource_kind": kind, "resource": _as_json(resource)}


# The facts of the resource an actor may not read unless it sees the membership (or organization) asked about.
STANDING = ("target.role", "target.status", "target.terms_accepted",
            "organization.active_admins", "organization.has_active_members")


def _scoped(policy: Policy, actor: ActorFacts,
            resource: OrganizationFacts | AccountFacts) -> tuple[OrganizationFacts | AccountFacts, frozenset[str]]:
    """The resource as the actor may read it (its links narrowed to those it sees), and the facts withheld."""
    if isinstance(resource, OrganizationFacts):
        seen = policy.decide(actor, "view", resource).allowed
        return resource, frozenset() if seen else frozenset(s for s in STANDING if s.startswith("organization."))
    asked = next((link for link in resource.links if link.organization.key == resource.organization.key),
                 LinkFacts(resource.organization, resource.role))  # a removed link: its role, no grants
    seen = bool(policy.visible_memberships(actor, resource.username, (asked,)))
    links = policy.visible_memberships(actor, resource.username, resource.links)
    # A link the actor does not see is withheld, and so is the outcome of what reads the links (the facts
    # show only the links it sees).
    partly = {"target.links"} if links != resource.links else set()
    return replace(resource, links=links), frozenset(partly | (set() if seen else set(STANDING)))


def explain(policy: Policy, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts, *,
            whole: bool = False) -> Explanation:
    """The decision (Policy.decide) and, for each rule of the action, each requirement's outcome, as far as the
    actor may read the facts it turns on (the decision itself is made on all of them). `whole`: every fact,
    for the policy author's tools over made-up facts (decision tables, `policy diff`), never for a person's."""
    decision = policy.decide(actor, action, resource)
    shown, withheld = (resource, frozenset()) if whole else _scoped(policy, actor, resource)
    view = {key: value for key, value in fact_view(actor, shown).items() if key not in withheld - {"target.links"}}
    holds_cache: dict[str, bool] = {}

    def holds(name: str) -> bool:
        if name not in holds_cache:
            holds_cache[name] = policy.requirement_holds(name, actor, action, resource)
        return holds_cache[name]

    def told_as(name: str) -> str | None:
        return None if holds(name) else policy.told_as(name, actor, action, resource)

    def shown_holds(name: str) -> bool | None:
        return None if withheld & set(READS.get(name, (name,))) else holds(name)

    rules = []
    for kind, names in policy.rules_of(action, resource):
        outcomes = tuple(
            RequirementOutcome(name, shown_holds(name), told_as(name),
                               {key: view.get(key) for key in READS.get(name, ()) if key in view})
            for name in names)
        rules.append(RuleOutcome(kind, outcomes, all(holds(name) for name in names)))
    facts = facts_json(actor, shown)
    for key in withheld - {"target.links"}:  # "target.status" is resource.status; "organization.x" its organization's
        kind, name = key.split(".")
        where = facts["resource"] if kind == "target" or isinstance(resource, OrganizationFacts) \
            else facts["resource"]["organization"]
        where.pop(name, None)
    return Explanation(decision, action, tuple(rules), facts=facts, withheld=tuple(sorted(withheld)))
