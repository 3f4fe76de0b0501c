"""Step definitions for the Gherkin features in features/.

The steps speak only the HTTP contract of ../shared/api-v1.md, through
`client.Transport`: an in-process Flask test client on an app with a settable
clock by default, or a live server when PORTAL_AUTHZ_URL (and PORTAL_AUTHZ_KEY)
are set. Test modules bind features with `scenarios(...)` and import the steps
with `from tests.steps.portal_steps import *`.
"""
