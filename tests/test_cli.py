"""The real command, run in-process on a tiny checkpoint, then the SQLite file read back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from autointerp.agent.baseline import BaselineExplainer


@pytest.fixture
def tiny(tiny_checkpoints):
    return str(tiny_checkpoints["opt"])


def base_args(tiny, text_corpus, *more):
    return ["run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:6", *more]


def test_run_leaderboard_show_end_to_end(cli, tiny, text_corpus, isolated):
    code, out, err = cli(*base_args(tiny, text_corpus), "--format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert {"run_id", "db", "layer", "explainer", "simulator", "baseline", "units_total", "units_done", "units_skipped",
            "n_tokens", "mean_score", "median_score", "wall_s", "capture_s", "explain_s", "explain_cpu_s",
            "units"} <= set(summary)
    assert 0 < summary["explain_cpu_s"] and 0 < summary["explain_s"] <= summary["wall_s"]
    assert summary["baseline"] is True and summary["units_done"] == 6 and summary["n_tokens"] > 0
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert db["runs"].count == 1 and db["unit_runs"].count == 6
    assert db["explanations"].count_where("role = 'explanation'") == 6
    assert db["explanations"].count_where("role = 'control'") == 12  # a shuffled and an empty explanation per unit
    run = next(db["runs"].rows)
    assert run["status"] == "done" and run["model_hash"] and json.loads(run["config"])["layer"] == 1
    assert db.execute("SELECT COUNT(*) FROM scores s JOIN explanations e ON e.id = s.explanation_id "
                      "WHERE s.split = 'test' AND e.role = 'explanation'").fetchone()[0] == 6
    splits = {r[0] for r in db.execute("SELECT DISTINCT split FROM windows WHERE source = 'random'").fetchall()}
    assert splits == {"valid", "test"}

    code, out, _ = cli("leaderboard", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == len([u for u in summary["units"] if u["score"] is not None])
    assert rows == sorted(rows, key=lambda r: -r["score"])
    code, out, _ = cli("leaderboard", "--format", "csv", "--min-score", "0.2", "--layer", "1")
    assert code == 0 and out.splitlines()[0].startswith("layer,unit,kind,score")
    code, out, _ = cli("leaderboard", "--by", "explainer", "--format", "json")
    rows = json.loads(out)
    (row,) = [r for r in rows if r["role"] == "explanation"]
    assert row["explainer"] == "baseline" and row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert len([r for r in rows if r["role"] == "control"]) == 2  # the shuffled and the empty explanation
    code, out, _ = cli("show", "1/3")
    assert code == 0 and "unit 1/3" in out and "top windows" in out
    code, out, _ = cli("show", "1/3", "--format", "json")
    card = json.loads(out)
    assert card["unit"]["unit"] == 3
    # the run judged every explanation by detection and fuzzing; show gives the same values as the leaderboard
    (own,) = [e for e in card["explanations"] if e["role"] == "explanation"]
    stored = db.execute("SELECT scorer, balanced_accuracy, n_judged FROM judgements WHERE explanation_id = ? AND "
                        "split = 'test' ORDER BY id", [own["id"]]).fetchall()
    assert {s for s, _, _ in stored} == {"detection", "fuzzing"}
    for scorer, value, n in stored:
        assert (own[scorer]["balanced_accuracy"], own[scorer]["n_judged"]) == (value, n)
        assert own[scorer]["examples"] and own[scorer]["judge"] == "quoted"


def test_rerun_resumes_and_fresh_starts_over(cli, tiny, text_corpus, isolated):
    code, text, _ = cli(*base_args(tiny, text_corpus))
    assert code == 0
    code, out, _ = cli(*base_args(tiny, text_corpus), "--format", "json")
    assert code == 0 and json.loads(out)["units_skipped"] == 6 and json.loads(out)["units_done"] == 6
    for name in ("detection", "fuzzing"):  # the text summary counts the units without each score, as JSON has them
        without = sum(u[name] is None for u in json.loads(out)["units"])
        assert re.search(rf"{name}: mean (\d\.\d{{3}}|n/a), {without} units without one", text), text
    assert json.loads(out)["n_tokens"] > 0  # the no-op resume reports the tokens its run captured
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert db["runs"].count == 1 and db["explanations"].count_where("role = 'explanation'") == 6
    assert cli(*base_args(tiny, text_corpus), "--fresh")[0] == 0
    assert db["runs"].count == 2 and db["explanations"].count_where("role = 'explanation'") == 12


@pytest.fixture
def terminal_sigint():
    """Ctrl-C as in a terminal: Python's default SIGINT handler (a background job, as CI may run the tests,
    inherits SIGINT ignored, and then no signal would arrive)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class Interrupting(BaselineExplainer):
    """The baseline explainer, with a real Ctrl-C (SIGINT) arriving during the unit after ``stop_after`` units."""

    calls: list[int] = []
    stop_after: int | None = None

    async def explain(self, record, judge=None, *, tools=None, thread=""):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(5)  # cancelled by asyncio's SIGINT handler long before this ends
        self.calls.append(record.id.unit)
        return await super().explain(record, judge)


