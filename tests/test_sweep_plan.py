"""The sweep plan file: validation with one-line errors naming the key; shards; the schedule files. No model."""

from __future__ import annotations

import pytest

from autointerp.errors import UsageError
from autointerp.sweep import load_plan, parse_shard, resolve_jobs

GOOD = """
[defaults]
tokens = 4000
units = "0:16"

[budget]
max_usd = 2.5
per_night_calls = 100
until = "07:00"

[jobs.base]
layers = "0:2"

[jobs.gpt]
layers = [3, 5]
explainer = "openai:gpt-4o-mini"
tokens = 8000
priority = -1
"""


def write(tmp_path, text, name="nightly.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_plan_resolves_in_priority_order_with_overrides(tmp_path):
    plan = load_plan(write(tmp_path, GOOD))
    assert plan.name == "nightly" and plan.budget.until == "07:00" and plan.max_attempts == 3
    jobs = resolve_jobs(plan, {"db": "x.db", "window": 32})
    assert [j.name for j in jobs] == ["gpt", "base"]  # priority -1 first
    gpt, base = jobs
    assert (gpt.layers, gpt.cfg.tokens, gpt.cfg.explainer, gpt.cfg.window) == ("3,5", 8000, "openai:gpt-4o-mini", 32)
    assert (base.cfg.tokens, base.cfg.units, base.cfg.db, base.cfg.layer) == (4000, "0:16", "x.db", None)
    # the explainer is not part of what a capture depends on; tokens are
    assert base.capture_key(3) == base.capture_key(3) != gpt.capture_key(3)
    assert base.run_config(1).layer == 1


@pytest.mark.parametrize("text, where", [
    ("[defaults]\ntokenz = 3\n[jobs.a]\nlayers = 1\n", "defaults.tokenz: unknown setting"),
    ("[jobs.a]\nlayers = 1\nexplaner = 'x'\n", "jobs.a.explaner: unknown setting"),
    ("[jobs.a]\nlayers = 1\ntokens = 'many'\n", "jobs.a.tokens"),
    ("[defaults]\nwindow = 1\n[jobs.a]\nlayers = 1\n", "defaults.window"),
    ("[jobs.a]\nlayer = 1\nlayers = 1\n", "jobs.a.layer: set layers in a job"),
    ("[jobs.a]\nunits = '0:4'\n", "jobs.a.layers: Field required"),
    ("[jobs.a]\nlayers = true\n", "jobs.a.layers"),
    ("[budget]\nuntil = '25:00'\n[jobs.a]\nlayers = 1\n", "budget.until"),
    ("[budget]\nmax_usd = -1\n[jobs.a]\nlayers = 1\n", "budget.max_usd"),
    ("[budget]\nmax_dollars = 1\n[jobs.a]\nlayers = 1\n", "budget.max_dollars: unknown key"),
    ("[jobs]\n", "jobs: no job"),
    ("max_attempts = 0\n[jobs.a]\nlayers = 1\n", "max_attempts"),
    ("[jobs.a\nlayers = 1\n", "not valid TOML"),
    ("name = 'a b'\n[jobs.a]\nlayers = 1\n", "name:"),
])
def test_bad_plans_are_one_line_errors_naming_the_key(tmp_path, text, where):
    with pytest.raises(UsageError) as e:
        resolve_jobs(load_plan(write(tmp_path, text)), {})
    message = str(e.value)
    assert where in message and "\n" not in message


def test_bad_plan_from_the_cli_exits_2_with_one_line(cli, tmp_path):
    write(tmp_path, "[jobs.a]\nlayers = 1\nexplaner = 'x'\n")
    for command in ("run", "status", "report"):
        code, out, err = cli("sweep", command, str(tmp_path / "nightly.toml"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and "jobs.a.explaner" in err, (command, err)
    code, _, err = cli("sweep", "run", str(tmp_path / "missing.toml"))
    assert code == 2 and "not found" in err
    assert not (tmp_path / "autointerp.db").exists()  # nothing written for a bad plan


def test_shards_parse_and_bad_ones_are_refused(cli, tmp_path):
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "1/0", "a/b", "-1/2"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    write(tmp_path, GOOD)
    code, _, err = cli("sweep", "run", str(tmp_path / "nightly.toml"), "--shard", "2/2")
    assert code == 2 and "--shard" in err


def test_status_before_any_start_says_so(cli, tmp_path):
    write(tmp_path, GOOD)
    code, _, err = cli("sweep", "status", str(tmp_path / "nightly.toml"))
    assert code == 2 and "sweep run" in err


def test_status_and_report_refuse_a_plan_with_two_databases_as_run_does(cli, tmp_path):
    write(tmp_path, "[jobs.a]\nlayers = 1\ndb = 'a.db'\n[jobs.b]\nlayers = 2\ndb = 'b.db'\n")
    (tmp_path / "a.db").touch()  # status reads the first job's file when it does not check
    for command in ("run", "status", "report"):
        code, _, err = cli("sweep", command, str(tmp_path / "nightly.toml"))
        assert code == 2 and "one database" in err, (command, err)
        code, _, err = cli("sweep", command, str(tmp_path / "nightly.toml"), "--db", "c.db")
        assert code == 2 and "sets db itself" in err, (command, err)


def test_schedule_prints_cron_systemd_and_slurm_with_absolute_paths_and_no_keys(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-abcdefghijklmnop")
    plan = write(tmp_path, GOOD)
    code, out, _ = cli("sweep", "schedule", str(plan), "--at", "21:30")
    assert code == 0
    line = [x for x in out.splitlines() if not x.startswith("#")][0]
    assert line.startswith("30 21 * * * cd ") and str(plan.resolve()) in line and "sweep run" in line
    code, out, _ = cli("sweep", "schedule", str(plan), "--print-systemd")
    assert code == 0 and "OnCalendar=*-*-* 21:30:00" not in out and "OnCalendar=*-*-* 22:00:00" in out
    assert f"WorkingDirectory={tmp_path}" in out and "KillSignal=SIGTERM" in out and "EnvironmentFile=-" in out
    code, out, _ = cli("sweep", "schedule", str(plan), "--print-slurm", "4")
    assert code == 0 and "#SBATCH --array=0-3" in out and '--shard "$SLURM_ARRAY_TASK_ID/4"' in out
    assert "db merge" in out
    code, _, err = cli("sweep", "schedule", str(plan), "--at", "9pm")
    assert code == 2 and "--at" in err
    assert "SECRET" not in out


def test_stop_time_is_the_next_one_and_a_night_starts_at_its_hour():
    from datetime import datetime, timedelta, timezone

    from autointerp.sweep.ledger import deadline, night_start

    now = datetime(2026, 12, 1, 22, 0, tzinfo=timezone.utc)
    local = now.astimezone()
    end = deadline(f"{(local + timedelta(hours=1)):%H:%M}", now)
    assert end == now + timedelta(hours=1)  # later today
    assert deadline(f"{(local - timedelta(hours=1)):%H:%M}", now) == now + timedelta(hours=23)  # tomorrow
    assert deadline(None, now) is None
    start = night_start(f"{(local - timedelta(hours=2)):%H:%M}", now)
    assert start == now - timedelta(hours=2)
    assert night_start(f"{(local + timedelta(hours=2)):%H:%M}", now) == now - timedelta(hours=22)
