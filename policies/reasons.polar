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

# --- What each code says, in the order a denial lists its reasons --------------------
# message(CODE, TEXT): every code a reason names has one (the policy is refused at load otherwise); a
# denial lists its codes in the order of these lines. The service adds its own two, policy_error and
# policy_gap (service/policy.py).
message("unknown_actor", "The actor is not an account of this portal.");
message("actor_inactive", "The actor's account is not active.");
message("password_expired", "The actor's password has expired and must be changed.");
message("terms_not_accepted", "The actor has not accepted the terms of use (they are accepted at sign-in).");
message("not_member", "The actor is not a member of the organization.");
message("not_admin", "Only an admin of the organization may do this.");
message("permission_not_granted", "The actor has not been granted this function for the organization.");
message("permission_unknown", "The function is not in this portal's catalog.");
message("action_unknown", "No such action on an account.");
message("permission_not_held", "A delegated manager cannot grant a function it does not hold itself, nor take over an account that holds one.");
message("self_action", "An account cannot do this to itself.");
message("target_status", "The account's status does not allow this action.");
message("target_terms_not_accepted", "The account has not accepted the terms of use yet; it becomes an admin only after.");
message("last_admin", "The organization would be left with active members and no active admin.");
message("cannot_make_admin", "Only an admin can make or unmake admins.");
message("support_only", "Only portal support staff may do this.");
message("account_elsewhere", "The account also belongs to an organization where the actor has no authority; only this organization's link to it may be changed here.");
message("not_offered", "This portal does not offer this (its documents do not describe it).");
