# portal-authz policy: who may do what to whom in a provider portal.
#
# Rule numbers (R1..R27) refer to shared/requirements.md. Python hands in
# facts only (service/kernel/facts.py): an Account (the actor), an
# Organization, and a TargetAccount (an account as it stands in one
# organization).
#
# How a decision is made (one source for allow and why-not):
#   rule(ACTION, RESOURCE, [REQUIREMENT, ...])   an action's rule: the names of
#                                                its requirements, all needed;
#   requirement(NAME, actor, action, resource)   what each name means;
#   allow                                        every requirement of a rule holds;
#   deny_reason                                  the failing requirements, each
#                                                told as its reason code
#                                                (reasons.polar: the mapping).
# A rule change is one edit here: add, drop or rename a requirement in a rule's
# list, or change what a requirement means.
#
# Fail closed: nothing is allowed unless every requirement of a rule holds; an
# action with no rule, or a requirement with no definition, is denied.

# --- Standing of the actor ---------------------------------------------------

# R1: the actor's active membership in an organization.
membership(actor: Account, org: Organization, m: Membership) if
    m in actor.memberships and
    m.organization = org.key and
    m.active = true;

# R1/R2: an admin (Master Account Holder, Account Manager, Primary User).
is_admin(actor: Account, org: Organization) if
    membership(actor, org, m) and m.role = "admin";

# R15: a member granted the portal's delegating function ("Manage Account",
# "Manage Subordinate Accounts") administers accounts like an admin.
is_delegate(actor: Account, org: Organization) if
    org.delegate_permission != nil and
    membership(actor, org, m) and
    m.role = "member" and
    org.delegate_permission in m.permissions;

# R1: support staff are the only ones who act across organizations.
is_support(actor: Account) if actor.support = true;

# R16: a function is held through a grant; admins hold the whole catalog of
# the organizations they administer (they are the ones who grant it).
holds(actor: Account, org: Organization, function: String) if
    is_admin(actor, org) and function in org.catalog;
holds(actor: Account, org: Organization, function: String) if
    membership(actor, org, m) and
    m.role = "member" and
    function in m.permissions and
    function in org.catalog;

# --- Offered actions (R13) ---------------------------------------------------

offered("create_account", org: Organization) if org.offers_subordinates = true;
offered("link_account", org: Organization) if org.offers_links = true;

# --- Accounts: administration (R1, R2, R5, R15, R21) -------------------------

# R5: the admin duties, each decided here.
admin_action(action) if action in [
    "approve", "enable", "disable", "remove", "upgrade", "downgrade",
    "unlock", "send_password_recovery", "send_registration_email",
    "update_profile", "update_email", "comment", "grant", "revoke"
];

# R1, R15: who administers an account in its organization. Admins administer
# everyone there; delegates only members; support staff everyone.
administers(actor: Account, _target: TargetAccount) if
    is_support(actor);
administers(actor: Account, target: TargetAccount) if
    is_admin(actor, target.organization);
administers(actor: Account, target: TargetAccount) if
    is_delegate(actor, target.organization) and
    target.role = "member";

# R1: authority over one link of an account: support staff everywhere, admins in
# their organization, delegates over the members of theirs (R15).
administers_link(actor: Account, _link: Link) if
    is_support(actor);
administers_link(actor: Account, link: Link) if
    is_admin(actor, link.organization);
administers_link(actor: Account, link: Link) if
    is_delegate(actor, link.organization) and
    link.role = "member";

# --- Read scoping: what a reader learns of an account (R1, R13, R25, R26) --------
#
# Who may see which organization's membership of an account (its role there, the
# functions granted there, the comments written there): the account itself and
# support staff see every one; anyone else only a membership it administers. A
# link never shows the linking organization the account's standing elsewhere.
# Every read of an account asks this, and only this: the account read, its
# comments, the roster, AuthZEN search and explanations (service/policy.py,
# `Policy.visible_memberships`). `own` is the fact that the account is the
# actor's own (the same username), so the rule never reads a name itself.
sees_membership(actor: Account, own: Boolean, _link: Link) if
    is_support(actor) or own = true;
sees_membership(actor: Account, _own: Boolean, link: Link) if
    administers_link(actor, link);

