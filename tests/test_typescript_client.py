"""The TypeScript client compiles against the document the service publishes now: the types are generated
from the current /openapi.json with the pinned openapi-typescript, and `tsc --noEmit` checks the client and
its example against them; compiled, it decides against a live server and denies when none answers. Node and
npm are required: without them this fails, it does not skip."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.fixtures.clients import TYPESCRIPT, npm
from tests.fixtures.postgres import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(node_modules, tmp_path_factory, config, policy):
    """A copy of clients/typescript whose schema.d.ts is generated from the document the app publishes now."""
    from service.app import create_app
    from tests.conftest import prepared_database

    tmp_path = tmp_path_factory.mktemp("typescript-client")
    database = prepared_database(f"sqlite:///{tmp_path / 'doc.db'}", config)
    try:
        document = create_app(config, database=database, policy=policy).api_doc
    finally:
        database.dispose()
    copy = tmp_path / "typescript"
    copy.mkdir()
    for name in ("package.json", "tsconfig.json", "src", "examples"):
        source = TYPESCRIPT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    (copy / "node_modules").symlink_to(node_modules)
    (tmp_path / "openapi.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    (copy / "src" / "schema.d.ts").unlink()
    npm("run", "--silent", "generate", cwd=copy)  # ../openapi.json: the document just dumped
    return copy


def type_check(project, check: bool = True):
    """The package's own `npm run check`, incremental: the build info of the first check lets the next one check
    only what changed (a file added), not the client, its generated schema and the libraries again."""
    return npm("run", "--silent", "check", "--", "--incremental", "--tsBuildInfoFile",
               str(project.parent / "check.tsbuildinfo"), cwd=project, check=check)


def test_the_typescript_client_and_its_example_type_check_against_the_current_document(project):
    type_check(project)
    committed = (TYPESCRIPT / "src" / "schema.d.ts").read_text()
    assert (project / "src" / "schema.d.ts").read_text() == committed, (
        "clients/typescript/src/schema.d.ts is not generated from the current /openapi.json: run clients/generate")


def test_the_type_check_refuses_a_call_the_document_does_not_allow(project):
    wrong = project / "examples" / "wrong.ts"
    wrong.write_text(
        'import { createPortalAuthzClient } from "../src/client";\n'
        'await createPortalAuthzClient("http://127.0.0.1:8000", "k").authorize({\n'
        '  portal: "ahcccs", actor: "sam.staff", action: "claims", resource: { type: "building", id: "B1" },\n'
        '});\n')
    try:
        result = type_check(project, check=False)
    finally:
        wrong.unlink()
    assert result.returncode != 0
    assert "examples/wrong.ts" in result.stdout and '"building"' in result.stdout


RUNTIME = """
import { createPortalAuthzClient } from "./src/client";
declare const process: { argv: string[] };
const [url, key, dead] = process.argv.slice(2) as [string, string, string];
const ORG = { type: "organization" as const, id: "PROV-0042" };
const ask = (actor: string) => ({ portal: "ahcccs", actor, action: "claims", resource: ORG });

async function main(): Promise<void> {
  const live = createPortalAuthzClient(url, key, { timeoutMs: 10000 });
  const down = createPortalAuthzClient(dead, key, { timeoutMs: 2000 });
  const checks = Array.from({ length: 150 }, (_, i) => ({ action: i % 2 ? "claims" : "eligibility", resource: ORG }));
  console.log(JSON.stringify({
    allowed: await live.authorize(ask("sam.staff")),
    denied: await live.authorize(ask("max.member")),
    missing: await live.authorize({ ...ask("sam.staff"), resource: { type: "organization", id: "PROV-9999" } }),
    many: (await live.authorizeMany("ahcccs", "sam.staff", checks)).map((d) => d.allowed),
    down: await down.authorize(ask("sam.staff")),
    downMany: (await down.authorizeMany("ahcccs", "sam.staff", checks)).map((d) => d.reasons[0]?.code),
  }));
}
main();
"""


def test_the_compiled_client_decides_against_a_live_server_and_denies_when_none_answers(project, live):
    (project / "runtime.ts").write_text(RUNTIME)
    out = project / "out"
    npm("exec", "--", "tsc", "--outDir", str(out), "--module", "commonjs", "--moduleResolution", "node10",
        "--target", "ES2022", "--lib", "ES2022,DOM", "--strict", "--skipLibCheck", "runtime.ts", cwd=project)
    (out / "package.json").write_text('{"type": "commonjs"}\n')
    run = subprocess.run(["node", str(out / "runtime.js"), live.url, live.key, f"http://127.0.0.1:{free_port()}"],
                         cwd=project, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    answers = json.loads(run.stdout)
    assert answers["allowed"]["allowed"] is True and answers["allowed"]["reasons"] == []
    assert answers["denied"]["allowed"] is False
    assert [r["code"] for r in answers["denied"]["reasons"]] == ["permission_not_granted"]
    assert answers["missing"] == {"allowed": False, "reasons": [answers["missing"]["reasons"][0]], "policy_version": None}
    assert answers["missing"]["reasons"][0]["code"] == "not_found"
    assert answers["many"] == [bool(i % 2) for i in range(150)]
    assert answers["down"]["allowed"] is False and answers["down"]["policy_version"] is None
    assert [r["code"] for r in answers["down"]["reasons"]] == ["unavailable"]
    assert answers["downMany"] == ["unavailable"] * 150
