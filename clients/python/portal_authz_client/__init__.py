"""portal-authz-client: ask the portal-authz service "may this account do that?", failing closed.

    from portal_authz_client import Client
    client = Client("http://127.0.0.1:8000", key, timeout=2.0)
    d = client.authorize(portal="ahcccs", actor="sam.staff", action="claims",
                         resource={"type": "organization", "id": "PROV-0042"})
    d.allowed, [r.code for r in d.reasons]

Guards: `portal_authz_client.flask` and `portal_authz_client.fastapi`; a test double for pytest:
`portal_authz_client.testing`.
"""
from portal_authz_client._client import BATCH_LIMIT, Client
from portal_authz_client._version import API_MAJORS, __version__
from portal_authz_client.errors import (IncompatibleService, PortalAuthzError, ProblemError, ServiceUnavailable,
                                        UnexpectedResponse)
from portal_authz_client.models import (Account, AccountPage, Actions, CheckError, Decision, Membership, Reason,
                                        SignedIn)

__all__ = [
    "API_MAJORS", "BATCH_LIMIT", "Account", "AccountPage", "Actions", "CheckError", "Client", "Decision",
    "IncompatibleService", "Membership", "PortalAuthzError", "ProblemError", "Reason", "ServiceUnavailable",
    "SignedIn", "UnexpectedResponse", "__version__",
]