# --- The reach of an effect (R1, R15) -----------------------------------------
#
# An action changes either one link of the account (its role, its grants, the
# link itself, the comments kept there) or the whole account (its status, its
# email and profile, its password through recovery). Authority must cover the
# whole reach: an account-wide change needs authority over the account in
# EVERY organization where it has an active link, not only in the one named.
account_wide(action) if action in [
    "approve", "enable", "disable", "unlock", "send_password_recovery",
    "send_registration_email", "update_profile", "update_email"
];

# R1: the actor administers the account wherever it is a member.
administers_everywhere(actor: Account, target: TargetAccount) if
    forall(link in target.links, administers_link(actor, link));

# R15: a delegate never gains a function it does not hold, not even through
# another account: it may not point an account's email or recovery at itself
# unless it holds every function that account holds, in every organization.
captures(action) if action in ["update_email", "send_password_recovery", "send_registration_email"];

covers(actor: Account, link: Link) if
    is_support(actor) or is_admin(actor, link.organization);
covers(actor: Account, link: Link) if
    forall(p in link.permissions, holds(actor, link.organization, p));

may_capture(actor: Account, target: TargetAccount) if
    forall(link in target.links, covers(actor, link));

# Which statuses each action applies to (the status lifecycle of api-v1.md).
status_allows("approve", target: TargetAccount) if target.status = "pending_approval";
status_allows("enable", target: TargetAccount) if target.status in ["pending_approval", "disabled"];
status_allows("disable", target: TargetAccount) if target.status in ["active", "locked", "unverified"];
status_allows("remove", target: TargetAccount) if target.status != "removed";
# The FAQ: "Select the user you wish to upgrade from the Active Users list".
status_allows("upgrade", target: TargetAccount) if target.status = "active" and target.role = "member";
status_allows("downgrade", target: TargetAccount) if target.status != "removed" and target.role = "admin";
status_allows("unlock", target: TargetAccount) if target.status = "locked";
status_allows("send_password_recovery", target: TargetAccount) if target.status in ["active", "locked"];
status_allows("send_registration_email", target: TargetAccount) if target.status = "unverified";
status_allows(action: String, target: TargetAccount) if
    action in ["update_profile", "update_email", "comment", "grant", "revoke"] and
    target.status != "removed";

# R3: no change may leave an organization that has active members without an
# active admin, in any organization the change reaches: a downgrade or a
# removal reaches the named link, a disable every link of the account.
would_orphan("downgrade", target: TargetAccount) if
    last_active_admin(target);
would_orphan(action: String, target: TargetAccount) if
    action in ["remove", "disable"] and
    last_active_admin(target) and
    target.organization.has_active_members = true;
would_orphan("disable", target: TargetAccount) if
    target.status = "active" and
    link in target.links and
    link.role = "admin" and
    link.organization.active_admins <= 1 and
    link.organization.has_active_members = true;

last_active_admin(target: TargetAccount) if
    target.role = "admin" and
    target.status = "active" and
    target.organization.active_admins <= 1;

# --- The rules: each action's requirements, in the order they are explained ----
#
# Every rule starts with the actor's standing (R7, R16, R18): a known account, active,
# its password current, the terms of use accepted.

# R16: a portal function (submit a claim, check eligibility, ...) for an organization.
organization_rule(function, org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "member_of_organization", "holds_function"
]) if function in org.catalog;

# R1: members see their organization; support staff see every organization.
organization_rule("view", _org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "member_of_organization_or_support"
]);

# R13, R15: admins (Primary Users) and delegates create accounts for their
# organization and link accounts of other organizations to it, in the portals
# whose documents describe it (a profile setting: masshealth only).
organization_rule(action, _org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "offered", "member_of_organization_or_support", "administers_organization"
]) if action in ["create_account", "link_account"];

# R4, R10: only support staff designate admins and reissue activation codes.
organization_rule(action, _org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "support"
]) if action in ["designate_admin", "issue_activation_code"];

# R14: anything else asked of an organization is no function of this portal
# (no rule allows it; these requirements explain the denial).
unknown_organization_action(action, org, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "known_function", "member_of_organization"
]) if not (action in org.catalog) and
    not (action in ["view", "create_account", "link_account", "designate_admin", "issue_activation_code"]);

