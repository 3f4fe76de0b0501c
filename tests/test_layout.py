"""The layout docs/design.md states is the code's: every import of a service module is one its "Imports"
table allows, the kernel is at the bottom with storage and the policy right above it, the domain never
imports Flask, and only the modules named here talk to oso."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

SERVICE = ROOT / "service"
# The rule is that service/policy.py alone talks to oso; a module named here would be an exception,
# named in docs/policy.md and docs/design.md too. There is none.
OSO_EXCEPTIONS: set[str] = set()


def modules() -> dict[str, ast.Module]:
    return {path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(SERVICE.rglob("*.py"))}


def part_of(relpath: str) -> str:
    """`domain` for a module of a package, `policy.py` for a module at the top of service/."""
    return relpath.removeprefix("service/").split("/")[0]


def module_path(dotted: str) -> str | None:
    """The file (relative to the repository) a dotted service module name is, or None."""
    base = ROOT / dotted.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def imported(tree: ast.Module) -> set[str]:
    """The service modules a module imports (at the top or inside functions), as files."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from service.domain import usernames` imports the module usernames; `from x import Name` x.
            names = [f"{node.module}.{alias.name}" if module_path(f"{node.module}.{alias.name}") else node.module
                     for alias in node.names]
        for name in names:
            if name == "service" or name.startswith("service."):
                path = module_path(name)
                if path:
                    found.add(path)
    return found


def documented_imports() -> dict[str, set[str] | None]:
    """The table of docs/design.md: each part and what it may import (None: everything)."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = text.split("<!-- imports:start -->", 1)[1].split("<!-- imports:end -->", 1)[0]
    allowed = {}
    for line in table.strip().splitlines()[2:]:
        part, may = (cell.strip() for cell in line.strip().strip("|").split("|"))
        allowed[part.strip("`")] = None if may == "everything" else set(re.findall(r"`([^`]+)`", may))
    return allowed


def undocumented_imports(trees: dict[str, ast.Module], allowed: dict[str, set[str] | None]) -> list[str]:
    problems = []
    for path, tree in trees.items():
        part = part_of(path)
        if part == "__init__.py":
            continue  # service/__init__.py
        if part not in allowed:
            problems.append(f"{path}: its part `{part}` is not in the table of docs/design.md")
            continue
        may = allowed[part]
        for target in sorted(imported(tree)):
            other = part_of(target)
            if other in (part, "__init__.py") or may is None:
                continue
            if other not in may and target.removeprefix("service/") not in may:
                problems.append(f"{path} imports {target}, which docs/design.md does not let `{part}` import")
    return problems


def test_every_import_between_parts_is_one_the_design_page_lists():
    allowed = documented_imports()
    assert {"storage", "domain", "api", "policy.py", "cli.py"} <= set(allowed)
    assert undocumented_imports(modules(), allowed) == []


def test_the_import_check_finds_an_import_the_table_does_not_list():
    tree = ast.parse("from service.api.declare import Api\nfrom service.kernel import usernames\n")
    allowed = documented_imports()
    problems = undocumented_imports({"service/storage/example.py": tree}, allowed)
    assert problems == ["service/storage/example.py imports service/api/declare.py, "
                        "which docs/design.md does not let `storage` import"]


# The policy and the modules only it uses to read and answer the policy text.
POLICY_LAYER = re.compile(r"service/(policy|canonical|policy_generate|polar_text|polar_compile\w*|polar_parse|fact_reads)\.py")


def layering_breaches(trees: dict[str, ast.Module]) -> list[str]:
    """Imports that break the layering, whatever the table says: the kernel imports nothing of the service
    outside itself; storage imports only the kernel; the policy only the kernel and its own modules."""
    rules = [
        ("service/kernel/", "the kernel imports nothing of the service outside itself",
         lambda target: target.startswith("service/kernel/")),
        ("service/storage/", "storage imports only the kernel",
         lambda target: target.startswith(("service/kernel/", "service/storage/"))),
        (POLICY_LAYER, "the policy imports only the kernel",
         lambda target: target.startswith("service/kernel/") or POLICY_LAYER.fullmatch(target) is not None),
    ]
    problems = []
    for path, tree in trees.items():
        for where, rule, allowed in rules:
            inside = path.startswith(where) if isinstance(where, str) else where.fullmatch(path) is not None
            if inside:
                problems += [f"{path} imports {target}: {rule}" for target in sorted(imported(tree))
                             if target != "service/__init__.py" and not allowed(target)]
    return problems


def test_the_kernel_is_at_the_bottom_and_storage_and_the_policy_import_only_it():
    trees = modules()
    assert any(path.startswith("service/kernel/") for path in trees)
    assert layering_breaches(trees) == []
    allowed = documented_imports()
    assert allowed["kernel"] == set() and allowed["storage"] == {"kernel"}, "docs/design.md states the layering"


def test_the_layering_check_finds_the_domain_imported_from_below():
    trees = {
        "service/kernel/example.py": ast.parse("from service.storage.models import Account\n"),
        "service/storage/example.py": ast.parse("from service.domain import audit\nfrom service.kernel import facts\n"),
        "service/policy.py": ast.parse("def f():\n    from service.domain.errors import Invalid\n"),
        "service/domain/example.py": ast.parse("from service.storage.models import Account\n"),
    }
    assert layering_breaches(trees) == [
        "service/kernel/example.py imports service/storage/models.py: "
        "the kernel imports nothing of the service outside itself",
        "service/storage/example.py imports service/domain/audit.py: storage imports only the kernel",
        "service/policy.py imports service/domain/errors.py: the policy imports only the kernel",
    ]


def test_the_domain_never_imports_flask():
    for path, tree in modules().items():
        if path.startswith("service/domain/"):
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n.split(".")[0] in {"flask", "flask_openapi3", "werkzeug"} for n in names), path


def talks_to_oso(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "oso" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "oso":
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "oso":
            return True  # Policy.oso(): the engine itself
    return False


def test_only_the_policy_module_talks_to_oso_but_the_named_exceptions():
    talking = {path for path, tree in modules().items() if talks_to_oso(tree)}
    assert talking - OSO_EXCEPTIONS == {"service/policy.py"}, "only service/policy.py may talk to oso"
    assert OSO_EXCEPTIONS <= talking, "an exception no longer talks to oso: drop it here and in docs/"
    for page in ("policy.md", "design.md"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert all(f"`{path}`" in text for path in OSO_EXCEPTIONS), f"docs/{page} names the exceptions"


def test_the_oso_check_sees_an_import_and_a_call_of_the_engine():
    assert talks_to_oso(ast.parse("from oso import Variable"))
    assert talks_to_oso(ast.parse("def f(policy):\n    return policy.oso().query_rule('x')"))
    assert not talks_to_oso(ast.parse("from service.policy import Policy"))
