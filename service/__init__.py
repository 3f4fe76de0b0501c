"""portal-authz: who may do what to whom in health-care provider portals."""
