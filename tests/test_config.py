"""The config tree: one name per setting, sectioned or flat TOML, deprecated names, flags made from the fields."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.config import DEPRECATED, SECTIONS, Config, load_config


def test_every_setting_is_in_exactly_one_section():
    names = [n for section in SECTIONS.values() for n in section]
    assert sorted(names) == sorted(set(Config.model_fields) - {"models"})


def test_sectioned_and_flat_toml_give_the_same_config(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('model = "m"\ntokens = 2048\nexplainer = "mini"\nrevise_rounds = 2\nsimulator = "mini"\n'
                    "max_usd = 1.5\n[models.mini]\nmodel = \"gpt-4o-mini\"\n")
    tree = tmp_path / "tree.toml"
    tree.write_text('[subject]\nmodel = "m"\n[capture]\ntokens = 2048\n[explainer]\nname = "mini"\nrevise_rounds = 2\n'
                    '[simulator]\nname = "mini"\n[budget]\nmax_usd = 1.5\n[models.mini]\nmodel = "gpt-4o-mini"\n')
    assert load_config(flat) == load_config(tree)
    assert load_config(tree).explainer == "mini" and load_config(tree).tokens == 2048


def test_a_setting_in_the_wrong_section_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture]\nrevise_rounds = 2\n")
    with pytest.raises(Exception, match="capture.revise_rounds"):
        load_config(bad)


@pytest.mark.parametrize("old", sorted(DEPRECATED))
def test_deprecated_names_are_read_with_a_warning(tmp_path, old):
    file = tmp_path / "old.toml"
    file.write_text(f"{old} = 3\n")
    with pytest.warns(FutureWarning, match=f"'{old}' is deprecated, write '{DEPRECATED[old]}'"):
        cfg = load_config(file)
    assert getattr(cfg, DEPRECATED[old]) == 3


def test_run_flags_and_help_come_from_the_config_fields():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("batch_size", "revise_rounds", "max_unit_tokens", "windows_per_request", "max_usd"):
        flag = "--" + name.replace("_", "-")
        assert flag in result.output
        assert Config.model_fields[name].description.split(";")[0].rstrip(".") in result.output
    assert "(default: 64)" in result.output  # the window's default, read from the field


def test_the_rooms_own_defaults_agree_with_the_config():
    """Each room keeps its own config (capture's, the agent's); a setting has one default wherever it is read."""
    from autointerp.agent.graph import AgentLimits
    from autointerp.subject.capture import CaptureConfig

    capture, limits = CaptureConfig(layers=[0]), AgentLimits()
    for name in ("window", "top_k", "n_random", "batch_size", "threshold", "seed"):
        assert getattr(capture, name) == Config.model_fields[name].default, name
    for name in ("revise_rounds", "max_tool_calls", "max_unit_tokens", "best_of"):
        assert getattr(limits, name) == Config.model_fields[name].default, name
