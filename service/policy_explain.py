"""Why a decision came out as it did, in the policy author's terms (issue 15 item 2).

The policy (portal.polar) gives each action one or more rules, each a list of named
requirements; `allow` holds when every requirement of some rule holds, and a denial
is told by the reason codes (reasons.polar) of the failing requirements. An
explanation asks the same engine the same questions one requirement at a time:
for each rule of the action, each requirement, whether it holds, the code it is
told as (if it fails and is told), and the facts it reads.

This module only reads the loaded policy (through `Policy.oso()`); the decision
itself is still `Policy.decide`, and the explanation carries it unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from oso import Variable

from service.facts import AccountFacts, ActorFacts, OrganizationFacts
from service.policy import Decision, Policy

# The facts each shipped requirement reads, shown beside it. Display only: the
# requirement's meaning is its definition in portal.polar; a requirement not
# listed here is still explained, with the decision's facts shown once above it.
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
    holds: bool
    told_as: str | None  # the reason code this failure is told as; None when it holds or is not told
    reads: dict[str, object]


@dataclass(frozen=True)
class RuleOutcome:
    kind: str  # "rule" (may allow) or "unknown_action" (only explains a denial)
    requirements: tuple[RequirementOutcome, ...]

    @property
    def holds(self) -> bool:
        return self.kind == "rule" and bool(self.requirements) and all(r.holds for r in self.requirements)


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    action: str
    rules: tuple[RuleOutcome, ...]
    facts: dict = field(default_factory=dict)

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
                mark = "ok  " if req.holds else "FAIL"
                told = f" -> {req.told_as}" if req.told_as else ("" if req.holds else " (not told)")
                reads = ", ".join(f"{k}={_short(v)}" for k, v in req.reads.items())
                lines.append(f"    {mark} {req.name}{told}" + (f"   [{reads}]" if reads else ""))
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
        "actor.memberships": {m.organization: m.role for m in actor.memberships if m.active},
        "organization.key": org.key, "organization.catalog": list(org.catalog),
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
            "target.links": {link.organization.key: link.role for link in resource.links},
        })
    return view


def facts_json(actor: ActorFacts, resource: OrganizationFacts | AccountFacts) -> dict:
    """The whole facts of a decision as JSON (the decision log records these so a decision can be replayed)."""
    kind = "account" if isinstance(resource, AccountFacts) else "organization"
    actor_json = asdict(actor)
    # The decision log never holds the word "password" (issue 18): the fact is the credentials' currency.
    actor_json["credentials_current"] = actor_json.pop("password_current")
    return {"actor": actor_json, "resource_kind": kind, "resource": asdict(resource)}


def _requirements(oso, predicate: str, action: str, resource) -> list[list[str]]:
    found = []
    for result in oso.query_rule(predicate, action, resource, Variable("requirements")):
        found.append([str(name) for name in result["bindings"]["requirements"]])
    return found


def explain(policy: Policy, actor: ActorFacts, action: str, resource: OrganizationFacts | AccountFacts) -> Explanation:
    """The decision (Policy.decide) and, for each rule of the action, each requirement's outcome."""
    decision = policy.decide(actor, action, resource)
    oso = policy.oso()
    view = fact_view(actor, resource)
    holds_cache: dict[str, bool] = {}

    def holds(name: str) -> bool:
        if name not in holds_cache:
            holds_cache[name] = oso.query_rule_once("requirement", name, actor, action, resource)
        return holds_cache[name]

    def told_as(name: str) -> str | None:
        if holds(name):
            return None
        for result in oso.query_rule("told_after", name, Variable("earlier")):
            if not holds(str(result["bindings"]["earlier"])):
                return None
        codes = [str(r["bindings"]["code"]) for r in oso.query_rule("reason", name, Variable("code"))]
        return codes[0] if codes else None

    rules = []
    for kind in ("rule", "unknown_action"):
        for names in _requirements(oso, kind, action, resource):
            rules.append(RuleOutcome(kind, tuple(
                RequirementOutcome(name, holds(name), told_as(name),
                                   {key: view.get(key) for key in READS.get(name, ()) if key in view})
                for name in names)))
    return Explanation(decision, action, tuple(rules), facts=facts_json(actor, resource))