# R1, R5: an administrator acts on another account of the organization when its
# authority covers the effect's reach, the account's status allows the action and
# no invariant would break (R3).
account_rule(action, _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "not_self", "member_or_support", "administers",
    "administers_everywhere", "no_capture",
    "status_allows", "not_orphaning"
]) if action in [
    "approve", "enable", "disable", "remove", "unlock",
    "send_password_recovery", "send_registration_email", "update_email", "comment"
];

# R2, R15: only admins (or support) make and unmake admins; a delegate asking to
# upgrade is told it cannot make admins rather than that it is not an admin.
account_rule("upgrade", _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "not_self", "member_or_support", "delegate_or_administers", "makes_admins",
    "status_allows", "target_accepted_terms", "not_orphaning"
]);
account_rule("downgrade", _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "not_self", "member_or_support", "administers", "makes_admins",
    "status_allows", "not_orphaning"
]);

# R14, R15: grants are from the catalog; a delegate grants only what it holds.
account_rule(action, _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "not_self", "member_or_support", "administers",
    "known_permission", "holds_permission",
    "status_allows", "not_orphaning"
]) if action in ["grant", "revoke"];

# R5, R21: an administrator updates another account's profile ...
account_rule("update_profile", _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "other_account", "member_or_support", "administers",
    "administers_everywhere", "status_allows"
]);
# ... and a member maintains their own account information, except the email.
account_rule("update_profile", _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "self", "not_removed"
]);

# Everyone may look at their own account; administrators at those they administer.
account_rule("view", _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "insider", "self_or_administers"
]);

# R5: the admin duties are a closed list; anything else is no action at all.
unknown_account_action(action, _target, [
    "known_actor", "active_actor", "password_current", "terms_accepted",
    "known_action", "not_self", "member_or_support", "administers"
]) if not admin_action(action) and action != "view";

# --- The requirements: what each name means ------------------------------------
#
# A requirement's name says which resource it reads: an organization's requirements
# are only in organization rules, an account's only in account rules.

# R16, R18: the actor's standing.
requirement("known_actor", actor, _action, _resource) if actor.exists = true;
requirement("active_actor", actor, _action, _resource) if actor.status = "active";
# R5, R11, R19: what makes the actor's own account active again depends on why it is not: an admin
# unlocks, approves or enables it; an account awaiting activation is activated with the letter's code.
remedy("active_actor", actor, _action, _resource, {action: "unlock"}) if actor.status = "locked";
remedy("active_actor", actor, _action, _resource, {action: "approve"}) if actor.status = "pending_approval";
remedy("active_actor", actor, _action, _resource, {action: "enable"}) if actor.status = "disabled";
remedy("active_actor", actor, _action, _resource, {action: "activate"}) if actor.status = "pending_activation";
requirement("password_current", actor, _action, _resource) if actor.password_current = true;
remedy("password_current", _actor, _action, _resource, {action: "change_password"});
# R7: the terms of use bind every action, not only the sign-in that records their acceptance.
requirement("terms_accepted", actor, _action, _resource) if actor.terms_accepted = true;
remedy("terms_accepted", _actor, _action, _resource, {action: "accept_terms"});

# R1, R4, R10: the actor's place in the organization.
requirement("member_of_organization", actor, _action, org) if
    membership(actor, org, _);
requirement("member_of_organization_or_support", actor, _action, org) if
    membership(actor, org, _) or is_support(actor);
requirement("member_or_support", actor, _action, target) if
    membership(actor, target.organization, _) or is_support(actor);
requirement("support", actor, _action, _resource) if is_support(actor);
requirement("administers_organization", actor, _action, org) if
    is_admin(actor, org) or is_delegate(actor, org) or is_support(actor);

# R13, R14, R16: the function asked for.
requirement("holds_function", actor, function, org) if
    holds(actor, org, function);
# R16: a function is held once an administrator grants it ("contact your master account holder").
remedy("holds_function", _actor, function, _org, {action: "grant", permission: function});
# known_function (R14) and known_action (R5) have no definition: they are named only by the
# rules of actions no rule knows, where they always fail, told as permission_unknown / action_unknown.
requirement("offered", _actor, action, org) if
    offered(action, org);

# R5, R21: whose account it is.
requirement("not_self", actor, _action, target) if
    actor.username != target.username;
requirement("other_account", actor, _action, target) if
    actor.username != target.username;
requirement("self", actor, _action, target) if
    actor.username = target.username;

