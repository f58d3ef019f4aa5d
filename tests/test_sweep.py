"""Sweeps end to end on a tiny model: shared captures, budget stops and the night's report, failures with reasons and
a cap on retries, shards merged equal to the whole, the Ray path equal to the single-process one."""

from __future__ import annotations

import json

import pytest
import sqlite_utils

from autointerp.testing.server import FakeOpenAIServer
from autointerp.sweep import run_sweep, sweep_report, sweep_status


@pytest.fixture
def tiny(tiny_checkpoints):
    return str(tiny_checkpoints["opt"])


def write_plan(path, model, corpus, jobs: str, db="sweep.db", defaults: str = "", budget: str = "") -> str:
    path.write_text(f'[defaults]\nmodel = "{model}"\ncorpus = "{corpus}"\ntokens = 1500\nunits = "0:6"\n'
                    f'db = "{db}"\n{defaults}\n[budget]\n{budget}\n{jobs}')
    return str(path)


TWO_BY_TWO = '[jobs.a]\nlayers = "0:2"\n\n[jobs.b]\nlayers = "1:3"\nunits = "2:8"\n'


def results(db) -> set[tuple]:
    """Every (layer, unit, explainer, explanation, score) of a results file."""
    rows = sqlite_utils.Database(db).execute(
        "SELECT layer, unit, explainer, role, explanation, round(score, 6) FROM explanation_scores").fetchall()
    return set(rows)


def explained(d) -> int:
    """Explanations proper (not the shuffled and empty controls scored beside each one)."""
    return d.execute("SELECT COUNT(*) FROM explanations WHERE role = 'explanation'").fetchone()[0]


def assert_each_unit_once(db):
    d = sqlite_utils.Database(db)
    dupes = d.execute("SELECT run_id, unit_id, COUNT(*) FROM explanations WHERE role = 'explanation' GROUP BY 1, 2 "
                      "HAVING COUNT(*) > 1").fetchall()
    assert dupes == []
    assert d.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_jobs_sharing_a_layer_capture_it_once_and_a_rerun_does_nothing(tiny, text_corpus, isolated, cli):
    plan = write_plan(isolated / "p.toml", tiny, text_corpus,
                      '[jobs.a]\nlayers = "1"\n\n[jobs.b]\nlayers = "1"\nsimulator = "baseline"\nunits = "0:3"\n'
                      '[jobs.c]\nlayers = "2"\n')
    first = run_sweep(plan)
    assert (first.status, first.captures) == ("done", 2)  # layer 1 once for a and b (two runs), layer 2 once for c
    assert first.units_done == 6 + 3 + 6
    code, out, err = cli("sweep", "status", plan, "--format", "json")
    status = json.loads(out)
    assert code == 0 and status["done"] is True and status["lease_holder"] is None
    assert [(j["name"], j["units_done"], j["units_failed"], j["units_todo"]) for j in status["jobs"]] == [
        ("a", 6, 0, 0), ("b", 3, 0, 0), ("c", 6, 0, 0)]
    again = run_sweep(plan)
    assert (again.status, again.units_done, again.captures) == ("done", 0, 0)
    d = sqlite_utils.Database(isolated / "sweep.db")
    assert d["runs"].count == 3 and explained(d) == 15
    # b's units, taken from the capture a's run made, are exactly a's: one capture, the same windows and scores
    same = d.execute("SELECT COUNT(*) FROM explanation_scores x JOIN explanation_scores y ON x.unit_id = y.unit_id "
                     "AND x.run_id < y.run_id AND x.layer = 1 WHERE x.explanation = y.explanation "
                     "AND x.score IS y.score AND x.role = 'explanation' AND y.role = 'explanation'").fetchone()[0]
    assert same == 3
    code, out, _ = cli("leaderboard", "--db", str(isolated / "sweep.db"), "--format", "json")
    assert code == 0 and len(json.loads(out)) == 12  # a sweep's results are ordinary runs (best per unit)


