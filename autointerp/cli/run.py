"""``autointerp run``: capture, explain, simulate, score and store one layer, then print a summary."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from autointerp.cli.app import (
    ConfigOpt,
    Opt,
    app,
    capture_progress,
    check_format,
    dictionary_units,
    err,
    fmt,
    out,
    print_json,
)
from autointerp.cli.flags import config_flags
from autointerp.cli.text import cell, markup

RUN_SETTINGS = ("layer", "model", "corpus", "tokens", "units", "dictionary", "site", "force_sae", "explainer",
                "simulator", "window", "batch_size", "top_k", "n_random", "threshold", "firing", "device", "dtype",
                "seed", "concurrency", "revise_rounds", "max_tool_calls", "max_unit_tokens", "best_of",
                "validate_windows", "windows_per_request", "controls", "controls_units", "scorers", "judge",
                "judge_batch", "judge_examples", "range_windows", "silent_windows", "max_usd", "max_calls", "db")


@app.command()
@config_flags(*RUN_SETTINGS, helps={
    "units": "Units: 0:32 or 3,17,42 (default: all); sae:PATH for every feature of a dictionary folder.",
})
def run(
    overrides: dict,
    config: ConfigOpt = None,
    fresh: Annotated[bool, Opt("--fresh", help="Start a new run even if this exact run exists "
                                               "(default: resume).")] = False,
    output: Annotated[str, Opt("--format", help="Summary format: table or json.")] = "table",
    wait: Annotated[bool, Opt("--wait", help="If another process is doing this run, wait for it and then finish "
                                             "what is left (default: say who holds it and exit 0).")] = False,
    dry: Annotated[bool, Opt("--estimate", help="Print the LLM calls, tokens and dollars the run would spend, per "
                                                "purpose and per unit, and exit: no LLM call, nothing written.")
                   ] = False,
) -> None:
    """Capture -> explain -> simulate -> score -> store, for every unit of one layer; then print a summary."""
    from autointerp.config import load_config
    from autointerp.db.leases import LeaseHeld
    from autointerp.pipeline import run as run_pipeline
    from autointerp.pipeline.run import estimate

    check_format(output, ("table", "json"))
    overrides["units"], overrides["dictionary"] = dictionary_units(overrides["units"], overrides["dictionary"])
    cfg = load_config(config, overrides)
    if dry:
        _print_estimate(estimate(cfg), output)
        return
    progress, on_capture_start = capture_progress()
    state: dict = {}

    def on_unit(outcome) -> None:
        if "units" not in state:
            state["units"] = progress.add_task("explain+score (units)", total=None, rate="")
        progress.advance(state["units"])

    def on_estimate(e: dict) -> None:
        progress.console.print(
            f"LLM estimate for {e['units']} units: ~{e['calls']:,} calls, ~{e['tokens_in']:,} tokens in, "
            f"~{e['tokens_out']:,} out, ~${e['cost_usd']:.4f} ({_basis(e)})"
            + (f"; stops at --max-usd {cfg.max_usd}" if cfg.max_usd is not None else "")
            + (f"; stops at --max-calls {cfg.max_calls}" if cfg.max_calls is not None else ""))

    def on_wait(holder) -> None:
        progress.console.print(f"waiting: this run is being done by {holder.describe()}")

    try:
        with progress:
            summary = run_pipeline(cfg, " ".join(sys.argv), on_capture_start, on_unit, fresh=fresh,
                                   on_estimate=on_estimate, wait=wait, on_wait=on_wait)
    except LeaseHeld as e:
        err.print(f"not started: this run is being done by {e.info.describe()}; it resumes from there, or pass "
                  "--wait to wait for it", markup=False, highlight=False, soft_wrap=True)
        return
    if output == "json":
        print_json(_summary_json(summary))
    else:
        _print_summary(summary)
    if summary.stop_reason == "endpoint":  # the endpoint fails the same way on every call: not a finished run
        err.print(f"stopped: {summary.stopped}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _print_estimate(e: dict | None, output: str) -> None:
    """``run --estimate``: the expected spend, in total, per purpose and per unit."""
    if output == "json":
        print_json(e)
        return
    if e is None:
        out.print("no LLM calls: the explainer and simulator are the baseline, or every unit is done")
        return
    table = Table("purpose", "calls", "tokens in", "tokens out", "US$", "US$ per unit",
                  title=f"LLM estimate for {e['units']} units ({e['controlled_units']} with controls)")
    for purpose, p in e["by_purpose"].items():
        table.add_row(purpose, f"{p['calls']:,}", f"{p['tokens_in']:,}", f"{p['tokens_out']:,}",
                      f"{p['cost_usd']:.4f}", f"{p['cost_usd'] / e['units']:.5f}")
    table.add_row("total", f"{e['calls']:,}", f"{e['tokens_in']:,}", f"{e['tokens_out']:,}", f"{e['cost_usd']:.4f}",
                  f"{e['per_unit']['cost_usd']:.5f}")
    out.print(table)
    out.print(_basis(e), markup=False)


def _basis(e: dict) -> str:
    """How the estimate's tokens per call were found, per component (``pipeline.estimate``)."""
    basis = "; ".join(f"{role}: {how}" for role, how in e.get("basis", {}).items())
    return f"{basis}; prompts counted by {e['token_counting']}" if basis else f"tokens counted by {e['token_counting']}"


def _num(x: float) -> str:
    return f"{x:,.4f}" if isinstance(x, float) and x < 10 else f"{x:,.0f}"


