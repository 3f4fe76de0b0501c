"""The facts statement replayed on PostgreSQL: the backend's CPU per statement, with an organization's head counts
read for every question (as before) and only for questions whose rules can read them (the policy says which). A
benchmark script, not a test.

bench/mixed.py's portal is bulk-loaded into a throw-away PostgreSQL server and `--questions` of its questions
are drawn (60% a member asking for a function of its organization, 40% an admin acting on an account of its
organization). Each question's facts statement is made as the service makes it (`service/storage/facts.py`,
`FACTS`, without the client key's branch), once with the head counts and once as `Policy.reads_head_counts`
says, and both are run on one connection (psycopg prepares them as the service's connections do), alternating
in `--rounds` rounds (which goes first alternates too), each statement `--repeat` times per round. The CPU is
the backend's own, read from /proc/PID/schedstat before and after each set, per kind of question.

    python bench/facts_replay.py [--quick] [--accounts 50000] [--questions 400] [--rounds 4] [--repeat 4]
                                 [--json out.json]
    python bench/facts_replay.py --memo 100000    # the memo's keys instead (SQLite), with and without the counts
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import ROOT, arguments, backends, begin, cpu_ns, finish, sized, table  # noqa: E402
from bench.mixed import PORTAL, people, questions, seed  # noqa: E402


def statements(asked, policy, dialect) -> dict[str, dict[str, list]]:
    """For each kind of question (member, admin) and each way ("with": counts always; "as read": as the policy
    says), the (sql, parameters) of every question's facts statement."""
    from service.domain.decisions import Resource, _needs, head_counts_read
    from service.kernel.usernames import username_key
    from service.storage.facts import FACTS

    out: dict[str, dict[str, list]] = {"member": {"with": [], "as read": []}, "admin": {"with": [], "as read": []}}
    for q in asked:
        if q.target is None:
            resource = Resource("organization", q.organization)
        else:
            resource = Resource("account", q.target.username, q.organization)
        usernames, organizations, targets = _needs(q.actor.username, [resource])
        values = {"portal": PORTAL, "usernames": sorted({username_key(u) for u in usernames}),
                  "organizations": sorted(organizations), "targets": sorted({username_key(u) for u in targets}),
                  "key_id": None}
        kind = "member" if q.target is None else "admin"
        for way, counts in (("with", True), ("as read", head_counts_read(policy, [(q.action, resource.type)]))):
            # As load_facts makes it: without the counts, the targets' organizations come from their memberships.
            shaped = {**values, "head_counts": counts, "targets_from_people": not counts and bool(values["targets"])}
            shape = FACTS._shape(dialect, shaped)
            out[kind][way].append((shape.sql, FACTS._parameters(shape, shaped)))
    return out


def run(connection, pid: int, batch: list, repeat: int) -> tuple[float, float]:
    """(backend CPU µs, wall µs) per statement over `repeat` passes of the batch."""
    before, started = cpu_ns(pid), time.perf_counter_ns()
    for _ in range(repeat):
        for sql, parameters in batch:
            with connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                cursor.fetchall()
    n = len(batch) * repeat
    return (cpu_ns(pid) - before) / 1000 / n, (time.perf_counter_ns() - started) / 1000 / n


def memo_keys(folder: Path, config, policy, population, asked, draws: int) -> dict:
    """How many distinct memo keys the questions make, with the head counts always in the key (as before) and
    left out of a question that cannot read them, and the hit rate of a memo of `Policy.MEMO_SIZE` answers over
    `draws` questions drawn at random (as wrk draws them), each way. On SQLite: the facts are the same."""
    import random
    from collections import OrderedDict

    from service import canonical
    from service.domain.decisions import Decider, Question, Resource, _needs, profile_of
    from service.storage.database import Database

    url = f"sqlite:///{folder / 'memo.db'}"
    seed(url, config, population)
    database = Database(url)
    engine = policy._engine
    keys: dict[str, list] = {"with": [], "as read": []}
    try:
        with database.reads() as session:
            decider = Decider(session, profile_of(config, PORTAL), policy, PORTAL, policy_now())
            for q in asked:
                resource = (Resource("organization", q.organization) if q.target is None
                            else Resource("account", q.target.username, q.organization))
                question = Question(q.action, resource, {"permission": q.permission} if q.permission else {})
                facts = decider.read(*_needs(q.actor.username, [resource]))
                actor, target = decider.actor_in(facts, q.actor.username), decider.resource_in(facts, question)
                keys["with"].append(canonical.shape_key(actor, q.action, target))
                keys["as read"].append(engine._key(actor, q.action, target))
    finally:
        database.dispose()
    rng = random.Random(2323)
    order = [rng.randrange(len(asked)) for _ in range(draws)]
    out = {}
    for way, made in keys.items():
        memo: OrderedDict = OrderedDict()
        hits = 0
        for i in order:
            key = made[i]
            if key in memo:
                hits += 1
                memo.move_to_end(key)
                continue
            memo[key] = True
            if len(memo) > policy.MEMO_SIZE:
                memo.popitem(last=False)
        out[way] = {"distinct": len(set(made)), "hit_rate": hits / draws}
    return out


