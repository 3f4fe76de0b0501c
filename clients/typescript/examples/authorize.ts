import { createPortalAuthzClient } from "../src/client";

const KEY = "pak_..."; // from `portal-authz clients add NAME --scopes authorize,manage`
const client = createPortalAuthzClient("http://127.0.0.1:8000", KEY, { timeoutMs: 2000 });

const decision = await client.authorize({
  portal: "ahcccs",
  actor: "sam.staff",
  action: "claims",
  resource: { type: "organization", id: "PROV-0042" },
});
console.log(decision.allowed, decision.reasons.map((r) => r.code));

// Any other call, typed from /openapi.json: an account as the calling service reads it (scope manage).
const { data: account } = await client.http.GET("/v1/portals/{portal}/accounts/{username}", {
  params: { path: { portal: "ahcccs", username: "sam.staff" } },
});
console.log(account?.status, account?.memberships.map((m) => m.organization));
