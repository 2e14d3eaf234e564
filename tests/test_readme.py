"""The README is a front door: short, its links lead somewhere, and CI runs its commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def bash_blocks(section: str) -> list[str]:
    """Return the bash blocks of the README section headed `## <section>`."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL)


def test_readme_fits_on_a_few_screens() -> None:
    assert len(README.splitlines()) <= 150


def test_readme_links_lead_to_files() -> None:
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert targets
    assert [t for t in targets if not (ROOT / t).is_file()] == []


def test_ci_runs_the_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    [install] = bash_blocks("Install")
    assert 'pip install -e ".[test,lint,docs]"' in install.splitlines()
    assert 'pip install -e ".[test,lint,docs]"' in ci
    [test] = bash_blocks("Test")
    for command in test.strip().split(" && "):
        assert command in ci
    [docs] = bash_blocks("Build the docs")
    assert docs.split("#")[0].strip() in ci


def test_docs_pages_the_readme_names_are_in_the_docs_toctree() -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    pages = re.findall(r"\]\(docs/([a-z-]+)\.md\)", README)
    assert pages
    assert [p for p in pages if f"\n{p}\n" not in index] == []
