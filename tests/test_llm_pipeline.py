"""The pipeline with LLM components over the real openai client, against a local server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
import sqlite_utils

from autointerp.testing.server import (
    FakeOpenAIServer,
    FaultInjector,
    Reply,
    default_handler,
)

KEY = "sk-test-SECRET-abcdefghijklmnopqrstuvwxyz"




def write_config(path, server, name="local", **extra):
    lines = [f"[models.{name}]", 'model = "fake-model"', f'base_url = "{server.base_url}"',
             'api_key_env = "FAKE_KEY"', "price_in_per_mtok = 1.0", "price_out_per_mtok = 2.0"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny(tiny_checkpoints):
    return str(tiny_checkpoints["opt"])


def test_llm_simulator_run_logs_every_call_and_never_the_key(cli, tiny, text_corpus, isolated, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        write_config(isolated / "autointerp.toml", server)
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus),
                             "--units", "0:4", "--simulator", "local", "--format", "json")
        assert code == 0, err
        requests = list(server.requests)
    summary = json.loads(out)
    assert summary["simulator"] == "local" and summary["units_done"] == 4
    est = summary["llm_estimate"]
    assert est["units"] == 4 and est["token_counting"] in ("tiktoken", "file", "estimate") and est["cost_usd"] > 0
    assert "LLM estimate for 4 units" in err
    db = sqlite_utils.Database(isolated / "autointerp.db")
    calls = list(db["llm_calls"].rows)
    assert len(calls) == len(requests) > 0
    assert all(c["purpose"] == "simulate" and c["error"] is None and c["tokens_in"] > 0 for c in calls)
    assert db.execute("SELECT SUM(cost_usd) FROM llm_calls").fetchone()[0] > 0
    # 10 test windows per unit at most 10 per request: at most 2 simulator calls per unit and explanation, and each
    # unit is also scored with its two controls (a shuffled and an empty explanation)
    assert len(calls) <= 2 * 4 * 3
    # every call is tied to its unit and counted on the explanation (or control) it was made for
    assert all(c["unit_id"] is not None for c in calls)
    assert db.execute("SELECT SUM(llm_calls) FROM explanations").fetchone()[0] == len(calls)
    assert est["calls"] == len(calls)  # the estimate printed before spending matches what was spent
    usage = summary["llm_usage"]
    assert usage["calls"] == len(calls) and usage["per_unit"]["calls"] == len(calls) / 4
    assert usage["tokens_in"] == sum(c["tokens_in"] for c in calls)
    dump = "\n".join(str(list(db[t].rows)) for t in db.table_names()) + out + err
    assert KEY not in dump and "SECRET" not in dump


def test_llm_failures_end_units_failed_and_the_run_goes_on(cli, tiny, text_corpus, isolated, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer(handler=FaultInjector(rate_500=1.0, seed=1)) as server:
        write_config(isolated / "autointerp.toml", server, max_retries=1)
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus),
                             "--units", "0:3", "--simulator", "local", "--format", "json")
    assert code == 0, err
    units = json.loads(out)["units"]
    assert [u["status"] for u in units] == ["failed"] * 3
    db = sqlite_utils.Database(isolated / "autointerp.db")
    # the explainer's outcome (the baseline's: done) and the scoring's outcome are kept apart
    rows = list(db["explanations"].rows)
    assert {(r["status"], r["scoring"]) for r in rows} == {("done", "failed")}
    assert all(r["scoring_reason"].startswith("scoring failed: no test window could be simulated") for r in rows)
    assert all(r["reason"].startswith("scoring failed") and r["status"] == "failed" for r in db["unit_runs"].rows)
    # a pair whose units all failed is listed, with its counts
    code, out, _ = cli("leaderboard", "--by", "explainer", "--format", "json")
    (pair,) = json.loads(out)
    assert (pair["explainer"], pair["simulator"], pair["failed"], pair["done"], pair["mean"]) == \
        ("baseline", "local", 3, 0, None)
    code, out, _ = cli("leaderboard", "--by", "explainer")
    assert code == 0 and "baseline / local" in out


def test_budget_stops_cleanly_and_the_next_run_goes_on(cli, tiny, text_corpus, isolated, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        write_config(isolated / "autointerp.toml", server)
        args = ["run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:6",
                "--simulator", "local", "--format", "json"]
        code, out, err = cli(*args, "--max-calls", "3")
        assert code == 0, err
        first = json.loads(out)
        assert first["stopped"] and "call budget" in first["stopped"] and first["units_done"] < 6
        code, out, err = cli(*args)
    second = json.loads(out)
    assert second["units_done"] == 6 and second["units_skipped"] == first["units_done"]
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert db["explanations"].count_where("role = 'explanation'") == 6
    assert db["explanations"].count_where("role = 'control'") == 2 * 6  # a shuffled and an empty one per unit


def test_a_stopped_run_resumes_under_other_operational_settings(cli, tiny, text_corpus, isolated, monkeypatch):
    """Timeouts, concurrency and retries are not part of the run's identity; the temperature is."""
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        args = ["run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:4",
                "--simulator", "local", "--format", "json"]
        write_config(isolated / "autointerp.toml", server)
        code, out, err = cli(*args, "--max-calls", "2")
        assert code == 0 and json.loads(out)["stopped"], err
        write_config(isolated / "autointerp.toml", server, timeout_s=300, concurrency=1, max_retries=0,
                     tokens_per_s=50)
        code, out, err = cli(*args)
        assert code == 0, err
        resumed = json.loads(out)
        write_config(isolated / "autointerp.toml", server, temperature=0.5)
        code, out, err = cli(*args)
        assert code == 0, err
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert resumed["units_skipped"] >= 1 and resumed["units_done"] == 4
    assert json.loads(out)["units_skipped"] == 0 and db["runs"].count == 2  # another temperature: another run