def test_interrupted_run_resumes_without_losing_or_redoing_units(cli, tiny, text_corpus, isolated, monkeypatch,
                                                                   terminal_sigint):
    import autointerp.pipeline as pipeline

    monkeypatch.setitem(pipeline.EXPLAINERS, "interrupting", lambda cfg, llm: Interrupting())

    Interrupting.calls, Interrupting.stop_after = [], 3
    args = base_args(tiny, text_corpus, "--explainer", "interrupting", "--units", "0:8")
    code, _, err = cli(*args)
    assert code == 130 and "run the same command again to resume" in err
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert [(r["status"], r["stop_reason"]) for r in db["runs"].rows] == [("stopped", "interrupted")]
    done_first = {r["unit_id"] for r in db["unit_runs"].rows}
    assert len(done_first) == 3
    Interrupting.stop_after = None
    code, out, err = cli(*args, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["units_skipped"] == 3
    assert sorted(Interrupting.calls) == list(range(8))  # every unit explained exactly once over both sessions
    assert db["unit_runs"].count == 8 and db["explanations"].count_where("role = 'explanation'") == 8 and db["runs"].count == 1
    assert next(db["runs"].rows)["status"] == "done"


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_layer_units_model_explainer(cli, tiny, text_corpus, isolated):
    one_line_error(*cli("run", "--layer", "7", "--model", tiny, "--corpus", str(text_corpus))[::2],
                   "--layer 7 is out of range", "0..2")
    one_line_error(*cli(*base_args(tiny, text_corpus)[:-2], "--units", "40:50")[::2], "out of range", "0..47")
    one_line_error(*cli(*base_args(tiny, text_corpus)[:-2], "--units", "a-b")[::2], "not understood")
    one_line_error(*cli("run", "--layer", "1", "--model", str(isolated / "nope"))[::2], "no such checkpoint")
    one_line_error(*cli("run", "--layer", "1", "--model", "no-such-org/no-such-model")[::2], "cannot load model")
    one_line_error(*cli(*base_args(tiny, text_corpus), "--explainer", "gpt9")[::2], "unknown explainer",
                   "baseline")
    one_line_error(*cli("run")[::2], "--layer")
    one_line_error(*cli("run", "--layer", "x")[::2])
    one_line_error(*cli("leaderboard", "--format", "xml")[::2], "--format")
    # nothing was half-written: no run row exists after all those refusals
    path = isolated / "autointerp.db"
    assert not path.exists() or sqlite_utils.Database(path)["runs"].count == 0


def test_bad_corpus(cli, tiny, isolated, monkeypatch):
    empty = isolated / "empty"
    empty.mkdir()
    one_line_error(*cli("run", "--layer", "1", "--model", tiny, "--corpus", str(empty))[::2], "no documents")
    (isolated / "short.txt").write_text("x = 1\n")
    one_line_error(*cli("run", "--layer", "1", "--model", tiny, "--corpus", str(isolated / "short.txt"))[::2],
                   "no window")
    one_line_error(*cli("run", "--layer", "1", "--model", tiny, "--corpus", "missing.txt")[::2], "not found")
    unreadable = isolated / "unreadable.txt"
    unreadable.write_text("x" * 1000)
    real_read_text = Path.read_text

    def refuse(self, *args, **kwargs):  # root reads any file, so the permission error is injected
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    one_line_error(*cli("run", "--layer", "1", "--model", tiny, "--corpus", str(unreadable))[::2],
                   "cannot read corpus file", "Permission denied")

def test_bad_databases(cli, tiny, text_corpus, isolated):
    corrupt = isolated / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    one_line_error(*cli(*base_args(tiny, text_corpus), "--db", str(corrupt))[::2], "not a SQLite database")
    assert corrupt.read_bytes() == b"this is not a database" * 100
    one_line_error(*cli("leaderboard", "--db", str(isolated / "absent.db"))[::2], "no results database")

    newer = isolated / "newer.db"
    assert cli(*base_args(tiny, text_corpus), "--db", str(newer))[0] == 0
    sqlite_utils.Database(newer)["_sqlite_migrations"].insert(
        {"migration_set": "autointerp", "name": "m999_future", "applied_at": "2030-01-01"}, alter=True)
    one_line_error(*cli("leaderboard", "--db", str(newer))[::2], "newer autointerp")

    locked = isolated / "locked.db"
    assert cli(*base_args(tiny, text_corpus), "--db", str(locked))[0] == 0
    holder = sqlite3.connect(locked)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        one_line_error(*cli(*base_args(tiny, text_corpus), "--db", str(locked), "--fresh")[::2], "locked")
    finally:
        holder.rollback()
        holder.close()


def test_debug_shows_the_traceback(cli, tiny, text_corpus):
    code, _, err = cli("run", "--layer", "9", "--model", tiny, "--corpus", str(text_corpus), "--debug")
    assert code == 2 and "Traceback" in err and "UsageError" in err


def test_config_file_env_and_flags_precedence(cli, tiny, text_corpus, isolated, monkeypatch):
    (isolated / "autointerp.toml").write_text(f'model = "{tiny}"\ncorpus = "{text_corpus}"\nlayer = 0\nunits = "0:2"\n')
    monkeypatch.setenv("AUTOINTERP_UNITS", "0:3")
    code, out, err = cli("run", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["layer"] == 0 and json.loads(out)["units_total"] == 3  # env beats file
    code, out, _ = cli("run", "--units", "5", "--format", "json")
    assert json.loads(out)["units_total"] == 1 and json.loads(out)["units"][0]["unit"] == 5  # flag beats env
    (isolated / "bad.toml").write_text("layer = [")
    one_line_error(*cli("run", "--config", str(isolated / "bad.toml"))[::2], "not valid TOML")
    (isolated / "typo.toml").write_text("layr = 3\n")
    one_line_error(*cli("run", "--config", str(isolated / "typo.toml"))[::2], "layr")
