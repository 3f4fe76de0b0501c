"""Answering "may this actor do this to that?" from stored facts.

This module resolves names to stored rows (404 for unknown portals,
organizations and accounts, a deny with `unknown_actor` for an unknown actor),
builds the facts, and leaves the decision itself to the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from service.config import Config, PortalProfile
from service.domain.errors import Invalid, NotFound
from service.domain.facts import AccountFacts, ActorFacts, OrganizationFacts
from service.policy import Decision, Policy
from service.storage import facts as stored

PERMISSION_ACTIONS = ("grant", "revoke")


@dataclass(frozen=True)
class Resource:
    type: str  # "organization" | "account"
    id: str
    organization: str | None = None


@dataclass(frozen=True)
class Question:
    action: str
    resource: Resource
    context: dict = field(default_factory=dict)


def profile_of(config: Config, portal: str) -> PortalProfile:
    profile = config.portal(portal)
    if profile is None:
        raise NotFound(f"unknown portal {portal!r}; configured portals: {', '.join(sorted(config.portals))}")
    return profile


class Decider:
    """Decisions for one portal within one database session (facts cached for the request)."""

    def __init__(self, session: Session, profile: PortalProfile, policy: Policy, portal: str, now: datetime):
        self.session = session
        self.profile = profile
        self.portal = portal
        self.policy = policy
        self.now = now
        self._organizations: dict[str, OrganizationFacts] = {}

    def actor(self, username: str) -> ActorFacts:
        account = stored.find_account(self.session, self.portal, username)
        return stored.actor_facts(account, username, self.profile, self.now)

    def organization(self, key: str) -> OrganizationFacts:
        if key not in self._organizations:
            org = stored.find_organization(self.session, self.portal, key)
            if org is None:
                raise NotFound(f"no organization {key!r} in portal {self.portal!r}")
            self._organizations[key] = stored.organization_facts(self.session, org, self.profile)
        return self._organizations[key]

    def resource(self, question: Question, *, need_permission: bool = True) -> OrganizationFacts | AccountFacts:
        res = question.resource
        if res.type == "organization":
            return self.organization(res.id)
        account = stored.find_account(self.session, self.portal, res.id)
        if account is None:
            raise NotFound(f"no account {res.id!r} in portal {self.portal!r}")
        membership = self._membership(account, res)
        permission = None
        if question.action in PERMISSION_ACTIONS:
            permission = question.context.get("permission")
            if need_permission and not isinstance(permission, str):
                raise Invalid(f"{question.action} needs the permission it is about",
                              [{"field": "context.permission", "code": "required",
                                "message": f"{question.action} needs context.permission (a catalog entry)"}])
        return stored.target_facts(account, membership, self.organization(membership.organization.key), permission)

    def _membership(self, account, res: Resource):
        memberships = account.memberships
        if res.organization is not None:
            for m in memberships:
                if m.organization.key == res.organization:
                    return m
            self.organization(res.organization)  # 404 for an unknown organization first
            raise NotFound(f"account {res.id!r} is not in organization {res.organization!r}")
        live = [m for m in memberships if m.status != "removed"] or memberships
        if len(live) == 1:
            return live[0]
        if not live:
            raise NotFound(f"account {res.id!r} belongs to no organization")
        raise Invalid("the account belongs to several organizations; say which",
                      [{"field": "resource.organization", "code": "required",
                        "message": "required when the account belongs to several organizations"}])

    def decide(self, actor: ActorFacts, question: Question) -> Decision:
        return self.policy.decide(actor, question.action, self.resource(question))

    def authorized_actions(self, actor: ActorFacts, resource: Resource) -> list[str]:
        target = self.resource(Question("view", resource), need_permission=False)
        return self.policy.authorized_actions(actor, target)
