"""The TypeScript client compiles against the document the service publishes now: the types are generated
from the current /openapi.json with the pinned openapi-typescript, and `tsc --noEmit` checks the client and
its example against them. Node and npm are required: without them this fails, it does not skip."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.fixtures.servers import ROOT

pytestmark = pytest.mark.slow

TYPESCRIPT = ROOT / "clients" / "typescript"


def npm(*args: str, cwd=TYPESCRIPT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL, env={**os.environ, "npm_config_update_notifier": "false"})
    if check:
        assert result.returncode == 0, f"npm {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed():
    """node_modules as package-lock.json pins it (`npm ci` only when it is missing or older than the lock)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the TypeScript client is built by the suite "
                    "(apt-get install nodejs npm)", pytrace=False)
    marker = TYPESCRIPT / "node_modules" / ".package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < (TYPESCRIPT / "package-lock.json").stat().st_mtime:
        npm("ci", "--no-audit", "--no-fund")
    return TYPESCRIPT / "node_modules"


@pytest.fixture(scope="module")
def project(installed, tmp_path_factory, config, policy):
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
    (copy / "node_modules").symlink_to(installed)
    (tmp_path / "openapi.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    (copy / "src" / "schema.d.ts").unlink()
    npm("run", "--silent", "generate", cwd=copy)  # ../openapi.json: the document just dumped
    return copy


def test_the_typescript_client_and_its_example_type_check_against_the_current_document(project):
    npm("run", "--silent", "check", cwd=project)
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
        result = npm("run", "--silent", "check", cwd=project, check=False)
    finally:
        wrong.unlink()
    assert result.returncode != 0
    assert "examples/wrong.ts" in result.stdout and '"building"' in result.stdout
