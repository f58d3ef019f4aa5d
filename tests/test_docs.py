"""The README documents what the code does: every config field, the main command, the test command."""

from __future__ import annotations

from pathlib import Path

from autointerp.config import Config

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_config_field_is_in_the_readme_table():
    for name, field in Config.model_fields.items():
        assert f"| `{name}` |" in README, f"README's configuration table lacks {name}"
        assert field.description, f"config field {name} has no description"


def test_readme_shows_the_main_and_test_commands():
    assert "autointerp run --layer 13" in README
    assert "python -m pytest -q" in README
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0" in ci and 'pip install -e ".[test]"' in ci and "python -m pytest -q" in ci
    assert "pip install torch==2.13.0" in README and 'pip install -e ".[test]"' in README
