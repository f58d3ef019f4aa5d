"""The LLM estimate uses the tokens per call measured on earlier calls of the same profile, says when it is a guess,
and the run summary sets it against what the run used."""

from __future__ import annotations

import json

import pytest

from autointerp.testing.server import FakeOpenAIServer
from autointerp.pipeline.estimate import compare


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
    guess = "guess: counted from the prompts"
    assert first["llm_estimate"]["basis"] == {"score": guess, "controls": guess}
    assert first["llm_estimate"]["measured"] is False and "score: guess" in first_err
    assert "score: measured over" in err
    calls = first["llm_usage"]["calls"]
    measured = f"measured over {calls} earlier calls"
    assert calls >= 5 and second["llm_estimate"]["basis"] == {"score": measured, "controls": measured}
    assert second["llm_estimate"]["measured"] is True
    versus = second["llm_estimate_vs_actual"]
    assert versus["calls"]["actual"] == second["llm_usage"]["calls"]
    assert versus["tokens_out"]["actual"] == second["llm_usage"]["tokens_out"]
    # the same deterministic server: measured tokens per call predict the second run to within rounding
    assert abs(versus["tokens_out"]["error"]) < 0.02 and abs(versus["tokens_in"]["error"]) < 0.02
    assert abs(versus["tokens_out"]["error"]) <= abs(first["llm_estimate_vs_actual"]["tokens_out"]["error"])
    assert "LLM estimate (measured) vs actual for 6 units" in table


def test_a_dry_run_estimates_by_purpose_and_calls_and_writes_nothing(cli, tiny_checkpoints, text_corpus, isolated,
                                                                      monkeypatch):
    """``run --estimate``: calls, tokens and dollars per purpose and per unit, no request sent, no file written."""
    monkeypatch.setenv("FAKE_KEY", "sk-test-abcdefghijklmnopqrstuvwx")
    args = ["run", "--layer", "1", "--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus),
            "--units", "0:20", "--explainer", "local", "--simulator", "local", "--no-controls"]
    with FakeOpenAIServer() as server:
        (isolated / "autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\napi_key_env = "FAKE_KEY"\n'
            "price_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n")
        code, out, err = cli(*args, "--estimate", "--format", "json")
        assert code == 0, err
        e = json.loads(out)
        code, table, err = cli(*args, "--controls", "--controls-units", "4", "--estimate")
        assert code == 0, err
        assert server.requests == []  # no LLM call
    assert not (isolated / "autointerp.db").exists()  # nothing written
    assert set(e["by_purpose"]) == {"explain", "validate", "score"} and e["controlled_units"] == 0
    assert e["units"] == 20 and e["calls"] == sum(p["calls"] for p in e["by_purpose"].values())
    assert e["cost_usd"] == pytest.approx(sum(p["cost_usd"] for p in e["by_purpose"].values()))
    assert e["per_unit"]["cost_usd"] == pytest.approx(e["cost_usd"] / 20, abs=1e-6)
    assert "controls" in table and "20 units (4 with controls)" in table


def test_controls_go_to_a_seeded_sample_topped_up_on_resume():
    from autointerp.scoring.controls import control_sample

    live = list(range(40))
    first = control_sample(live, set(), 16, seed=3)
    assert len(first) == 16 == len(set(first)) and first == control_sample(live, set(), 16, seed=3)
    assert first != control_sample(live, set(), 16, seed=4)
    assert control_sample(live, set(first[:10]), 16, seed=3) == first[10:]  # a resumed run tops up, redoes none
    assert control_sample(live, set(first), 16, seed=3) == []
    assert sorted(control_sample(live, set(), 0, seed=3)) == live  # 0: every unit
    assert sorted(control_sample(live[:5], set(), 16, seed=3)) == live[:5]  # fewer units than the sample
