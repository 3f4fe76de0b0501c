import os
from fastapi import Depends, FastAPI
from portal_authz_client import Client, Decision
from portal_authz_client.fastapi import configure, require

app = FastAPI()
configure(app, client=Client(os.environ["PORTAL_AUTHZ_URL"], os.environ["PORTAL_AUTHZ_KEY"], timeout=2.0),
          portal="ahcccs", actor=lambda req: req.headers.get("x-user"))  # who your app says is signed in

@app.get("/organizations/{org}/claims")
def claims(org: str, decision: Decision = Depends(require("claims", organization=lambda req: req.path_params["org"]))):
    return {"organization": org, "claims": [], "policy_version": decision.policy_version}
