# Why a request is denied: deny_reason(actor, action, resource, code).
#
# Each rule mirrors a condition of an `allow` in portal.polar; the service
# asks for these only when `allow` fails, and returns every code that holds.
# The decision-table tests (policies/tests/) and a property test check that
# every denial has at least one reason and no allowed request has any.

# --- The actor (every resource) ----------------------------------------------

deny_reason(actor: Account, _action, _resource, "unknown_actor") if
    actor.exists = false;
deny_reason(actor: Account, _action, _resource, "actor_inactive") if
    actor.exists = true and actor.status != "active";
# R18: an expired password stops every action until it is changed.
deny_reason(actor: Account, _action, _resource, "password_expired") if
    actor.exists = true and actor.password_current = false;

# --- Organizations (R14, R16) -------------------------------------------------

deny_reason(actor: Account, action: String, org: Organization, "permission_unknown") if
    actor.exists = true and
    not (action in org.catalog) and
    not (action in ["view", "designate_admin", "issue_activation_code", "create_account", "link_account"]);
deny_reason(actor: Account, action: String, org: Organization, "not_member") if
    actor.exists = true and
    not membership(actor, org, _) and
    not (action = "view" and is_support(actor)) and
    not (action in ["designate_admin", "issue_activation_code"]);
deny_reason(actor: Account, action: String, org: Organization, "permission_not_granted") if
    action in org.catalog and
    membership(actor, org, _) and
    not holds(actor, org, action);
deny_reason(actor: Account, action: String, org: Organization, "not_admin") if
    action in ["create_account", "link_account"] and
    membership(actor, org, _) and
    not is_admin(actor, org) and
    not is_delegate(actor, org);
# R13: linking and admin-created accounts exist only where the portal's documents describe them.
deny_reason(_actor: Account, action: String, org: Organization, "not_offered") if
    action in ["create_account", "link_account"] and
    not offered(action, org);
deny_reason(actor: Account, action: String, _org: Organization, "support_only") if
    actor.exists = true and
    action in ["designate_admin", "issue_activation_code"] and
    not is_support(actor);

# --- Accounts (R1, R2, R3, R5, R15, R21) ------------------------------------

# Who may learn anything about the account's state: support staff, members of
# the organization the question names, and the account itself. Anyone else is
# told `not_member` and nothing more (no status, no last-admin situation).
insider(actor: Account, _target: TargetAccount) if is_support(actor);
insider(actor: Account, target: TargetAccount) if membership(actor, target.organization, _);
insider(actor: Account, target: TargetAccount) if actor.username = target.username;

# R5: the admin duties are a closed list; anything else is no action at all.
deny_reason(actor: Account, action: String, _target: TargetAccount, "action_unknown") if
    actor.exists = true and
    not admin_action(action) and
    action != "view";

deny_reason(actor: Account, action: String, target: TargetAccount, "self_action") if
    actor.exists = true and
    actor.username = target.username and
    not (action in ["view", "update_profile"]);
deny_reason(actor: Account, _action: String, target: TargetAccount, "not_member") if
    actor.exists = true and
    actor.username != target.username and
    not is_support(actor) and
    not membership(actor, target.organization, _);
deny_reason(actor: Account, action: String, target: TargetAccount, "not_admin") if
    actor.username != target.username and
    membership(actor, target.organization, _) and
    not is_support(actor) and
    not administers(actor, target) and
    not (action = "upgrade" and is_delegate(actor, target.organization));
deny_reason(actor: Account, action: String, target: TargetAccount, "cannot_make_admin") if
    action in ["upgrade", "downgrade"] and
    actor.username != target.username and
    is_delegate(actor, target.organization) and
    not is_admin(actor, target.organization) and
    not is_support(actor);
deny_reason(actor: Account, action: String, target: TargetAccount, "target_status") if
    actor.exists = true and
    insider(actor, target) and
    admin_action(action) and
    actor.username != target.username and
    not status_allows(action, target);
deny_reason(actor: Account, "update_profile", target: TargetAccount, "target_status") if
    actor.exists = true and
    actor.username = target.username and
    target.status = "removed";
deny_reason(actor: Account, action: String, target: TargetAccount, "last_admin") if
    insider(actor, target) and
    would_orphan(action, target);
# R1: an account-wide change needs authority in every organization the account belongs to.
deny_reason(actor: Account, action: String, target: TargetAccount, "account_elsewhere") if
    account_wide(action) and
    actor.username != target.username and
    administers(actor, target) and
    not administers_everywhere(actor, target);
# R15: a delegate cannot take over (email, recovery) an account holding a function it lacks.
deny_reason(actor: Account, action: String, target: TargetAccount, "permission_not_held") if
    captures(action) and
    actor.username != target.username and
    administers_everywhere(actor, target) and
    not may_capture(actor, target);
deny_reason(_actor: Account, action: String, target: TargetAccount, "permission_unknown") if
    action in ["grant", "revoke"] and
    target.permission != nil and
    not (target.permission in target.organization.catalog);
deny_reason(actor: Account, action: String, target: TargetAccount, "permission_not_held") if
    action in ["grant", "revoke"] and
    target.permission != nil and
    target.permission in target.organization.catalog and
    is_delegate(actor, target.organization) and
    not is_admin(actor, target.organization) and
    not is_support(actor) and
    not holds(actor, target.organization, target.permission);
