"""``autointerp sweep run|status|report|schedule PLAN`` and ``autointerp db merge OUT IN...``."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from autointerp.cli.app import ConfigOpt, Opt, app, check_format, err, out, print_json
from autointerp.cli.text import cell, inert

sweep_app = typer.Typer(no_args_is_help=True, help="Overnight sweeps: a plan file, run, status, report, schedule.")
db_app = typer.Typer(no_args_is_help=True, help="Results database tools.")
app.add_typer(sweep_app, name="sweep")
app.add_typer(db_app, name="db")

PlanArg = Annotated[str, typer.Argument(help="Sweep plan (TOML); see docs/sweeps.md.")]
SweepDbOpt = Annotated[Optional[str], Opt("--db", help="Results file instead of the plan's (e.g. one per shard).")]


@sweep_app.command("run")
def sweep_run(
    plan: PlanArg,
    shard: Annotated[Optional[str], Opt(help="Do only part I of N of the plan (I/N, 0-based): disjoint, "
                                             "deterministic parts whose union is the whole.")] = None,
    db: SweepDbOpt = None,
    ray: Annotated[Optional[str], Opt("--ray", help="Capture on Ray: auto (running cluster), local (start one here) "
                                                    "or an address. Needs pip install -e '.[ray]'.")] = None,
    wait: Annotated[bool, Opt("--wait", help="If another process runs this sweep, wait for it (default: say who "
                                             "and exit 0).")] = False,
    output: Annotated[str, Opt("--format", help="table or json.")] = "table",
    config: ConfigOpt = None,
) -> None:
    """Do what the plan still needs, by priority, until done, the budget, the stop time, or Ctrl-C / SIGTERM."""
    from autointerp.sweep import parse_shard, run_sweep

    check_format(output, ("table", "json"))
    shard_t = parse_shard(shard)
    result = run_sweep(plan, config=config, shard=shard_t, wait=wait, ray=ray, command=" ".join(sys.argv), db=db,
                       on_event=lambda m: err.print(inert(m), markup=False, highlight=False, soft_wrap=True))
    if output == "json":
        print_json(result.__dict__)
    elif result.status == "held":
        out.print(inert(f"not started: sweep {result.sweep} is being run by {result.holder}"), markup=False)
    else:
        out.print(inert(f"sweep {result.sweep}: {result.status} ({result.reason}); {result.units_done} units this "
                        f"session, {result.captures} capture passes, {len(result.failures)} failures, "
                        f"{result.wall_s:.1f}s; see: autointerp sweep status {plan}"), markup=False)


@sweep_app.command("status")
def sweep_status_cmd(plan: PlanArg, output: Annotated[str, Opt("--format", help="table or json.")] = "table",
                     db: SweepDbOpt = None, config: ConfigOpt = None) -> None:
    """Per job: units done, failed, to do; spend in total and tonight; what is left; who holds the lease."""
    from autointerp.sweep import sweep_status

    check_format(output, ("table", "json"))
    s = sweep_status(plan, config, db)
    if output == "json":
        print_json(s)
        return
    table = Table("job", "layers", "done", "failed", "to do", "spent $", "tonight $", "left $ (est.)",
                  "left s (est.)", "note", title=f"sweep {s['sweep']}: {'DONE' if s['done'] else 'not done'}")
    for j in s["jobs"]:
        est = j["estimate_left"]
        note = "gave up: " + (j["last_failure"] or "") if j["gave_up"] else (
            "not expanded yet" if not j["expanded"] else (j["last_failure"] or ""))
        table.add_row(cell(j["name"]), ",".join(map(str, j["layers"])), str(j["units_done"]), str(j["units_failed"]),
                      "?" if j["units_todo"] is None else str(j["units_todo"]), f"{j['spend']['cost_usd']:.4f}",
                      f"{j['spend_tonight']['cost_usd']:.4f}", _opt(est["cost_usd"], ".4f"),
                      _opt(est["seconds"], ".0f"), cell(note[:60]))
    out.print(table)
    out.print(f"spent ${s['spend']['cost_usd']:.4f} in {s['spend']['calls']} LLM calls (tonight "
              f"${s['spend_tonight']['cost_usd']:.4f}); lease: {inert(s['lease_holder'] or 'free')}", markup=False)


@sweep_app.command("report")
def sweep_report_cmd(plan: PlanArg, since: Annotated[Optional[str], Opt(help="ISO time to report from (default: "
                                                                              "the start of the last night).")] = None,
                     output: Annotated[str, Opt("--format", help="text or json.")] = "text",
                     db: SweepDbOpt = None, config: ConfigOpt = None) -> None:
    """What the last night changed: units newly explained, best scores, the means of the score, detection and
    fuzzing per job, new failures and reasons, spend."""
    from autointerp.sweep import sweep_report

    check_format(output, ("text", "json"))
    r = sweep_report(plan, config, since, db)
    if output == "json":
        print_json(r)
        return
    lines = [f"sweep {r['sweep']} since {r['since'][:19]}Z: {len(r['sessions'])} sessions "
             f"({', '.join(s['status'] + (': ' + s['reason'] if s['reason'] else '') for s in r['sessions'])})",
             f"units newly explained: {r['units_explained']} "
             f"({', '.join(f'{k} {v}' for k, v in r['units_explained_by_job'].items()) or 'none'}); "
             f"units failed: {r['units_failed']}",
             f"best scores that changed: {r['best_scores_changed']}"]
    lines += [f"  {c['layer']}/{c['unit']}: {_opt(c['before'], '.3f')} -> {c['now']:.3f} (detection "
              f"{_opt(c['detection'], '.3f')}, fuzzing {_opt(c['fuzzing'], '.3f')})" for c in r["new_best"][:5]]
    lines += [f"{m['job']} {'controls' if m['role'] == 'control' else 'explanations'}: {m['explanations']}; mean "
              f"score {_opt(m['score_mean'], '.3f')} (n {m['scored']}), detection {_opt(m['detection_mean'], '.3f')} "
              f"(n {m['detected']}), fuzzing {_opt(m['fuzzing_mean'], '.3f')} (n {m['fuzzed']})"
              for m in r["scores"]]
    if r["scores"]:
        lines.append("  score: Pearson r of simulated and true activations; detection, fuzzing: balanced accuracy "
                     "(chance 0.5); all on the test split")
    lines += [f"new failure: {f['job']}" + (f" layer {f['layer']}" if f["layer"] is not None else "")
              + f": {f['reason']}" for f in r["new_failures"]]
    sp, tot = r["spend"], r["spend_total"]
    lines.append(f"spent ${sp['cost_usd']:.4f} in {sp['calls']} LLM calls ({sp['tokens_in']:,} tokens in, "
                 f"{sp['tokens_out']:,} out); sweep total ${tot['cost_usd']:.4f} in {tot['calls']} calls")
    for line in lines:
        out.print(inert(line), markup=False, highlight=False, soft_wrap=True)


@sweep_app.command("schedule")
def sweep_schedule(plan: PlanArg,
                   at: Annotated[str, Opt(help="Local start time, HH:MM.")] = "22:00",
                   print_systemd: Annotated[bool, Opt("--print-systemd", help="Print a user service and timer.")]
                   = False,
                   slurm: Annotated[Optional[int], Opt("--print-slurm", help="Print an sbatch array script of this "
                                                                             "many shards.")] = None) -> None:
    """Print how to start the sweep every night: a cron line (default), systemd user units or a Slurm array."""
    from autointerp.errors import UsageError
    from autointerp.sweep.plan import TIME_OF_DAY
    from autointerp.sweep.schedule import cron_line, slurm_script, systemd_units

    if not TIME_OF_DAY.match(at):
        raise UsageError(f"--at {at!r} is not a time of day; use HH:MM, e.g. --at 22:00")
    if slurm is not None and slurm < 1:
        raise UsageError("--print-slurm needs a number of shards of at least 1")
    if print_systemd:
        for name, text in systemd_units(plan, at).items():
            sys.stdout.write(f"# ~/.config/systemd/user/{name}\n{text}\n")
        sys.stdout.write("# then: systemctl --user daemon-reload && systemctl --user enable --now "
                         f"{name.replace('.timer', '')}.timer\n")
    elif slurm is not None:
        sys.stdout.write(slurm_script(plan, slurm))
    else:
        sys.stdout.write("# crontab -e, then add:\n" + cron_line(plan, at) + "\n")


@db_app.command("merge")
def db_merge(target: Annotated[str, typer.Argument(help="Output database (created when missing).")],
             sources: Annotated[list[str], typer.Argument(help="Databases to fold in (e.g. one per shard).")],
             output: Annotated[str, Opt("--format", help="table or json.")] = "table") -> None:
    """Fold results databases into one (runs by id, units by identity); merging a file twice adds nothing."""
    from autointerp.db.merge import merge_databases

    check_format(output, ("table", "json"))
    added = merge_databases(target, sources)
    if output == "json":
        print_json(added)
    else:
        out.print(f"merged {len(sources)} databases into {target}: " + ", ".join(
            f"{n} {t}" for t, n in added.items() if n), markup=False)


def _opt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)
