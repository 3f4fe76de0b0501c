"""What memoizing by shape does for questions about many different people: a benchmark script, not a test.

Draws questions as a portal asks them (60% a member asking for a function of its organization,
40% an admin asking to approve, enable, disable, unlock, upgrade, remove or grant an account of
its organization), every one about a different person and organization (5,000 organizations of
100 accounts, statuses and grants mixed), and asks `Policy.decide` for each in-process, once
with the memo keyed by the exact facts (every question is new: every decision is an oso
evaluation) and once keyed by shape (service/canonical.py). Prints the distinct shapes, the
memo's hit rate and the time per decision (wall p50/p99/mean).

    python bench/shapes.py [-n 3000] [--seed 1]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, machine, print_machine  # noqa: E402
from service.kernel.facts import AccountFacts, ActorFacts, LinkFacts, MembershipFacts, OrganizationFacts  # noqa: E402
from service.policy import Policy  # noqa: E402

CATALOG = ("claims", "eligibility", "prior_auth", "manage_accounts")
STATUSES = ["active"] * 14 + ["pending_approval", "disabled", "locked", "unverified", "removed"]
ADMIN_ACTIONS = ("approve", "enable", "disable", "unlock", "upgrade", "remove", "grant")


def question(rng: random.Random):
    org_no, person = rng.randrange(5000), rng.randrange(100)
    key = f"AHC-{org_no:05d}"
    org = OrganizationFacts(key, CATALOG, None, rng.choice((1, 1, 2)), True, portal="ahcccs")
    if rng.random() < 0.6:
        grants = tuple(f for f in CATALOG[:3] if rng.random() < 0.5)
        status = rng.choice(STATUSES[:16])
        actor = ActorFacts(f"member{org_no}.{person}", True, status, rng.random() < 0.95, False,
                           (MembershipFacts(key, "member", status == "active", grants),), rng.random() < 0.98)
        return actor, rng.choice(CATALOG[:3]), org
    actor = ActorFacts(f"admin{org_no}.0", True, "active", True, False, (MembershipFacts(key, "admin", True, ()),), True)
    role = rng.choice(("member",) * 9 + ("admin",))
    target_status = rng.choice(STATUSES)
    links = () if target_status == "removed" else (LinkFacts(org, role, ()),)
    action = rng.choice(ADMIN_ACTIONS)
    target = AccountFacts(f"user{org_no}.{person}", org, role, target_status,
                          rng.choice(CATALOG[:3]) if action == "grant" else None, links, rng.random() < 0.98)
    return actor, action, target


def run(policy: Policy, asked) -> list[float]:
    times = []
    for actor, action, resource in asked:
        start = time.perf_counter()
        policy.decide(actor, action, resource)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print_machine("bench/shapes.py: questions about many different people, memo by exact facts and by shape", machine())
    rng = random.Random(args.seed)
    asked = [question(rng) for _ in range(args.n)]
    for label, by_shape in (("exact facts", False), ("by shape", True)):
        policy = Policy(ROOT / "policies")
        policy._engine.by_shape = by_shape  # the same engine either way; only the memo's key differs
        times = run(policy, asked)
        info = policy._engine._answer.cache_info()
        ms = sorted(1000 * t for t in times)
        print(f"{label:<12} {args.n} questions, {info.currsize} memo entries, hit rate {info.hits / args.n:.1%}; "
              f"ms per decision p50 {statistics.median(ms):.3f}, p99 {ms[int(0.99 * len(ms))]:.2f}, "
              f"mean {statistics.mean(ms):.3f}")


if __name__ == "__main__":
    main()
