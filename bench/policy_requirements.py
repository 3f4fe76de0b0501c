"""What the requirement-based policy (issue 15 item 1) costs per decision: a benchmark script, not a test.

Asks `Policy.decide` every decision-table question with no memo (every call evaluates:
`is_allowed`, then `deny_reason` on a denial), for each policy folder given, and prints
the mean and median per decision, for allowed and denied questions apart.

    python bench/policy_requirements.py [POLICY_DIR ...] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from service.policy import Policy  # noqa: E402
from service.policy_diff import table_questions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def measure_round(policy: Policy, questions, times: dict) -> None:
    for q in questions:
        start = time.perf_counter()
        decision = policy.decide(q.actor, q.action, q.resource)
        times[decision.allowed].append(time.perf_counter() - start)


def summarize(times: dict) -> dict:
    every = times[True] + times[False]
    ms = lambda xs: (1000 * statistics.mean(xs), 1000 * statistics.median(xs))  # noqa: E731
    return {"all": ms(every), "allowed": ms(times[True]), "denied": ms(times[False]), "n": len(every)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[ROOT / "policies"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    questions = list(table_questions([ROOT / "policies"]))
    policies = [(d, Policy(d, memo_size=0), {True: [], False: []}) for d in args.dirs]
    for _ in range(args.rounds):  # interleaved, so that a busy machine weighs on every policy alike
        for _, policy, times in policies:
            measure_round(policy, questions, times)
    for policy_dir, _, times in policies:
        r = summarize(times)
        print(f"{policy_dir}: {r['n']} decisions; ms per decision mean/median: all {r['all'][0]:.2f}/{r['all'][1]:.2f}, "
              f"allowed {r['allowed'][0]:.2f}/{r['allowed'][1]:.2f}, denied {r['denied'][0]:.2f}/{r['denied'][1]:.2f}")


if __name__ == "__main__":
    main()
