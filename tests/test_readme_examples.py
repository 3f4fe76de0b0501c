"""The first hour as the README and docs/ print it: the worked example (docs/tour.md) runs against a live
server, the CLI wrapper exists, and `policy test` on a policy that does not compile says so in one line
(exit 1, no traceback)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from service import cli
from tests.fixtures.servers import ROOT, running

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
TOUR = (DOCS / "tour.md").read_text()
OPERATIONS = (DOCS / "operations.md").read_text()
TESTING = (DOCS / "testing.md").read_text()
AUTHORING = (DOCS / "authoring.md").read_text()


def worked_example() -> str:
    block = TOUR.split("<!-- worked-example:start -->", 1)[1].split("<!-- worked-example:end -->", 1)[0]
    return re.search(r"```sh\n(.*?)```", block, re.S).group(1)


@pytest.mark.slow
def test_the_worked_example_runs_as_printed(tmp_path):
    """R8, R10, R5, R14: register, activate, sign in, approve, grant, authorize, with the tour's bodies,
    against what `scripts/serve` runs (`serve --demo` on a fresh database), with the demo's client key."""
    assert shutil.which("curl") and shutil.which("jq"), "the worked example needs curl and jq"
    url = f"sqlite:///{tmp_path / 'readme.db'}"
    assert re.search(r"^exec \S+ serve --demo ", (ROOT / "scripts" / "serve").read_text(), re.M)
    with running(["readme"], url, tmp_path, workers=1, args=("--demo",)) as (server,):
        # Not on a terminal, the demo's secrets are in a file only its owner reads.
        key = re.search(r"pak_[A-Za-z0-9_-]+", (tmp_path / cli.DEMO_SECRETS_FILE).read_text()).group(0)
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", worked_example()], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "BASE": server.base, "KEY": key})
    assert run.returncode == 0, run.stdout + run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert answers[1]["role"] == "admin" and answers[1]["status"] == "pending_activation"
    assert answers[2]["status"] == "active"  # activated
    assert answers[-3]["status"] == "active"  # approved
    assert answers[-2]["memberships"][0]["permissions"] == ["claims"]
    assert answers[-1]["allowed"] is True and answers[-1]["reasons"] == []


def test_the_cli_examples_name_a_command_that_exists():
    assert (ROOT / "scripts" / "portal-authz").stat().st_mode & 0o111
    assert (ROOT / "scripts" / "qa-config").stat().st_mode & 0o111
    assert "scripts/serve" in README and "scripts/test" in README
    assert "scripts/portal-authz" in OPERATIONS and "scripts/qa-config" in TESTING


def test_policy_test_on_a_policy_that_does_not_compile_is_one_line(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    with (policies / "portal.polar").open("a") as polar:
        polar.write("\nallow(x if\n")
    config = tmp_path / "config.yaml"
    config.write_text(re.sub(r"(?m)^policy_dir:.*$", "", (ROOT / "config.yaml").read_text())
                      + f"\npolicy_dir: {policies}\n")
    run = subprocess.run([sys.executable, "-m", "service.cli", "--config", str(config), "policy", "test"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("portal-authz: policy in") and re.search(r"line \d+", line) and "'if'" in line


def test_scripts_venv_refuses_a_python_oso_has_no_wheels_for_before_making_anything(tmp_path):
    """oso 0.27 ships wheels for CPython 3.11 and 3.12 only: any other interpreter stops with one line."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "venv", tmp_path / "scripts" / "venv")
    fake = tmp_path / "python3.13"
    fake.write_text("#!/bin/sh\necho 3.13\n")
    fake.chmod(0o755)
    run = subprocess.run([str(tmp_path / "scripts" / "venv")], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHON": str(fake)})
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert "needs Python 3.11 or 3.12" in line and f"{fake}=3.13" in line
    assert not (tmp_path / ".venv").exists()


def _sh_block_after(page: str, heading: str) -> str:
    section = page.split(heading, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_qa_section_runs_pytest_with_the_test_extras_installed():
    """`.venv` as scripts/serve and scripts/qa-config make it has no pytest: a live QA run goes through
    scripts/test (which installs the test extras) or installs them first."""
    block = _sh_block_after(TESTING, "## Executable specifications")
    lines = [line for line in block.splitlines() if "test_features.py" in line]
    assert lines, "the QA section runs the features"
    installed = "scripts/venv test" in block.split(lines[0], 1)[0]
    for line in lines:
        assert "scripts/test " in line or ("pytest" in line and installed), line


def test_the_walk_through_worktree_command_works_on_a_fresh_clone(tmp_path):
    """A fresh clone has main checked out; `git worktree add PATH main` refuses that, `--detach` does not."""
    (command,) = [line.split("#", 1)[0].strip() for line in AUTHORING.splitlines()
                  if line.strip().startswith("git worktree add")]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--branch", "main", str(ROOT), str(clone)], check=True, timeout=60)
    run = subprocess.run(command.replace("/tmp/main", str(tmp_path / "main")), shell=True, cwd=clone,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "main" / "policies" / "portal.polar").is_file()