def test_missing_key_and_unknown_profile_are_usage_errors(cli, tiny, isolated, monkeypatch):
    monkeypatch.delenv("FAKE_KEY", raising=False)
    (isolated / "autointerp.toml").write_text('[models.remote]\nmodel = "m"\nbase_url = "https://example.invalid/v1"\n'
                                              'api_key_env = "FAKE_KEY"\n')
    code, _, err = cli("run", "--layer", "1", "--model", tiny, "--simulator", "remote")
    assert code == 2 and "FAKE_KEY" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "--layer", "1", "--model", tiny, "--simulator", "nope")
    assert code == 2 and "unknown simulator 'nope'" in err and "baseline" in err and "remote" in err


def test_models_check(cli, isolated, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        write_config(isolated / "autointerp.toml", server)
        code, out, err = cli("models", "--check", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["name"] == "local" and row["check"]["reachable"] is True and row["check"]["logprobs"] is True
    assert KEY not in out


def test_llm_explainer_and_simulator_run_the_whole_loop(cli, tiny, text_corpus, isolated, monkeypatch):
    """Explainer agent (tools, revision) and simulator both over HTTP; every call stored; baseline ranked too."""
    monkeypatch.setenv("FAKE_KEY", KEY)

    def hypothesis_tester(request):
        """First explainer turn: test a hypothesis with run_text and look at the statistics; then answer."""
        if request.get("tools") and not any(m.get("role") == "tool" for m in request["messages"]):
            return Reply(tool_calls=[("run_text", {"text": "def f(self):\n    return self.x"}),
                                     ("statistics", {})])
        return default_handler(request)

    with FakeOpenAIServer(handler=hypothesis_tester) as server:
        write_config(isolated / "autointerp.toml", server)
        base = ["run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:3"]
        code, out, err = cli(*base, "--explainer", "local", "--simulator", "local", "--format", "json")
        assert code == 0, err
        summary = json.loads(out)
        assert summary["explainer"] == "local" and summary["baseline"] is False
        assert {u["status"] for u in summary["units"]} <= {"done", "gave_up"}
        assert all(u["explanation"] for u in summary["units"])
        assert cli(*base)[0] == 0  # the baseline on the same units, for the comparison
    db = sqlite_utils.Database(isolated / "autointerp.db")
    purposes = {r[0] for r in db.execute("SELECT DISTINCT purpose FROM llm_calls").fetchall()}
    assert "simulate" in purposes and len(purposes) >= 2
    details = [json.loads(r["details"]) for r in db["explanations"].rows_where("explainer = 'local'")]
    assert all(d["llm_calls"] >= 1 and d["tool_calls"] >= 2 for d in details)
    # the tool results (the subject model's activations on the LLM's own text) went back to the LLM and are stored
    # every call (explainer, validations, test simulations, controls) is on its unit and counted on its explanation
    assert db.execute("SELECT COUNT(*) FROM llm_calls WHERE unit_id IS NULL").fetchone()[0] == 0
    assert db.execute("SELECT SUM(llm_calls) FROM explanations").fetchone()[0] == db["llm_calls"].count
    tool_turns = [m for r in db["llm_calls"].rows for m in json.loads(r["messages"]) if m.get("role") == "tool"]
    assert any("self" in m["content"] for m in tool_turns)
    code, out, _ = cli("leaderboard", "--by", "explainer", "--format", "json")
    pairs = json.loads(out)
    assert {r["explainer"] for r in pairs if r["role"] == "explanation"} == {"local", "baseline"}
    assert {r["explainer"] for r in pairs if r["role"] == "control"} == {
        "control:shuffled:local", "control:shuffled:baseline", "control:empty"}
    assert (isolated / "autointerp.db.agent.sqlite").exists()  # agent checkpoints live beside, not inside, the DB


def test_explain_and_score_without_revision_takes_at_most_4_calls_per_unit(cli, tiny, text_corpus, isolated,
                                                                          monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        write_config(isolated / "autointerp.toml", server)
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus),
                             "--units", "0:5", "--explainer", "local", "--simulator", "local", "--revise-rounds", "0",
                             "--max-tool-calls", "0", "--no-controls", "--format", "json")
        assert code == 0, err
        requests = len(server.requests)
    assert requests <= 4 * 5
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert db["llm_calls"].count == requests
    assert json.loads(out)["llm_estimate"]["calls"] == requests


def test_flaky_server_every_unit_ends_with_a_status_and_the_key_never_leaks(cli, tiny, text_corpus, isolated,
                                                                            monkeypatch, caplog):
    """20% errors (429 with Retry-After / 500) and 10% garbage: nothing crashes, every unit ends done, failed or
    gave_up (failed ones with a reason), and the API key is nowhere: DB, agent checkpoints, logs, outputs."""
    monkeypatch.setenv("FAKE_KEY", KEY)
    flaky = FaultInjector(rate_429=0.1, rate_500=0.1, rate_garbage=0.1, retry_after_s=0.01, seed=3)
    with FakeOpenAIServer(handler=flaky) as server:
        write_config(isolated / "autointerp.toml", server, max_retries=2)
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus),
                             "--units", "0:10", "--explainer", "local", "--simulator", "local", "--format", "json")
    assert code == 0, err
    units = json.loads(out)["units"]
    assert len(units) == 10 and {u["status"] for u in units} <= {"done", "failed", "gave_up"}
    db = sqlite_utils.Database(isolated / "autointerp.db")
    for row in db["explanations"].rows:
        assert row["status"] == "done" or row["reason"], row
    assert db.execute("SELECT COUNT(*) FROM llm_calls WHERE attempts > 1 OR error IS NOT NULL").fetchone()[0] > 0
    # failed calls too are on their unit and counted on the explanation they were made for
    assert db.execute("SELECT COUNT(*) FROM llm_calls WHERE unit_id IS NULL").fetchone()[0] == 0
    assert db.execute("SELECT SUM(llm_calls) FROM explanations").fetchone()[0] == db["llm_calls"].count
    everything = out + err + caplog.text
    for path in isolated.glob("autointerp.db*"):
        everything += path.read_bytes().decode("latin-1")
    assert KEY not in everything and "SECRET" not in everything


