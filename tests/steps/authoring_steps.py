"""Steps of features/policy_authoring.feature: a policy author's change and `policy diff`.

The author works on copies of the shipped policies/ folder and runs the real command
(`portal-authz policy diff MAIN DRAFT`, in-process) over the decision tables and the
recorded decision log; the generated space is left to tests/test_policy_workbench.py
(it takes a minute per portal profile).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from pytest_bdd import given, parsers, then, when

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def authoring(tmp_path):
    return {"dir": tmp_path}


def _folder(authoring, name: str) -> Path:
    return authoring["dir"] / name


@given(parsers.parse('the shipped policy as "{main}" and a copy of it as "{draft}"'))
def _copies(authoring, main, draft):
    for name in (main, draft):
        shutil.copytree(ROOT / "policies", _folder(authoring, name))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


@when(parsers.parse('the author adds the status "{status}" to the statuses "{action}" applies to in "{draft}"'))
def _add_status(authoring, status, action, draft):
    path = _folder(authoring, draft) / "portal.polar"
    line = next(line for line in path.read_text().splitlines() if line.startswith(f'status_allows("{action}",'))
    current = re.search(r'target\.status = "(\w+)";$', line)
    assert current, f"the {action} rule names one status: {line}"
    _edit(path, line, line.replace(f'target.status = "{current.group(1)}";',
                                   f'target.status in ["{current.group(1)}", "{status}"];'))


@when(parsers.parse('the author rewords a comment of "{draft}"'))
def _reword(authoring, draft):
    _edit(_folder(authoring, draft) / "portal.polar", "# R16: a portal function", "# R16 (reworded): a portal function")


@when(parsers.parse('the author runs policy diff from "{main}" to "{draft}"'))
def _diff(authoring, main, draft, capsys, monkeypatch):
    from service.cli import main as portal_authz

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["policy_dir"] = str(_folder(authoring, draft))
    data["database"]["url"] = f"sqlite:///{authoring['dir'] / 'cli.db'}"
    config = authoring["dir"] / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("PORTAL_AUTHZ_DATABASE_URL", raising=False)
    capsys.readouterr()
    try:
        portal_authz(["policy", "diff", str(_folder(authoring, main)), "--no-space", "--config", str(config)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    authoring["code"] = code
    authoring["out"] = capsys.readouterr().out


@then(parsers.parse("policy diff exits {code:d}"))
def _exits(authoring, code):
    assert authoring["code"] == code, authoring["out"]


@then(parsers.parse('every decision it names is an "{action}" of an account whose status is "{status}"'))
def _names(authoring, action, status):
    lines = authoring["out"].splitlines()
    groups = [line for line in lines if re.match(r"^(account|organization) '", line)]
    assert groups and all(line.startswith(f"account '{action}',") for line in groups), groups
    tables = ROOT / "policies" / "tests"
    named = [line.strip() for line in lines if line.startswith("  [")]
    assert named
    for line in named:
        source, row = re.match(r'\[(\w+)\] (\S+): "(.*)"', line).group(2, 3)
        table = yaml.safe_load((tables / source).read_text())
        found = next(r for r in table["rows"] if r["name"] == row)
        assert found["action"] == action
        assert table["targets"][found["target"]].get("status") == status


@then(parsers.parse('it names the decision table row "{row}" in "{table}"'))
def _row(authoring, row, table):
    assert f'[tables] {table}: "{row}"' in authoring["out"], authoring["out"]


@then("its last line says how many decisions changed of how many evaluated")
def _summary(authoring):
    last = authoring["out"].splitlines()[-1]
    assert re.fullmatch(r"[1-9]\d* decisions changed \(of \d+ evaluated\)", last), last


@then(parsers.parse('its last line says "{text}"'))
def _last(authoring, text):
    assert authoring["out"].splitlines()[-1].startswith(text), authoring["out"]
