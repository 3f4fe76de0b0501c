# portal-authz policy: who may do what to whom in a provider portal.
#
# Rule numbers (R1..R27) refer to shared/requirements.md. Python hands in
# facts only (service/facts.py): an Account (the actor), an
# Organization, and a TargetAccount (an account as it stands in one
# organization). Every `allow` below has its explanation in reasons.polar.
#
# Fail closed: nothing is allowed unless a rule here allows it.

# --- Standing of the actor ---------------------------------------------------

# R16: only an active account whose password is current may act at all.
in_good_standing(actor: Account) if
    actor.exists = true and
    actor.status = "active" and
    actor.password_current = true;

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

# --- Organizations: portal functions (R14, R16) ------------------------------

# R16: submit a claim, check eligibility, ... for an organization.
allow(actor: Account, function: String, org: Organization) if
    in_good_standing(actor) and
    function in org.catalog and
    holds(actor, org, function);

# R1: members see their organization; support staff see every organization.
allow(actor: Account, "view", org: Organization) if
    in_good_standing(actor) and
    (membership(actor, org, _) or is_support(actor));

# R13, R15: admins (Primary Users) and delegates create accounts for their
# organization and link accounts of other organizations to it, in the portals
# whose documents describe it (a profile setting: masshealth only).
allow(actor: Account, action: String, org: Organization) if
    action in ["create_account", "link_account"] and
    offered(action, org) and
    in_good_standing(actor) and
    (is_admin(actor, org) or is_delegate(actor, org) or is_support(actor));

offered("create_account", org: Organization) if org.offers_subordinates = true;
offered("link_account", org: Organization) if org.offers_links = true;

# R4, R10: only support staff designate admins and reissue activation codes.
allow(actor: Account, action: String, _org: Organization) if
    action in ["designate_admin", "issue_activation_code"] and
    in_good_standing(actor) and
    is_support(actor);

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

reaches(_actor: Account, action: String, _target: TargetAccount) if
    not account_wide(action);
reaches(actor: Account, action: String, target: TargetAccount) if
    account_wide(action) and
    administers_everywhere(actor, target) and
    (not captures(action) or may_capture(actor, target));

# R5: an administrator may act on another account of the organization when
# its authority covers the effect's reach, the account's status allows the
# action and no invariant would break.
allow(actor: Account, action: String, target: TargetAccount) if
    admin_action(action) and
    in_good_standing(actor) and
    actor.username != target.username and
    administers(actor, target) and
    reaches(actor, action, target) and
    status_allows(action, target) and
    may_take(actor, action, target) and
    not would_orphan(action, target);

# R21: a member maintains their own account information, except the email.
allow(actor: Account, "update_profile", target: TargetAccount) if
    in_good_standing(actor) and
    actor.username = target.username and
    target.status != "removed";

# Everyone may look at their own account; administrators at those they administer.
allow(actor: Account, "view", target: TargetAccount) if
    in_good_standing(actor) and
    (actor.username = target.username or administers(actor, target));

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

# Conditions particular to some actions.
# R2, R15: only admins (or support) make admins; delegates never do.
may_take(actor: Account, action: String, target: TargetAccount) if
    action in ["upgrade", "downgrade"] and
    (is_admin(actor, target.organization) or is_support(actor));
# R14, R15: grants are from the catalog; a delegate grants only what it holds.
may_take(actor: Account, action: String, target: TargetAccount) if
    action in ["grant", "revoke"] and
    grantable(actor, target);
may_take(_actor: Account, action: String, _target: TargetAccount) if
    action in [
        "approve", "enable", "disable", "remove", "unlock",
        "send_password_recovery", "send_registration_email",
        "update_profile", "update_email", "comment"
    ];

# With no permission named, the question is whether the actor manages grants at all.
grantable(_actor: Account, target: TargetAccount) if target.permission = nil;
grantable(actor: Account, target: TargetAccount) if
    target.permission != nil and
    target.permission in target.organization.catalog and
    (is_admin(actor, target.organization) or is_support(actor) or
     holds(actor, target.organization, target.permission));

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