def test_switching_explainer_profiles_changes_only_the_endpoint_and_model(cli, tiny, text_corpus, isolated,
                                                                          monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer(model="model-a") as a, FakeOpenAIServer(model="model-b") as b:
        (isolated / "autointerp.toml").write_text(
            f'[models.alpha]\nmodel = "model-a"\nbase_url = "{a.base_url}"\napi_key_env = "FAKE_KEY"\n'
            f'[models.beta]\nmodel = "model-b"\nbase_url = "{b.base_url}"\napi_key_env = "FAKE_KEY"\n')
        base = ["run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:3",
                "--simulator", "alpha", "--revise-rounds", "0", "--max-tool-calls", "0"]
        assert cli(*base, "--explainer", "alpha")[0] == 0
        n_a = len(a.requests)
        assert cli(*base, "--explainer", "beta")[0] == 0
        beta_requests = list(b.requests)
        alpha_second = list(a.requests)[n_a:]
        assert cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:3",
                   "--simulator", "alpha")[0] == 0  # the baseline explainer, same simulator
    # the second run sent its 3 explainer requests to beta's endpoint with beta's model, and only simulations to alpha
    assert len(beta_requests) == 3 and {r["model"] for r in beta_requests} == {"model-b"}
    assert alpha_second and all(r["model"] == "model-a" and "logprobs" in r for r in alpha_second)
    db = sqlite_utils.Database(isolated / "autointerp.db")
    by_profile = {(r[0], r[1], r[2]) for r in db.execute(
        "SELECT profile, model, purpose FROM llm_calls").fetchall()}
    assert ("beta", "model-b", "explain") in by_profile and not any(p == "beta" and pur != "explain"
                                                                    for p, _, pur in by_profile)
    code, out, _ = cli("leaderboard", "--by", "explainer", "--format", "json")
    ranked = json.loads(out)
    assert {r["explainer"] for r in ranked if r["role"] == "explanation"} == {"alpha", "beta", "baseline"}
    assert ranked == sorted(ranked, key=lambda r: -(r["mean"] if r["mean"] is not None else -2))


