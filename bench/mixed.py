"""The mixed workload: POST /v1/authorize asked about tens of thousands of people, beside Cerbos. A benchmark
script, not a test.

bench/peers.py asks one question again and again, so every answer after the first comes from the memo. A
real portal asks about many people. This script bulk-loads (as bench/roster.py does: executemany on SQLite,
COPY on PostgreSQL) a portal of `--accounts` ahcccs accounts (default 50,000) in organizations of 100, with
statuses mixed as in life (mostly active; some locked, disabled, pending approval or activation, unverified;
some passwords expired; some links removed) and grants of the catalog's functions, two admins per
organization. Then it prepares `--questions` questions (default 100,000) drawn at random:

  - 60%: a member (any account, whatever its standing) asking for a function of the catalog on its own
    organization (`claims`, `eligibility`, `prior_authorizations`);
  - 40%: an admin of an organization asking to approve, enable, disable, unlock, upgrade, remove or grant
    (`context.permission` from the catalog) another account of that organization;

more distinct questions than a worker's memo holds (`Policy.MEMO_SIZE`), so most answers are evaluated.
The real `portal-authz serve` (engine, workers and logging as shipped; the demo off) answers them on SQLite
and on PostgreSQL, loaded by wrk at `--connections` (32) with a Lua script that draws each request's body at
random from the prepared list. Cerbos (bench/peers.py's npm package) gets the same questions with the facts
in the request, as Cerbos callers send them, under a policy written to make the same decisions: member
standing and grant for functions; admin of the organization and the target's status for admin actions.

Before timing, a sample of the questions (the first `--sample`, default 1,000, and a few of every rarer kind:
action, status, link, role) is asked of both sides: every answer must agree, and both sides' allowed/denied counts are printed. Then per side: throughput, p50/p99, non-2xx
and socket errors; the CPU each kind of process spent per request answered (the server's workers, the run's own
PostgreSQL server's backends, Cerbos, wrk; any other process, another PostgreSQL server included, as "other"); the ratio to Cerbos per backend; and the targets (>= 1.0x Cerbos, p99 < 25 ms, no
errors) each met or not.

    python bench/mixed.py [--quick] [--accounts 50000] [--questions 100000] [--sample 1000] [--seconds 15]
                          [--connections 32] [--warmup 2] [--backend sqlite|postgres|both] [--no-cerbos] [--cerbos PATH]
                          [--quiet-logs] [--json out.json]

--quick: 2,000 accounts, 5,000 questions, a sample of 200, 3 s per run (a smoke run; figures meaningless).
"""
from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable without PYTHONPATH

from bench._common import (ROOT, arguments, backends, begin, bulk_load, dumps, ensure_wrk, finish,  # noqa: E402
                           free_port, request, run_wrk, sized, start_server, stop_server, table, wait_ready,
                           write_config, wrk_version)
from bench.cpu_split import cpu_by_process  # noqa: E402
from bench.peers import STANDING, cerbos_options, cerbos_resource_policy, cerbos_rule  # noqa: E402

PORTAL = "ahcccs"
PER_ORG = 100
ADMINS_PER_ORG = 2  # the first two accounts of each organization
MEMBER_SHARE = 0.6
ADMIN_ACTIONS = ("approve", "enable", "disable", "unlock", "upgrade", "remove", "grant")
P99_TARGET_MS = 25.0
CATALOG = ("claims", "prior_authorizations", "eligibility")  # config.yaml's ahcccs catalog (checked in main)
# (account status, share in percent) as in life: the rest are active.
STATUSES = (("locked", 5), ("disabled", 4), ("pending_approval", 4), ("pending_activation", 2), ("unverified", 1))
EXPIRED_PERCENT = 5  # passwords past the portal's 45 days
REMOVED_LINK_PERCENT = 1
GRANT_PERCENT = {"claims": 60, "eligibility": 40, "prior_authorizations": 20}
FAKE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$not-a-real-hash"
ACCOUNT_COLUMNS = ("id", "portal_id", "username", "username_key", "first_name", "last_name", "email", "email_key",
                   "phone", "password_hash", "password_changed_at", "status", "is_support", "terms_accepted_at",
                   "last_login_at", "last_activity_at", "created_at")


