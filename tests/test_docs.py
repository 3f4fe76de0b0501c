"""The documentation builds and its links hold: `mkdocs build --strict` fails on a broken link or anchor
between the pages of docs/ (mkdocs.yml makes each a warning), and every relative link of README.md names
a file that exists and, with `#anchor`, a heading of that file."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

from tests.conftest import ROOT

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--config-file", str(config), "--site-dir", str(site)],
                          capture_output=True, text=True, timeout=120, cwd=config.parent)


def test_the_docs_build_with_no_warning(tmp_path):
    run = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert run.returncode == 0, run.stdout + run.stderr
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert pages - {"index"} <= built and (tmp_path / "site" / "index.html").is_file()


def test_a_broken_anchor_between_pages_fails_the_build(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [nowhere](policy.md#no-such-heading).\n")
    run = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert run.returncode != 0 and "no-such-heading" in run.stdout + run.stderr


def slug(heading: str) -> str:
    """The anchor a forge (GitHub, GitLab) gives a heading, which a reader of README.md follows."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    prose = re.sub(r"(?ms)^```.*?^```", "", markdown)
    return {slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", prose)}


def broken_links(markdown: str, where: Path) -> list[str]:
    """Each relative link of a Markdown text (outside code) whose file or anchor does not exist."""
    prose = re.sub(r"(?ms)^```.*?^```", "", markdown)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:: not a file of this repository
        path, _, anchor = target.partition("#")
        file = (where.parent / path).resolve() if path else where
        if not file.exists() or ROOT.resolve() not in (file, *file.parents):
            broken.append(f"{target}: no such file in the repository")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file.read_text(encoding="utf-8"))):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT.resolve())}")
    return broken


def test_every_relative_link_of_the_readme_resolves():
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert LINK.search(text), "the README links to the docs"
    assert broken_links(text, readme) == []


def test_the_readme_link_check_finds_a_missing_file_and_a_missing_heading():
    text = ("[ok](docs/policy.md#decided-once-per-shape) [file](docs/nowhere.md) [anchor](docs/policy.md#nope) "
            "`[code](not/checked.md)` [web](https://example.org/x.md) [here](#where-to-go-next) [there](#nowhere) [up](../x.md)")
    assert broken_links(text, ROOT / "README.md") == [
        "docs/nowhere.md: no such file in the repository",
        "docs/policy.md#nope: no heading #nope in docs/policy.md",
        "#nowhere: no heading #nowhere in README.md",
        "../x.md: no such file in the repository",
    ]


def test_the_readme_keeps_to_what_a_newcomer_needs():
    """The first screen (what it is, the two commands, a first question), a short table, where to go next:
    the rest lives in docs/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"(?m)^## (.+)$", text)
    assert headings[:2] == ["What it answers", "Where to go next"]
    assert text.index("scripts/serve") < text.index("## What it answers")
    assert len(text.splitlines()) < 120, "the README grows back: move the detail to a page of docs/"
