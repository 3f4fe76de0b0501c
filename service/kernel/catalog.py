"""The one catalog of actions, resource types, statuses and roles.

Every list of actions in the service derives from the enums here; `tests/test_catalog.py` fails when
the loaded Polar allows an action this catalog lacks, or the catalog names one Polar never decides.
Who may take an action is never decided here: that is `policies/portal.polar`'s job.

The members are `StrEnum`s: they compare equal to the strings the database and JSON hold
(`Status.ACTIVE == "active"`), so a column or a request body can be compared with them directly.
The tuples below hold plain strings, as Polar, SQL and JSON receive them.
"""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Every status an account (or its link) can have: api-v1.md's lifecycle."""

    PENDING_ACTIVATION = "pending_activation"
    PENDING_APPROVAL = "pending_approval"
    UNVERIFIED = "unverified"
    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"
    REMOVED = "removed"


class Role(StrEnum):
    """A membership's role in its organization (R1, R2)."""

    ADMIN = "admin"
    MEMBER = "member"


class ResourceType(StrEnum):
    ORGANIZATION = "organization"
    ACCOUNT = "account"


class OrganizationAction(StrEnum):
    """Actions on an organization besides its portal's functions (config.yaml catalogs, R14, R16)."""

    VIEW = "view"                                    # R1
    CREATE_ACCOUNT = "create_account"                # R13, R15
    LINK_ACCOUNT = "link_account"                    # R13
    DESIGNATE_ADMIN = "designate_admin"              # R4
    ISSUE_ACTIVATION_CODE = "issue_activation_code"  # R10


class AccountAction(StrEnum):
    """Actions on an account as it stands in one organization (R5, R14, R15, R21, R25)."""

    VIEW = "view"
    APPROVE = "approve"
    ENABLE = "enable"
    DISABLE = "disable"
    REMOVE = "remove"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    UNLOCK = "unlock"
    SEND_PASSWORD_RECOVERY = "send_password_recovery"
    SEND_REGISTRATION_EMAIL = "send_registration_email"
    UPDATE_PROFILE = "update_profile"
    UPDATE_EMAIL = "update_email"
    COMMENT = "comment"
    GRANT = "grant"
    REVOKE = "revoke"


def _values(members) -> tuple[str, ...]:
    return tuple(member.value for member in members)


ORGANIZATION_ACTIONS = _values(OrganizationAction)
ACCOUNT_ACTIONS = _values(AccountAction)
# R5: the admin duties (Polar's `admin_action`): every account action but looking at it.
ADMIN_ACTIONS = _values(a for a in AccountAction if a is not AccountAction.VIEW)
# The admin actions of `POST .../accounts/{username}/{action}` (api-v1.md); the others have their own routes.
PATH_ACTIONS = _values((AccountAction.APPROVE, AccountAction.ENABLE, AccountAction.DISABLE, AccountAction.REMOVE,
                        AccountAction.UPGRADE, AccountAction.DOWNGRADE, AccountAction.UNLOCK,
                        AccountAction.SEND_PASSWORD_RECOVERY, AccountAction.SEND_REGISTRATION_EMAIL))
# Actions about one function of the catalog: the question carries context.permission.
PERMISSION_ACTIONS = _values((AccountAction.GRANT, AccountAction.REVOKE))
# R4, R10: organization actions of support staff only; R13: the roster's, offered per portal.
SUPPORT_ONLY_ACTIONS = _values((OrganizationAction.DESIGNATE_ADMIN, OrganizationAction.ISSUE_ACTIVATION_CODE))
ROSTER_ACTIONS = _values((OrganizationAction.CREATE_ACCOUNT, OrganizationAction.LINK_ACCOUNT))
ACCOUNT_STATUSES = _values(Status)
ROLES = _values(Role)
RESOURCE_TYPES = _values(ResourceType)