def _summary_json(s) -> dict:
    return {
        "run_id": s.run_id, "db": s.db, "layer": s.layer, "explainer": s.explainer, "simulator": s.simulator,
        "baseline": s.baseline, "units_total": s.units_total, "units_done": len(s.outcomes),
        "units_skipped": s.units_skipped, "unit_kind": s.unit_kind, "n_tokens": s.n_tokens, "mean_score": s.mean_score,
        "median_score": s.median_score, "detection_mean": s.mean_of("detection"),
        "fuzzing_mean": s.mean_of("fuzzing"), "state": s.state, "stop_reason": s.stop_reason, "stopped": s.stopped,
        "llm_estimate": s.estimate, "llm_usage": s.llm_usage,
        "controls": s.controls, "dictionary_check": s.dictionary_check,
        "llm_estimate_vs_actual": s.estimate_vs_actual, "wall_s": round(s.wall_s, 2),
        "capture_s": round(s.capture_s, 2), "explain_s": round(s.explain_s, 2),
        "explain_cpu_s": round(s.explain_cpu_s, 3),
        "units": [{"unit": o.unit, "score": o.score, "detection": o.detection, "fuzzing": o.fuzzing,
                   "status": o.status, "explanation": o.explanation}
                  for o in sorted(s.outcomes, key=lambda o: o.unit)],
    }


def _print_summary(s) -> None:
    label = f"{markup(s.explainer)} explainer" + (" (BASELINE: the non-LLM floor)" if s.baseline else "")
    out.print(f"[bold]layer {s.layer}[/bold]: {len(s.outcomes)} units explained and scored"
              + (f", {s.units_skipped} already done by an earlier run" if s.units_skipped else "")
              + f" in {s.wall_s:.1f}s")
    if s.dictionary_check:
        c = s.dictionary_check
        out.print(f"dictionary check: FVU {c['fvu']:.3g}, mean L0 {c['mean_l0']:.1f} over {c['tokens']:,} tokens"
                  + (" (worse than the mean: used because of --force-sae)" if c["forced"] else ""))
    if s.capture_s:
        out.print(f"captured {s.n_tokens:,} tokens in {s.capture_s:.1f}s ({s.n_tokens / s.capture_s:,.0f} tok/s)")
    if s.explain_s:
        out.print(f"explained and scored in {s.explain_s:.1f}s")
    out.print(f"{label}; {markup(s.simulator)} simulator; score = Pearson r on held-out test windows (top + random)")
    out.print(f"mean score {fmt(s.mean_score)}, median {fmt(s.median_score)}, "
              f"{len(s.outcomes) - len(s.scores)} units without a defined score")
    judged = list(s.classifiers)
    if judged:  # a unit without one: dead, or a class with no example (a unit that fires in every window)
        out.print("; ".join(f"{name}: mean {fmt(s.mean_of(name))}, "
                            f"{sum(o.value(name) is None for o in s.outcomes)} units without one" for name in judged)
                  + " (balanced accuracy on test, chance 0.5)")
    for c in s.controls:
        extra = "".join(f", {name} {fmt(c[name + '_mean'])}" for name in judged)
        out.print(f"floor, {c['control']}: mean {fmt(c['mean'])} over {c['scored']} of {c['units']} units with a "
                  f"defined score{extra} (same scorers and test windows)")
    statuses = [o.status for o in s.outcomes]
    out.print(f"units: {statuses.count('done')} done, {statuses.count('gave_up')} gave up, "
              f"{statuses.count('failed')} failed (see: autointerp leaderboard --by explainer)")
    scored = sorted((o for o in s.outcomes if o.score is not None), key=lambda o: -o.score)
    if scored:
        table = Table("unit", "score", *judged, "explanation", title="best and worst units")
        picks = scored[:5] + ([None] if len(scored) > 10 else []) + scored[max(5, len(scored) - 5):]
        for o in picks:
            if o is None:
                table.add_row("...", "", *("" for _ in judged), "")
            else:
                name = f"{s.layer}/{o.unit}" if s.unit_kind == "neuron" else f"{s.unit_kind}@{s.layer}/{o.unit}"
                table.add_row(cell(name), fmt(o.score), *(fmt(o.value(j)) for j in judged), cell(o.explanation))
        out.print(table)
    if s.llm_usage:
        u = s.llm_usage
        out.print(f"LLM: {u['calls']:,} calls ({u['errors']} failed), {u['tokens_in']:,} tokens in, "
                  f"{u['tokens_out']:,} out, ${u['cost_usd']:.4f}; per unit: {u['per_unit']['calls']} calls, "
                  f"{u['per_unit']['tokens_in']:,} in, {u['per_unit']['tokens_out']:,} out")
    versus = s.estimate_vs_actual
    if versus:
        parts = [f"{name} ~{_num(versus[key]['estimate'])} vs {_num(versus[key]['actual'])}"
                 + ("" if versus[key]["error"] is None else f" ({100 * versus[key]['error']:+.0f}%)")
                 for key, name in (("calls", "calls"), ("tokens_in", "tokens in"), ("tokens_out", "out"),
                                   ("cost_usd", "$"))]
        how = "measured" if versus["measured"] else "a guess"
        out.print(f"LLM estimate ({how}) vs actual for {versus['units']} units: {', '.join(parts)}", markup=False)
    if s.stopped:
        out.print(f"[yellow]stopped early: {markup(s.stopped)}[/yellow]; the same command resumes with the units left")
    out.print(f"results in {markup(s.db)} (run {s.run_id}); see: autointerp leaderboard --layer {s.layer}")
