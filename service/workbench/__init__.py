"""The policy author's workbench: tools that read a policy to test, explain, cover and compare it.

- `tables`: decision tables (`policies/tests/*.yaml`) run against the policy (`policy test`);
- `explain`: why a decision came out as it did, requirement by requirement (`policy explain`, `"explain": true`);
- `coverage`: which clauses no table row exercises (`policy test --coverage`);
- `diff`: which decisions a policy change alters (`policy diff`).

None of them decides anything: each asks `service.policy.Policy`, the only module that talks to oso. Generating
clauses from the rule lists (service/policy_generate.py) is not here: it is part of loading a policy, done by
`Policy` at every load, and the service cannot decide without it.
"""