def policy_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "2,000 accounts, 100 questions, 2 rounds (a smoke run; figures meaningless)")
    parser.add_argument("--accounts", type=int, default=None, help="accounts in the portal (default 50,000)")
    parser.add_argument("--questions", type=int, default=None, help="questions replayed (default 400)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 4)")
    parser.add_argument("--repeat", type=int, default=4, help="passes over the questions per round and way")
    parser.add_argument("--memo", type=int, default=None, metavar="QUESTIONS",
                        help="instead: the distinct memo keys of that many questions (bench/mixed.py's 100,000), "
                             "and a memo's hit rate over twice as many random draws, with and without the counts")
    args = sized(parser.parse_args(argv), accounts=(2_000, 50_000), questions=(100, 400), rounds=(2, 4))

    from service.config import load_config
    from service.policy import Policy
    from service.storage.database import Database

    config = load_config(ROOT / "config.yaml")
    policy = Policy(ROOT / "policies")
    population = people(args.accounts)
    asked = questions(population, args.questions)
    if args.memo:
        asked = questions(population, args.memo)
        m = begin("memo keys with and without the head counts", f"{args.accounts:,} accounts; {args.memo:,} questions")
        with tempfile.TemporaryDirectory(prefix="portal-authz-memo-") as tmp_name:
            found = memo_keys(Path(tmp_name), config, policy, population, asked, 2 * args.memo)
        table(f"memo keys of {args.memo:,} questions; a memo of {policy.MEMO_SIZE:,} over {2 * args.memo:,} draws",
              ["key", "distinct", "hit rate"],
              [[way, f"{f['distinct']:,}", f"{100 * f['hit_rate']:.1f}%"] for way, f in found.items()])
        finish(m, args.json, found)
        return
    m = begin("the facts statement replayed on PostgreSQL: head counts always, and only as the policy reads them",
              f"{args.accounts:,} accounts (bench/mixed.py's portal); {len(asked)} questions, {args.rounds} "
              f"alternating rounds, {args.repeat} passes each; one connection, the backend's CPU")
    figures: dict = {"rounds": []}
    with tempfile.TemporaryDirectory(prefix="portal-authz-replay-") as tmp_name, ExitStack() as stack:
        backend = next(backends("postgres", Path(tmp_name), stack))
        url = backend.database("replay")
        seed(url, config, population)
        database = Database(url)
        stack.callback(database.dispose)
        made = statements(asked, policy, database.engine.dialect)
        raw = database.engine.raw_connection()
        stack.callback(raw.close)
        connection = raw.driver_connection
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        for kind in made:  # warm: every statement prepared both ways
            for way in made[kind]:
                run(connection, pid, made[kind][way], 3)
        rows = []
        for r in range(args.rounds):
            order = ("with", "as read") if r % 2 == 0 else ("as read", "with")
            got = {}
            for way in order:
                for kind in ("member", "admin"):
                    got[(kind, way)] = run(connection, pid, made[kind][way], args.repeat)
            figures["rounds"].append({f"{kind} {way}": got[(kind, way)] for kind, way in got})
            rows.append([r + 1, " then ".join(order)] + [f"{got[(kind, way)][0]:.0f}"
                                                         for kind in ("member", "admin")
                                                         for way in ("with", "as read")])
        table("backend CPU µs per facts statement", ["round", "order", "member: counts", "member: as read",
                                                     "admin: counts", "admin: as read"], rows)
        for kind in ("member", "admin"):
            for way in ("with", "as read"):
                cpu = [rnd[f"{kind} {way}"][0] for rnd in figures["rounds"]]
                wall = [rnd[f"{kind} {way}"][1] for rnd in figures["rounds"]]
                print(f"{kind:6} {way:8}: backend CPU median {statistics.median(cpu):.0f} µs, client wall median "
                      f"{statistics.median(wall):.0f} µs per statement ({len(made[kind][way])} statements)")
        read = sum(1 for kind in made for sql, _ in made[kind]["as read"] if "count(" in sql.lower())
        print(f"statements that still count: {read} of {sum(len(made[k]['as read']) for k in made)} "
              f"(the admin questions whose action can read the counts)")
    finish(m, args.json, figures)


if __name__ == "__main__":
    main()
