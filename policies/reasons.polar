# Why a request is denied: the reason code of each requirement (portal.polar).
#
# reason(REQUIREMENT, CODE): a failing requirement is told as CODE. Every
# requirement a rule names has a code here, or is declared never told
# (never_told(REQUIREMENT)): the policy is refused at load otherwise, as it is
# for a requirement no rule defines or a code the service does not know. A
# denial with no code at all is reported as `policy_gap` by the service (and no
# decision table row may expect it).
#
# told_after(REQUIREMENT, EARLIER): the failure of REQUIREMENT is told only when
# EARLIER holds (EARLIER need not be in the rule). This is what keeps a denial to
# the point (an unknown actor is told only that) and what keeps an outsider from
# learning an account's state: anyone outside the organization is told
# `not_member` and nothing more (no status, no last-admin situation).

# --- The actor (every resource) ----------------------------------------------
reason("known_actor", "unknown_actor");
reason("active_actor", "actor_inactive");
told_after("active_actor", "known_actor");
# R18: an expired password stops every action until it is changed.
reason("password_current", "password_expired");
told_after("password_current", "known_actor");
# R7: the terms of use, accepted at the first sign-in, bind every action.
reason("terms_accepted", "terms_not_accepted");
told_after("terms_accepted", "known_actor");

# --- Organizations (R13, R14, R16) -------------------------------------------
reason("member_of_organization", "not_member");
told_after("member_of_organization", "known_actor");
reason("member_of_organization_or_support", "not_member");
told_after("member_of_organization_or_support", "known_actor");
reason("holds_function", "permission_not_granted");
told_after("holds_function", "member_of_organization");
reason("known_function", "permission_unknown");
told_after("known_function", "known_actor");
reason("offered", "not_offered");
reason("administers_organization", "not_admin");
told_after("administers_organization", "member_of_organization");
reason("support", "support_only");
told_after("support", "known_actor");

# --- Accounts (R1, R2, R3, R5, R15, R21) ------------------------------------
# R21: `self` and `other_account` only choose between update_profile's two rules
# (one's own profile, someone else's); the other rule tells why it is denied.
never_told("self");
never_told("other_account");
reason("known_action", "action_unknown");
told_after("known_action", "known_actor");
reason("not_self", "self_action");
reason("member_or_support", "not_member");
told_after("member_or_support", "known_actor");
told_after("member_or_support", "not_self");
reason("insider", "not_member");
told_after("insider", "known_actor");
reason("administers", "not_admin");
told_after("administers", "not_self");
told_after("administers", "member_or_support");
reason("self_or_administers", "not_admin");
told_after("self_or_administers", "member_or_support");
reason("delegate_or_administers", "not_admin");
told_after("delegate_or_administers", "not_self");
told_after("delegate_or_administers", "member_or_support");
reason("makes_admins", "cannot_make_admin");
told_after("makes_admins", "not_self");
told_after("makes_admins", "delegate");
reason("status_allows", "target_status");
told_after("status_allows", "not_self");
told_after("status_allows", "insider");
reason("not_removed", "target_status");
told_after("not_removed", "self");
reason("target_accepted_terms", "target_terms_not_accepted");
told_after("target_accepted_terms", "insider");
reason("not_orphaning", "last_admin");
told_after("not_orphaning", "insider");
# R1: an actor without authority somewhere in the reach learns only that (account_elsewhere), not
# whether another organization it has no say in would be left without an admin.
told_after("not_orphaning", "administers_everywhere");
# R1: an account-wide change needs authority in every organization the account belongs to.
reason("administers_everywhere", "account_elsewhere");
told_after("administers_everywhere", "not_self");
told_after("administers_everywhere", "administers");
# R15: a delegate cannot take over (email, recovery) an account holding a function it lacks ...
reason("no_capture", "permission_not_held");
told_after("no_capture", "not_self");
told_after("no_capture", "administers_everywhere");
# ... nor grant a function it does not hold.
reason("known_permission", "permission_unknown");
reason("holds_permission", "permission_not_held");
told_after("holds_permission", "delegate");
told_after("holds_permission", "known_permission");
