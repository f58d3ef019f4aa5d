"""The docs say what the code does: the generated references are current, the README is a short front door that
shows the install and test commands CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from autointerp.cli.reference import GENERATED
from autointerp.config import Config

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_references_are_current(name):
    assert (ROOT / "docs" / name).read_text() == GENERATED[name](), (
        f"docs/{name} is stale: run `python -m autointerp.cli.reference` from the repository root")


def test_every_setting_is_described_and_documented():
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Config.model_fields.items():
        assert field.description, f"config field {name} has no description"
        assert name == "models" or f"| `{name}` |" in reference


def test_readme_is_a_short_front_door_with_the_ci_commands():
    assert len(README.splitlines()) <= 200
    assert "autointerp run --layer 13" in README
    ci = (ROOT / ".ci" / "run").read_text()
    for step in ("pip install torch==2.13.0", 'pip install -e ".[test]"', "python -m pytest -q"):
        assert step in ci and step in README, step


def test_readme_and_docs_links_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in _links(page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _links(text: str) -> list[str]:
    import re

    return [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if not t.startswith(("http", "mailto"))]


def test_every_model_profile_setting_is_documented():
    from autointerp.llm.profiles import ModelProfile

    page = (ROOT / "docs" / "llm.md").read_text()
    for name, field in ModelProfile.model_fields.items():
        assert field.description and f"| `{name}` |" in page, f"docs/llm.md lacks the profile setting {name}"