# --- the portal and the questions (pure: tests/test_bench_mixed.py checks them) --------------------------

@dataclass(frozen=True)
class Person:
    id: int
    username: str
    organization: str  # its one organization's key
    role: str  # admin | member
    status: str  # the account's status
    link: str  # active | removed: its membership
    password_age_days: int
    grants: tuple[str, ...]

    @property
    def password_current(self) -> bool:
        return self.password_age_days < 45


def people(accounts: int, seed: int = 23) -> list[Person]:
    """`accounts` accounts in organizations of PER_ORG; the first ADMINS_PER_ORG of each are its admins."""
    rng = random.Random(seed)
    out = []
    for i in range(1, accounts + 1):
        position = (i - 1) % PER_ORG
        r, floor, status = rng.randrange(100), 0, "active"
        for name, share in STATUSES:
            if floor <= r < floor + share:
                status = name
                break
            floor += share
        expired = rng.randrange(100) < EXPIRED_PERCENT
        age = rng.randrange(46, 400) if expired else rng.randrange(0, 40)
        link = "removed" if rng.randrange(100) < REMOVED_LINK_PERCENT else "active"
        role = "admin" if position < ADMINS_PER_ORG else "member"
        grants = tuple(p for p in CATALOG if rng.randrange(100) < GRANT_PERCENT[p]) if role == "member" else ()
        out.append(Person(i, f"mix.{i:06d}", f"MIX-{(i - 1) // PER_ORG:05d}", role, status, link, age, grants))
    return out


@dataclass(frozen=True)
class Question:
    actor: Person
    action: str
    organization: str
    target: Person | None = None  # None: a function of the organization
    permission: str | None = None  # grant's context.permission

    def key(self) -> tuple:
        return (self.actor.username, self.action, self.organization,
                self.target.username if self.target else None, self.permission)


def questions(population: list[Person], count: int, seed: int = 2323) -> list[Question]:
    """MEMBER_SHARE of members asking for a function of their organization; the rest admins acting on another
    account of their organization (any of its accounts but themselves, the other admin included)."""
    rng = random.Random(seed)
    by_org: dict[str, list[Person]] = {}
    for person in population:
        by_org.setdefault(person.organization, []).append(person)
    admins = [p for p in population if p.role == "admin"]
    out = []
    for _ in range(count):
        if rng.random() < MEMBER_SHARE:
            actor = population[rng.randrange(len(population))]
            out.append(Question(actor, CATALOG[rng.randrange(len(CATALOG))], actor.organization))
            continue
        actor = admins[rng.randrange(len(admins))]
        colleagues = by_org[actor.organization]
        target = actor
        while target is actor:
            target = colleagues[rng.randrange(len(colleagues))]
        action = ADMIN_ACTIONS[rng.randrange(len(ADMIN_ACTIONS))]
        permission = CATALOG[rng.randrange(len(CATALOG))] if action == "grant" else None
        out.append(Question(actor, action, actor.organization, target, permission))
    return out


def sample_of(asked: list[Question], size: int, per_shape: int = 3) -> list[Question]:
    """The first `size` questions, and up to `per_shape` more of every kind of question they may lack (action,
    the target's or the actor's status, link and role): a random sample holds few of the rare kinds (an approve
    of an account pending approval), and both sides must agree on those too."""
    def shape(q: Question) -> tuple:
        who = q.target or q.actor
        return q.action, who.status, who.link, who.role, q.actor.password_current

    taken = Counter(shape(q) for q in asked[:size])
    extra = []
    for q in asked[size:]:
        if taken[shape(q)] < per_shape:
            taken[shape(q)] += 1
            extra.append(q)
    return asked[:size] + extra