# Who may learn anything about the account's state: support staff, members of
# the organization the question names, and the account itself.
requirement("insider", actor, _action, target) if
    is_support(actor) or
    membership(actor, target.organization, _) or
    actor.username = target.username;

# R1, R2, R15: authority over the account.
requirement("administers", actor, _action, target) if
    administers(actor, target);
requirement("self_or_administers", actor, _action, target) if
    actor.username = target.username or administers(actor, target);
requirement("delegate", actor, _action, target) if
    is_delegate(actor, target.organization);
requirement("delegate_or_administers", actor, _action, target) if
    is_delegate(actor, target.organization) or administers(actor, target);
requirement("makes_admins", actor, _action, target) if
    is_admin(actor, target.organization) or is_support(actor);

# R1, R15: the reach of the effect.
requirement("administers_everywhere", actor, action, target) if
    (not account_wide(action)) or administers_everywhere(actor, target);
requirement("no_capture", actor, action, target) if
    (not captures(action)) or may_capture(actor, target);

# R14, R15: the function granted or revoked; with none named, the question is
# whether the actor manages grants at all.
requirement("known_permission", _actor, _action, target) if
    target.permission = nil or
    target.permission in target.organization.catalog;
requirement("holds_permission", actor, _action, target) if
    target.permission = nil or
    is_admin(actor, target.organization) or
    is_support(actor) or
    holds(actor, target.organization, target.permission);
# R15: a delegate grants a function once it holds it itself.
remedy("holds_permission", _actor, _action, target, {action: "grant", permission: function}) if
    function = target.permission and function != nil;

# R5, R21: the account's status, and R3: the last admin.
requirement("status_allows", _actor, action, target) if
    status_allows(action, target);
requirement("not_removed", _actor, _action, target) if
    target.status != "removed";
# R2, R7: an admin is made only of an account that accepted the terms of use.
requirement("target_accepted_terms", _actor, _action, target) if
    target.terms_accepted = true;
requirement("not_orphaning", _actor, action, target) if
    not would_orphan(action, target);

# --- Deciding ----------------------------------------------------------------

rule(action, org: Organization, requirements) if organization_rule(action, org, requirements);
rule(action, target: TargetAccount, requirements) if account_rule(action, target, requirements);
unknown_action(action, org: Organization, requirements) if unknown_organization_action(action, org, requirements);
unknown_action(action, target: TargetAccount, requirements) if unknown_account_action(action, target, requirements);

# Allowed when some rule of the action has all its requirements (an empty list allows nothing).
allow(actor: Account, action: String, resource) if
    rule(action, resource, [first, *rest]) and
    all_hold([first, *rest], actor, action, resource);

all_hold([], _actor, _action, _resource);
all_hold([name, *rest], actor, action, resource) if
    requirement(name, actor, action, resource) and
    all_hold(rest, actor, action, resource);

# Why not: each failing requirement of the action's rules, told by its reason code
# (reasons.polar), unless a requirement it is told after fails too.
deny_reason(actor: Account, action: String, resource, code) if
    (rule(action, resource, requirements) or unknown_action(action, resource, requirements)) and
    name in requirements and
    not requirement(name, actor, action, resource) and
    not untold(name, actor, action, resource) and
    reason(name, code);

# What would allow it: each failing requirement told as CODE, with the change that satisfies it (`remedy`,
# stated beside the requirement, about the actor's own account in the organization asked about). A
# requirement with no remedy (self_action, permission_unknown, ...) has none: no change satisfies it.
# A change states what to do (`action`, and `permission` for a grant), never a name: the service adds
# the actor's account and the organization asked about. Who may make it is this policy's answer to
# that change, asked of each candidate (service/domain/remedies.py); only the account's own person
# makes a self-service change.
deny_remedy(actor: Account, action: String, resource, code, change) if
    (rule(action, resource, requirements) or unknown_action(action, resource, requirements)) and
    name in requirements and
    not requirement(name, actor, action, resource) and
    not untold(name, actor, action, resource) and
    reason(name, code) and
    remedy(name, actor, action, resource, change);

# R7, R10, R18: a new password, the terms at sign-in, the activation letter's code.
self_service(change) if change in ["change_password", "accept_terms", "activate"];

untold(name: String, actor: Account, action: String, resource) if
    told_after(name, earlier) and
    not requirement(earlier, actor, action, resource);
