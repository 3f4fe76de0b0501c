import os
from flask import Flask, g
from portal_authz_client import Client
from portal_authz_client.flask import PortalAuthz, require

app = Flask(__name__)
PortalAuthz(app, client=Client(os.environ["PORTAL_AUTHZ_URL"], os.environ["PORTAL_AUTHZ_KEY"], timeout=2.0),
            portal="ahcccs", actor=lambda req: req.headers.get("X-User"))  # who your app says is signed in

@app.get("/organizations/<org>/claims")
@require("claims", organization=lambda req: req.view_args["org"])
def claims(org):
    return {"organization": org, "claims": [], "policy_version": g.portal_authz_decision.policy_version}