def portal_body(q: Question) -> dict:
    """The question as api-v1.md asks it: the facts are the server's to read."""
    if q.target is None:
        resource = {"type": "organization", "id": q.organization}
    else:
        resource = {"type": "account", "id": q.target.username, "organization": q.organization}
    body = {"portal": PORTAL, "actor": q.actor.username, "action": q.action, "resource": resource}
    if q.permission:
        body["context"] = {"permission": q.permission}
    return body


def cerbos_body(q: Question) -> dict:
    """The same question as a Cerbos caller sends it: the actor's and the target's facts in the request."""
    actor = q.actor
    principal = {"id": actor.username, "roles": ["user"],
                 "attr": {"status": actor.status, "password_current": actor.password_current,
                          "memberships": {actor.organization: {"role": actor.role, "status": actor.link,
                                                               "permissions": list(actor.grants)}}}}
    if q.target is None:
        resource = {"kind": "organization", "id": q.organization, "attr": {}}
    else:
        target = q.target
        # A removed link reads as removed, whatever the account's own status (as our facts read it).
        status = "removed" if target.link == "removed" else target.status
        resource = {"kind": "account", "id": target.username,
                    "attr": {"organization": q.organization, "status": status, "role": target.role,
                             "permission": q.permission or ""}}
    return {"requestId": "mixed", "principal": principal,
            "resources": [{"actions": [q.action], "resource": resource}]}


def mix_of(population: list[Person], asked: list[Question]) -> dict:
    """What the generator produced, for the header and the test: sizes, shares, distinct questions."""
    statuses = Counter(p.status for p in population)
    return {"accounts": len(population), "organizations": len({p.organization for p in population}),
            "admins": sum(p.role == "admin" for p in population),
            "statuses": dict(statuses.most_common()),
            "expired_passwords": sum(not p.password_current for p in population),
            "removed_links": sum(p.link == "removed" for p in population),
            "questions": len(asked), "member_questions": sum(q.target is None for q in asked),
            "admin_questions": Counter(q.action for q in asked if q.target is not None),
            "distinct": len({q.key() for q in asked})}


# --- bulk loading --------------------------------------------------------------------------------------

def tables(population: list[Person], now: datetime):
    """(table, columns, rows(n, text_time)) for bench._common.bulk_load."""
    organizations = sorted({p.organization for p in population})
    org_id = {key: n + 1 for n, key in enumerate(organizations)}

    def org_rows(_n, t):
        for key in organizations:
            yield org_id[key], PORTAL, key, f"Practice {key}", t(now - timedelta(days=400))

    def account_rows(_n, t):
        created = t(now - timedelta(days=400))
        for p in population:
            email = f"{p.username}@example.org"
            yield (p.id, PORTAL, p.username, p.username, "Mix", f"Person{p.id}", email, email, "602-555-0100",
                   FAKE_HASH, t(now - timedelta(days=p.password_age_days)), p.status, False, created, None, None,
                   created)

    def membership_rows(_n, t):
        created = t(now - timedelta(days=400))
        for p in population:
            yield p.id, p.id, org_id[p.organization], p.role, p.link, created

    def grant_rows(_n, t):
        created = t(now - timedelta(days=400))
        for p in population:
            if p.link == "active":  # removing a link drops its grants
                for permission in p.grants:
                    yield p.id, permission, created

    return (("organizations", ("id", "portal_id", "key", "name", "created_at"), org_rows),
            ("accounts", ACCOUNT_COLUMNS, account_rows),
            ("memberships", ("id", "account_id", "organization_id", "role", "status", "created_at"), membership_rows),
            ("grants", ("membership_id", "permission", "granted_at"), grant_rows))


def seed(url: str, config, population: list[Person]) -> tuple[str, float]:
    """Schema, portals, the bulk-loaded population (the times relative to now: the server reads the system
    clock, and R18's password expiry with it) and an `authorize` client key."""
    from service.domain import clients
    from service.domain.setup import sync_portals
    from service.storage.database import Database

    database = Database(url)
    try:
        database.upgrade_schema()
        with database.transaction() as session:
            sync_portals(session, config)
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        bulk_load(database, tables(population, now), len(population))
        loaded = time.perf_counter() - started
        with database.transaction() as session:
            key = clients.create_client(session, "bench-mixed", ("authorize",), now)
    finally:
        database.dispose()
    return key, loaded


