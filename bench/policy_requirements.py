"""What the requirement-based policy (each rule a list of named requirements) costs per decision: a benchmark
script, not a test.

Asks `Policy.decide` every decision-table question with no memo (every call evaluates:
`allow`, then `deny_reason` on a denial), for each policy folder given, and prints
the mean and median per decision, for allowed and denied questions apart.

`--generated` instead compares, on the shipped policy, the clauses generated from the rule
lists (service/policy_generate.py) with the authored interpreter (`allow`, `deny_reason`), both
asked of oso, and `authorized_actions` on every distinct (actor, resource) of the tables; each
figure both as wall time and as this thread's CPU time (which a busy shared machine disturbs less).
`--compiled` compares the generated clauses asked of oso with the same policy compiled to Python
(service/polar_compile.py), the path a memo miss takes.

    python bench/policy_requirements.py [POLICY_DIR ...] [--rounds 3]
    python bench/policy_requirements.py --generated [--rounds 3]
    python bench/policy_requirements.py --compiled [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from service.policy import Policy  # noqa: E402
from service.workbench.diff import table_questions  # noqa: E402

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


def compare_generated(questions, rounds: int) -> None:
    engines = {"authored": Policy(ROOT / "policies", memo_size=0, generate=False, compile=False),
               "generated": Policy(ROOT / "policies", memo_size=0, compile=False)}
    assert engines["generated"].generated
    compare(engines, questions, rounds)


def compare_compiled(questions, rounds: int) -> None:
    engines = {"oso": Policy(ROOT / "policies", memo_size=0, compile=False),
               "compiled": Policy(ROOT / "policies", memo_size=0)}
    assert engines["compiled"].compiled and engines["oso"].generated and engines["compiled"].generated
    compare(engines, questions, rounds)


def compare(engines: dict[str, Policy], questions, rounds: int) -> None:
    pairs = list({(q.actor, q.resource): None for q in questions})
    times = {name: {(kind, clock): [] for kind in ("allowed", "denied", "actions") for clock in ("wall", "cpu")}
             for name in engines}
    for _ in range(rounds):  # interleaved, so that a busy machine weighs on both alike
        for name, policy in engines.items():
            for q in questions:
                wall, cpu = time.perf_counter(), time.thread_time()
                decision = policy.decide(q.actor, q.action, q.resource)
                kind = "allowed" if decision.allowed else "denied"
                times[name][kind, "cpu"].append(time.thread_time() - cpu)
                times[name][kind, "wall"].append(time.perf_counter() - wall)
            for actor, resource in pairs:
                wall, cpu = time.perf_counter(), time.thread_time()
                policy.authorized_actions(actor, resource)
                times[name]["actions", "cpu"].append(time.thread_time() - cpu)
                times[name]["actions", "wall"].append(time.perf_counter() - wall)
    print(f"{len(questions)} decisions and {len(pairs)} authorized_actions per round, {rounds} rounds, no memo")
    print("ms p50 (mean)           allowed wall/cpu        denied wall/cpu         authorized_actions wall/cpu")
    for name in engines:
        cells = []
        for kind in ("allowed", "denied", "actions"):
            w, c = times[name][kind, "wall"], times[name][kind, "cpu"]
            cells.append(f"{1000 * statistics.median(w):6.2f} ({1000 * statistics.mean(w):5.2f}) / "
                         f"{1000 * statistics.median(c):5.2f}")
        print(f"{name:<10} " + "   ".join(cells))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[ROOT / "policies"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generated", action="store_true", help="generated clauses against the authored interpreter")
    parser.add_argument("--compiled", action="store_true", help="the policy compiled to Python against oso")
    args = parser.parse_args(argv)
    questions = list(table_questions([ROOT / "policies"]))
    if args.generated:
        compare_generated(questions, args.rounds)
        return
    if args.compiled:
        compare_compiled(questions, args.rounds)
        return
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
