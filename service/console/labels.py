"""The documents' own words for the console: each portal's names of its pages, buttons and fields.

These are vocabulary only (seeds 000-004 in shared/, and each portal's role, function and organization-key
names from config.yaml). Which of these controls a person sees is never decided here: the policy's
authorized actions are, and a control the policy does not allow is absent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from service.config import PortalProfile

# The admin actions every portal names alike unless it says otherwise below.
ACTION_WORDS = {
    "approve": "Approve User",
    "enable": "Enable User",
    "disable": "Disable User",
    "remove": "Remove User",
    "unlock": "Unlock User",
    "send_password_recovery": "Send Password Recover for User",
    "send_registration_email": "Send Registration Email",
}

PORTAL_ACTION_WORDS = {
    "ahcccs": {"upgrade": "Upgrade to Master Account"},                     # 000
    "qm": {"upgrade": "Set as Master Account"},                             # 001
    "ahw": {"send_password_recovery": "Send Password Reset Email"},         # 002
    "masshealth": {"send_password_recovery": "Reset Password", "remove": "Remove"},   # 004
}

STATUS_WORDS = {
    "pending_activation": "Pending Activation",
    "pending_approval": "Pending Approval",
    "unverified": "Unverified",
    "active": "Active",
    "locked": "Locked",
    "disabled": "Disabled",
    "removed": "Removed",
}

FIELD_WORDS = {
    "username": "Username", "password": "Password", "first_name": "First Name", "last_name": "Last Name",
    "email": "Email", "phone": "Telephone Number", "comment": "Comments", "code": "Security Code",
    "new_password": "New Password", "current_password": "Current Password", "answers": "Security Answers",
    "temporary_password": "Temporary Password", "organization": "Organization",
}

# A refusal of an access request, in plain words, by its problem code (the domain's detail otherwise).
REFUSAL_WORDS = {
    "already_held": "You already have this function.",
    "request_open": "You have already asked for this function; that request is still open.",
    "request_closed": "This request is no longer open: it has been decided, or it has expired.",
}


def field_name(where: str) -> str:
    return FIELD_WORDS.get(where.split(".")[0], where)


@dataclass(frozen=True)
class Words:
    """One portal's words, as its document prints them."""

    portal_name: str
    admin_role: str
    member_role: str
    organization_key: str
    admin_link: str                 # where an admin's tools start
    list_title: str                 # the user list
    account_title: str              # one account's page
    open_account: str               # the list's link to an account's page
    permissions_label: str          # the functions an account holds
    save_permissions: str           # the button that saves them (with the comment)
    pending_filter: str             # the status filter of new accounts awaiting an admin
    home_section: str = "Account Information"   # where the home page lists the person's tools
    actions: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)

    def action(self, name: str) -> str:
        return self.actions.get(name, name.replace("_", " ").title())

    def status(self, status: str) -> str:
        if status == "pending_approval":
            return self.pending_filter
        return STATUS_WORDS.get(status, status)

    def role(self, role: str) -> str:
        return self.admin_role if role == "admin" else self.member_role

    def permission(self, name: str) -> str:
        return self.permissions.get(name, name)


def words(portal: str, profile: PortalProfile) -> Words:
    actions = {**ACTION_WORDS, "upgrade": f"Upgrade to {profile.roles.admin}",
               "downgrade": f"Change to {profile.roles.member}", **PORTAL_ACTION_WORDS.get(portal, {})}
    common = dict(portal_name=profile.name, admin_role=profile.roles.admin, member_role=profile.roles.member,
                  organization_key=profile.organization_key, actions=actions, permissions=dict(profile.permissions))
    if portal == "ahw":
        return Words(admin_link="User Management", list_title="User Management",
                     account_title="Update User Status and Permissions", open_account="Update User",
                     permissions_label="Can Access", save_permissions="Update User",
                     pending_filter="Verification Pending", **common)
    if portal == "masshealth":
        return Words(admin_link="Manage Subordinate Accounts", list_title="Subordinates Search",
                     account_title="Update Subordinate", open_account="Update Subordinate",
                     permissions_label="Assigned Services", save_permissions="Submit",
                     pending_filter="Pending Approval", home_section="Administer Account", **common)
    return Words(admin_link="Admin", list_title="Active Users", account_title="User Account Maintenance",
                 open_account="Select", permissions_label="Permissions", save_permissions="Update Permissions",
                 pending_filter="Pending Approval", **common)