# --- Cerbos --------------------------------------------------------------------------------------------

STATUS_ALLOWS = {  # the status lifecycle of api-v1.md, as policies/portal.polar's status_allows states it
    "approve": 'R.attr.status == "pending_approval"',
    "enable": 'R.attr.status in ["pending_approval", "disabled"]',
    "disable": 'R.attr.status in ["active", "locked", "unverified"]',
    "remove": 'R.attr.status != "removed"',
    "upgrade": 'R.attr.status == "active" && R.attr.role == "member"',
    "unlock": 'R.attr.status == "locked"',
    "grant": 'R.attr.status != "removed" && R.attr.permission in {catalog}',
}


def cerbos_account_policy(catalog: tuple[str, ...]) -> str:
    """Admin actions in Cerbos: an active actor with a current password, not the target, an active admin of the
    target's organization, and the target's status allowing the action (grant: a function of the catalog)."""
    rules = []
    for action in ADMIN_ACTIONS:
        status = STATUS_ALLOWS[action].replace("{catalog}", json.dumps(list(catalog)))
        rules.append(cerbos_rule(f"admin-{action}", action, [
            *STANDING,
            "P.id != R.id",
            "R.attr.organization in P.attr.memberships",
            'P.attr.memberships[R.attr.organization].status == "active"',
            'P.attr.memberships[R.attr.organization].role == "admin"',
            f">\n                  {status}",
        ]))
    return cerbos_resource_policy("account", rules)


def write_cerbos_policies(tmp: Path, catalog: tuple[str, ...]) -> None:
    """The account policy beside the organization one (bench/peers.py's function rule, which also checks the
    principal's status and password), which bench/peers.start_cerbos writes and compiles with it."""
    policies = tmp / "cerbos-policies"
    policies.mkdir(exist_ok=True)
    (policies / "account.yaml").write_text(cerbos_account_policy(catalog))


# --- asking ---------------------------------------------------------------------------------------------

def ask_all(port: int, path: str, bodies: list[bytes], headers: dict, read) -> list[bool]:
    """Each body once, 8 at a time; `read(status, body)` -> allowed. A failed request stops the run."""
    def one(body: bytes) -> bool:
        status, answer = request(port, "POST", path, body, headers)
        if status != 200:
            raise SystemExit(f"bench: {path} answered {status} {answer[:500]!r} for {body[:300]!r}")
        return read(answer)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, bodies))


def portal_allowed(answer: bytes) -> bool:
    return json.loads(answer)["allowed"] is True


def cerbos_allowed(answer: bytes) -> bool:
    (result,) = json.loads(answer)["results"]
    (effect,) = result["actions"].values()
    return effect == "EFFECT_ALLOW"


def by_action(sample: list[Question], answers: list[bool]) -> str:
    """So that an agreement is not only on denials: how many of each action were allowed."""
    asked, allowed = Counter(q.action for q in sample), Counter(q.action for q, a in zip(sample, answers) if a)
    return ", ".join(f"{action} {allowed[action]}/{asked[action]}" for action in sorted(asked))


def describe(q: Question) -> str:
    def who(p: Person) -> str:
        return (f"{p.username} ({p.status}, {p.role}, link {p.link}, "
                f"password {'current' if p.password_current else 'expired'})")

    what = who(q.target) if q.target else q.organization
    return f"{who(q.actor)} {q.action} {what}{' ' + q.permission if q.permission else ''}"


