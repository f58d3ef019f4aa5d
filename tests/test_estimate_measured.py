"""The LLM estimate uses the tokens per call measured on earlier calls of the same profile, says when it is a guess,
and the run summary sets it against what the run used."""

from __future__ import annotations

import json

import pytest

from autointerp.testing.server import FakeOpenAIServer
from autointerp.pipeline.measured import compare


def test_compare_scales_the_estimate_to_the_units_done():
    estimate = {"units": 10, "calls": 20, "tokens_in": 1000, "tokens_out": 200, "cost_usd": 0.01, "measured": True}
    usage = {"calls": 8, "tokens_in": 500, "tokens_out": 100, "cost_usd": 0.0}
    versus = compare(estimate, usage, units_done=4)
    assert versus["calls"] == {"estimate": 8.0, "actual": 8, "error": 0.0}
    assert versus["tokens_in"]["error"] == pytest.approx(-0.2)
    assert versus["cost_usd"]["error"] is None and versus["measured"] is True
    assert compare(None, usage, 4) is None and compare(estimate, usage, 0) is None


def test_second_run_estimates_from_the_first_runs_calls(cli, tiny_checkpoints, text_corpus, isolated, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test-abcdefghijklmnopqrstuvwx")
    args = ["run", "--layer", "1", "--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus),
            "--units", "0:6", "--simulator", "local"]
    with FakeOpenAIServer() as server:
        (isolated / "autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\napi_key_env = "FAKE_KEY"\n'
            "price_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n")
        code, out, err = cli(*args, "--format", "json")
        assert code == 0, err
        first, first_err = json.loads(out), err
        code, out, err = cli(*args, "--fresh", "--format", "json")
        assert code == 0, err
        second = json.loads(out)
        code, table, err = cli(*args, "--fresh")
        assert code == 0, err
    assert first["llm_estimate"]["basis"] == {"simulator": "guess: counted from the prompts"}
    assert first["llm_estimate"]["measured"] is False and "simulator: guess" in first_err
    assert "simulator: measured over" in err
    calls = first["llm_usage"]["calls"]
    assert calls >= 5 and second["llm_estimate"]["basis"] == {"simulator": f"measured over {calls} earlier calls"}
    assert second["llm_estimate"]["measured"] is True
    versus = second["llm_estimate_vs_actual"]
    assert versus["calls"]["actual"] == second["llm_usage"]["calls"]
    assert versus["tokens_out"]["actual"] == second["llm_usage"]["tokens_out"]
    # the same deterministic server: measured tokens per call predict the second run to within rounding
    assert abs(versus["tokens_out"]["error"]) < 0.02 and abs(versus["tokens_in"]["error"]) < 0.02
    assert abs(versus["tokens_out"]["error"]) <= abs(first["llm_estimate_vs_actual"]["tokens_out"]["error"])
    assert "LLM estimate (measured) vs actual for 6 units" in table
