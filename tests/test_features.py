"""The five source documents as executable specifications: features/*.feature,
and the policy author's workbench (features/policy_authoring.feature).

In-process by default; against a live server with PORTAL_AUTHZ_URL and PORTAL_AUTHZ_KEY.
`-m R19` selects a rule, `-m ahw` a portal profile; `--cucumberjson=reports/cucumber.json`
writes a report for QA.
"""
from pytest_bdd import scenarios

from tests.steps.authoring_steps import *  # noqa: F401,F403 - a policy author's change
from tests.steps.portal_steps import *  # noqa: F401,F403 - the step definitions are fixtures of this module

scenarios(
    "ahcccs_master_account.feature",
    "qm_portal_faq.feature",
    "ahw_account_manager.feature",
    "qm_ioc_registration.feature",
    "masshealth_subordinate_accounts.feature",
    "policy_authoring.feature",  # not a seed document: the policy author's workbench
)