def agree(name: str, mine: list[bool], theirs: list[bool], sample: list[Question]) -> str:
    """Both sides' counts; every answer must be the same, else the run stops with the first disagreements."""
    counts = (f"{name}: {sum(mine)} allowed / {len(mine) - sum(mine)} denied; "
              f"Cerbos: {sum(theirs)} allowed / {len(theirs) - sum(theirs)} denied")
    wrong = [(q, a, b) for q, a, b in zip(sample, mine, theirs) if a != b]
    if wrong:
        raise SystemExit(f"bench: the answers differ on {len(wrong)} of {len(sample)} questions ({counts}):\n"
                         + "\n".join(f"  {describe(q)}: {name} {a}, Cerbos {b}" for q, a, b in wrong[:10]))
    return counts


def body_script(path: Path, bodies_file: Path, url_path: str, headers: dict[str, str]) -> Path:
    """A wrk Lua script: each request POSTs a body drawn at random from `bodies_file` (one per line), each
    thread with its own seed."""
    header_lines = "".join(f'headers["{k}"] = "{v}"\n' for k, v in headers.items())
    path.write_text(f"""local bodies = {{}}
local headers = {{}}
{header_lines}local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  for line in io.lines("{bodies_file}") do bodies[#bodies + 1] = line end
  math.randomseed(os.time() * 1000 + id)
end
function request()
  return wrk.format("POST", "{url_path}", headers, bodies[math.random(#bodies)])
end
""")
    return path