def test_budget_stop_leaves_the_rest_and_the_report_shows_the_night(tiny, text_corpus, isolated, cli, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test-SECRET-abcdefghijklmnopqrstuvwxyz")
    with FakeOpenAIServer() as server:
        profile = (f'[defaults.models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\n'
                   'api_key_env = "FAKE_KEY"\nprice_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n')
        jobs = '[jobs.a]\nlayers = "0:2"\nsimulator = "local"\n'
        plan = write_plan(isolated / "p.toml", tiny, text_corpus, jobs + profile, budget="per_night_calls = 5\n")
        code, out, err = cli("sweep", "run", plan, "--format", "json")
        first = json.loads(out)
        assert code == 0 and first["status"] == "stopped" and first["reason"].startswith("budget"), err
        assert 0 < first["units_done"] < 12
        status = sweep_status(plan)
        assert status["done"] is False and status["spend"]["calls"] <= 5
        assert status["jobs"][0]["units_todo"] == 12 - first["units_done"]
        assert status["jobs"][0]["estimate_left"]["cost_usd"] > 0
        report = sweep_report(plan)
        assert report["units_explained"] == first["units_done"] and report["spend"]["calls"] == status["spend"]["calls"]
        assert report["spend"]["cost_usd"] > 0 and report["best_scores_changed"] >= 1
        assert report["sessions"][-1]["reason"].startswith("budget")
        (own,) = [m for m in report["scores"] if m["role"] == "explanation"]  # the night's means beside the score
        assert own["job"] == "a" and own["explanations"] == first["units_done"] and own["fuzzed"] > 0
        assert own["fuzzing_mean"] is not None and 0 <= own["fuzzing_mean"] <= 1
        code, text, _ = cli("sweep", "report", plan)
        assert code == 0 and f"units newly explained: {first['units_done']}" in text and "LLM calls" in text
        assert f"a explanations: {first['units_done']}; mean score" in text and "chance 0.5" in text
        # the same night, the same cap: nothing more is spent
        assert run_sweep(plan).units_done == 0 and sweep_status(plan)["spend"]["calls"] == status["spend"]["calls"]
        # a larger cap (the plan edited): the next start does the rest, nothing twice
        write_plan(isolated / "p.toml", tiny, text_corpus, jobs + profile, budget="per_night_calls = 500\n")
        rest = run_sweep(plan)
        assert rest.status == "done" and rest.units_done == 12 - first["units_done"]
    assert sweep_status(plan)["done"] is True
    assert_each_unit_once(isolated / "sweep.db")
    assert explained(sqlite_utils.Database(isolated / "sweep.db")) == 12
    dump = (isolated / "sweep.db").read_bytes()
    assert b"SECRET" not in dump


def test_a_failing_job_is_recorded_the_others_go_on_and_retries_stop_at_the_cap(tiny, text_corpus, isolated, cli):
    # the failure's reason holds the model path: rich markup and an escape sequence, shown inert by `sweep status`
    jobs = '[jobs.broken]\nlayers = "0"\nmodel = "/no/such/[/bold]model\\u001b[2J"\n\n[jobs.ok]\nlayers = "1"\n'
    plan = write_plan(isolated / "p.toml", tiny, text_corpus, jobs)
    (isolated / "p.toml").write_text("max_attempts = 2\n" + (isolated / "p.toml").read_text())
    first = run_sweep(plan)
    assert first.status == "stopped" and first.units_done == 6
    assert [f["job"] for f in first.failures] == ["broken"] and "/no/such/[/bold]model" in first.failures[0]["reason"]
    assert run_sweep(plan).failures  # retried on the next start
    third = run_sweep(plan)
    assert third.failures == [] and third.status == "done"  # 2 failures: left alone, the plan counts as done
    status = sweep_status(plan)
    broken = next(j for j in status["jobs"] if j["name"] == "broken")
    assert broken["gave_up"] and "/no/such/[/bold]model" in broken["last_failure"] and status["done"]
    code, out, _ = cli("sweep", "report", plan, "--format", "json")
    assert len(json.loads(out)["new_failures"]) == 2
    for command in (("sweep", "status", plan), ("sweep", "report", plan)):
        code, out, err = cli(*command)
        assert code == 0 and "\x1b" not in out + err, command


def test_two_shards_do_exactly_the_work_of_the_whole_and_merge_into_it(tiny, text_corpus, isolated, cli):
    plan = write_plan(isolated / "p.toml", tiny, text_corpus, TWO_BY_TWO, db="whole.db")
    whole = run_sweep(plan)
    assert whole.status == "done" and whole.units_done == 2 * 6 + 2 * 6
    plan_s = write_plan(isolated / "s.toml", tiny, text_corpus, TWO_BY_TWO, db="unused.db")
    (isolated / "s.toml").write_text((isolated / "s.toml").read_text().replace('db = "unused.db"\n', ""))
    done = []
    for i in (0, 1):
        code, out, err = cli("sweep", "run", plan_s, "--shard", f"{i}/2", "--db", f"shard{i}.db", "--format", "json")
        assert code == 0, err
        done.append(json.loads(out)["units_done"])
    assert all(done) and sum(done) == whole.units_done
    shard_runs = [{(r["layer"], r["explainer"], r["run_key"]) for r in sqlite_utils.Database(
        isolated / f"shard{i}.db")["runs"].rows} for i in (0, 1)]
    assert not shard_runs[0] & shard_runs[1]  # disjoint
    code, out, err = cli("db", "merge", "merged.db", "shard0.db", "shard1.db", "--format", "json")
    assert code == 0, err
    assert results(isolated / "merged.db") == results(isolated / "whole.db")
    assert cli("db", "merge", "merged.db", "shard0.db")[0] == 0  # merging again adds nothing
    assert results(isolated / "merged.db") == results(isolated / "whole.db")
    assert explained(sqlite_utils.Database(isolated / "merged.db")) == whole.units_done
    assert_each_unit_once(isolated / "merged.db")


def test_stop_time_stops_before_any_unit_and_the_next_start_does_them(tiny, text_corpus, isolated, monkeypatch):
    from datetime import datetime, timedelta, timezone

    import autointerp.sweep.engine as engine

    plan = write_plan(isolated / "p.toml", tiny, text_corpus, '[jobs.a]\nlayers = "1"\n', budget='until = "07:00"\n')
    real = engine.deadline
    monkeypatch.setattr(engine, "deadline", lambda until: datetime.now(timezone.utc) - timedelta(seconds=1))
    stopped = run_sweep(plan)
    assert (stopped.status, stopped.units_done) == ("stopped", 0) and stopped.reason.startswith("stop time")
    assert sweep_status(plan)["jobs"][0]["units_todo"] == 6
    monkeypatch.setattr(engine, "deadline", real)
    assert run_sweep(plan).units_done == 6


@pytest.mark.slow
def test_ray_path_gives_the_single_process_results(tiny, text_corpus, isolated):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    plan = write_plan(isolated / "p.toml", tiny, text_corpus, TWO_BY_TWO, db="single.db")
    single = run_sweep(plan)
    plan_r = write_plan(isolated / "r.toml", tiny, text_corpus, TWO_BY_TWO, db="ray.db")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(plan_r, ray="local")
    finally:
        ray.shutdown()
    assert (on_ray.status, on_ray.units_done, on_ray.captures) == ("done", single.units_done, single.captures)
    assert results(isolated / "ray.db") == results(isolated / "single.db")