def test_all_at_once_simulator_run_reads_echoed_prompts_and_generates_nothing(cli, tiny, text_corpus, isolated,
                                                                               monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    with FakeOpenAIServer() as server:
        write_config(isolated / "autointerp.toml", server, simulator_method="all_at_once")
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus),
                             "--units", "0:4", "--simulator", "local", "--format", "json")
        assert code == 0, err
        requests = list(server.requests)
    summary = json.loads(out)
    assert summary["units_done"] == 4 and all(u["status"] == "done" for u in summary["units"])
    db = sqlite_utils.Database(isolated / "autointerp.db")
    calls = list(db["llm_calls"].rows)
    simulate = [c for c in calls if c["purpose"] == "simulate"]
    # the probes, once per run: the echo one (with llama.cpp's empty grammar, which this vLLM-like server ignores),
    # then one asking for max_tokens 0, which it honours
    assert [c["purpose"] for c in calls].count("simulate-probe") == 2 and len(calls) == len(requests)
    scored = db["explanations"].count  # each unit's explanation and its controls, each simulated once on test
    assert scored >= 4 and scored <= len(simulate) <= 2 * scored  # 10 test windows: one or two requests each
    assert all(c["tokens_out"] == 0 and c["error"] is None for c in simulate)
    echoed = [r for r in requests if r.get("echo")]
    assert len(echoed) == len(requests) - 1 and all(r["max_tokens"] == 0 for r in echoed[1:])
    assert json.loads(simulate[0]["messages"])[0]["role"] == "prompt"
    dump = "\n".join(str(list(db[t].rows)) for t in db.table_names()) + out + err
    assert KEY not in dump