def by_kind(before: dict, after: dict, roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds between two readings of `cpu_by_process`, by kind: each of `roots` (a kind and the pid of the
    run's own process of it: the server, its PostgreSQL postmaster, Cerbos) with its descendants (the workers,
    the backends), and the rest of the machine as "other" (anything else running meanwhile, other PostgreSQL
    servers included: on a shared machine, that load is in every figure)."""
    parent = {}
    for pid in after:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parent[pid] = int(stat[stat.rindex(")") + 2:].split()[1])
    kind_of_root = {pid: kind for kind, pid in roots.items() if pid is not None}

    def kind_of(pid: int) -> str:
        while pid > 1:
            if pid in kind_of_root:
                return kind_of_root[pid]
            pid = parent.get(pid, 1)
        return "other"

    kinds: dict[str, float] = {}
    for pid, (comm, user, system) in after.items():
        _, user0, system0 = before.get(pid, (comm, 0.0, 0.0))
        kind = kind_of(pid)
        kinds[kind] = kinds.get(kind, 0.0) + (user - user0) + (system - system0)
    return kinds


def postmaster_pid(server) -> int | None:
    """The run's own PostgreSQL server's postmaster (its backends are its children), from its data folder."""
    if server is None:
        return None
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def load(port: int, script: Path, url_path: str, seconds: float, connections: int, label: str,
         warmup: float = 2.0, roots: dict[str, int | None] | None = None) -> dict:
    # Warm: workers, pools, prepared statements and, with --warmup long enough, each worker's memo of shapes (a
    # server that has run a while); the figure after 2 s is a server that has just started.
    run_wrk(port, url_path, script, warmup, connections)
    time.sleep(0.5)
    before, children = cpu_by_process(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(port, url_path, script, seconds, connections)
    after, children_after = cpu_by_process(), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"  {label:<28} c={connections:<3} {result['per_s']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
          f"p99 {result['p99_ms']:8.2f} ms  non-2xx {result['non_2xx']} {result['socket_errors']}", flush=True)
    # Where the two cores went, per request answered: each kind of process (the server's workers, PostgreSQL's
    # backends, Cerbos) and wrk itself (a child that has exited by now: its rusage).
    answered = max(1, result["requests"])
    split = {kind: round(seconds_ / answered * 1e6, 1) for kind, seconds_ in by_kind(before, after, roots or {}).items()
             if seconds_ > 0.01}
    split["wrk"] = round((children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime)
                         / answered * 1e6, 1)
    print("    CPU µs per request: " + ", ".join(f"{kind} {us:,.0f}" for kind, us in
                                                 sorted(split.items(), key=lambda kv: -kv[1])), flush=True)
    return {"target": label, "connections": connections, **result, "cpu_us_per_request": split}


# --- the run -------------------------------------------------------------------------------------------

@contextmanager
def served(tmp: Path, backend: str, url: str, config, population, quiet_logs: bool) -> Iterator[tuple[int, dict, float]]:
    """The population bulk-loaded at `url` and the real `serve` over it (as shipped, the demo off; `quiet_logs`: log
    level warning, no access log): yields its port, the headers of a request with its client key, and the load's
    seconds and the server's process id. The server is stopped when the block ends."""
    key, loaded = seed(url, config, population)
    print(f"portal-authz {backend}: {len(population):,} accounts bulk-loaded in {loaded:.1f} s", flush=True)
    overrides = {"logging": {"level": "warning", "access_log": False}} if quiet_logs else {}
    config_path = write_config(tmp, **overrides)
    port, log_path = free_port(), tmp / f"server-{backend}.log"
    proc = start_server(config_path, url, port, log_path)
    try:
        wait_ready(proc, port, log_path)
        yield port, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, loaded, proc.pid
    finally:
        stop_server(proc)


def bench_portal(tmp: Path, backend: str, url: str, config, population, asked, sample, cerbos_answers, args,
                 database_pid: int | None = None):
    with served(tmp, backend, url, config, population, args.quiet_logs) as (port, headers, loaded, pid):
        started = time.perf_counter()
        mine = ask_all(port, "/v1/authorize", [dumps(portal_body(q)) for q in sample], headers, portal_allowed)
        print(f"  sample of {len(sample):,} ({args.sample:,} drawn, the rest rarer kinds) asked in {time.perf_counter() - started:.1f} s", flush=True)
        counts = (agree(f"portal-authz {backend}", mine, cerbos_answers, sample) if cerbos_answers is not None
                  else f"portal-authz {backend}: {sum(mine)} allowed / {len(mine) - sum(mine)} denied (no Cerbos)")
        print(f"  {counts}\n  allowed of asked, by action: {by_action(sample, mine)}", flush=True)
        bodies = tmp / f"bodies-{backend}.jsonl"
        bodies.write_bytes(b"\n".join(dumps(portal_body(q)) for q in asked) + b"\n")
        script = body_script(tmp / f"mixed-{backend}.lua", bodies, "/v1/authorize", headers)
        row = load(port, script, "/v1/authorize", args.seconds, args.connections, f"portal-authz {backend}",
                   args.warmup, roots={"portal-authz": pid, "postgres": database_pid})
    return {**row, "side": backend, "sample": counts, "load_s": loaded}


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, "a smoke run: small counts, figures meaningless", backend="both")
    parser.add_argument("--accounts", type=int, default=None, help="accounts in the portal (default 50,000)")
    parser.add_argument("--questions", type=int, default=None, help="prepared questions (default 100,000)")
    parser.add_argument("--sample", type=int, default=None, help="questions both sides must agree on (1,000)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of wrk per side (default 15)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of wrk before the timed run (default 2: a server just started; 60 or more: "
                             "one that has run a while, its workers' memos warm)")
    cerbos_options(parser)
    args = sized(parser.parse_args(argv), accounts=(2_000, 50_000), questions=(5_000, 100_000),
                 sample=(200, 1_000), seconds=(3.0, 15.0))
    started = time.monotonic()
    args.sample = min(args.sample, args.questions)

    from bench.peers import cerbos_version, check_cerbos, ensure_cerbos, start_cerbos
    from service.config import load_config
    from service.policy import Policy

    config = load_config(ROOT / "config.yaml")
    catalog = tuple(config.portals[PORTAL].catalog)
    if set(catalog) != set(CATALOG):
        raise SystemExit(f"bench: the {PORTAL} catalog is {catalog}; this workload draws from {CATALOG}")
    ensure_wrk()
    binary = None if args.no_cerbos else ensure_cerbos(args.cerbos)
    population = people(args.accounts)
    asked = questions(population, args.questions)
    mix = mix_of(population, asked)
    sample = sample_of(asked, args.sample)
    memo = Policy.MEMO_SIZE
    m = begin("the mixed workload: POST /v1/authorize about many people, beside Cerbos (wrk on loopback)",
              f"{wrk_version()}; cerbos {cerbos_version(binary) if binary else 'not run'}; {args.seconds:g} s "
              f"per side at {args.connections} connections (after {args.warmup:g} s of warm-up); wrk shares the cores\n"
              f"portal: {mix['accounts']:,} accounts in {mix['organizations']:,} organizations of {PER_ORG} "
              f"({mix['admins']:,} admins); statuses {mix['statuses']}; {mix['expired_passwords']:,} passwords "
              f"expired; {mix['removed_links']:,} links removed\n"
              f"questions: {mix['questions']:,} prepared, {mix['distinct']:,} distinct (a worker's memo holds "
              f"{memo:,}: {'more' if mix['distinct'] > memo else 'NOT more'}); {mix['member_questions']:,} "
              f"functions, admin actions {dict(sorted(mix['admin_questions'].items()))}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="portal-authz-mixed-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        cerbos = cerbos_answers = None
        if binary:
            write_cerbos_policies(tmp, catalog)
            cerbos = start_cerbos(binary, tmp, catalog)  # bench/peers.py's, with account.yaml beside
            stack.callback(stop_server, cerbos[0])
            wait_ready(cerbos[0], cerbos[1], cerbos[2], path="/_cerbos/health")
            check_cerbos(cerbos[1])
            cerbos_answers = ask_all(cerbos[1], "/api/check/resources", [dumps(cerbos_body(q)) for q in sample],
                                     {"Content-Type": "application/json"}, cerbos_allowed)
            print(f"Cerbos {cerbos_version(binary)} ({binary}): log level warn, audit and telemetry off; the sample "
                  f"asked", flush=True)
        for backend in backends(args.backend, tmp, stack):
            rows.append(bench_portal(backend.folder, backend.name, backend.database("mixed"), config, population,
                                     asked, sample, cerbos_answers, args, postmaster_pid(backend.server)))
        if cerbos:
            bodies = tmp / "bodies-cerbos.jsonl"
            bodies.write_bytes(b"\n".join(dumps(cerbos_body(q)) for q in asked) + b"\n")
            script = body_script(tmp / "mixed-cerbos.lua", bodies, "/api/check/resources",
                                 {"Content-Type": "application/json"})
            rows.append({**load(cerbos[1], script, "/api/check/resources", args.seconds, args.connections,
                                "Cerbos", args.warmup, roots={"cerbos": cerbos[0].pid}), "side": "Cerbos"})
    table(f"the mixed workload at {args.connections} connections (wrk, loopback)",
          ["side", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"],
          [[r["target"], r["per_s"], r["p50_ms"], r["p99_ms"], r["non_2xx"], r["socket_errors"] or "-"]
           for r in rows])
    print()
    peer = next((r for r in rows if r["side"] == "Cerbos"), None)
    for r in rows:
        if r["side"] == "Cerbos":
            continue
        if peer:
            ratio = r["per_s"] / peer["per_s"]
            print(f"portal-authz ({r['side']}) / Cerbos throughput: {r['per_s']:.0f} / {peer['per_s']:.0f} = "
                  f"{ratio:.2f}  (target >= 1.0: {'met' if ratio >= 1 else 'NOT met'})")
        print(f"portal-authz ({r['side']}) p99 < {P99_TARGET_MS:g} ms: "
              f"{'met' if r['p99_ms'] < P99_TARGET_MS else 'NOT met'} (p99 {r['p99_ms']:.2f} ms)")
        errors = r["non_2xx"] or r["socket_errors"]
        print(f"portal-authz ({r['side']}) no errors: {'NOT met' if errors else 'met'} "
              f"(non-2xx {r['non_2xx']}{', ' + r['socket_errors'] if r['socket_errors'] else ''})")
        print(f"  sample: {r['sample']}")
    finish(m, args.json, {"mix": mix, "rows": rows, "args": vars(args)}, started)


if __name__ == "__main__":
    main()
