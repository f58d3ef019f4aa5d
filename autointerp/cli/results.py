"""``autointerp leaderboard``, ``show`` and ``models``: reading results and the LLM profiles."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from autointerp.cli.app import (
    ConfigOpt,
    DbOpt,
    FormatOpt,
    Opt,
    app,
    check_format,
    emit,
    fmt,
    open_existing,
    out,
    print_json,
)
from autointerp.cli.text import cell
from autointerp.errors import UsageError


@app.command()
def leaderboard(
    layer: Annotated[Optional[int], Opt(help="Only this layer.")] = None,
    explainer: Annotated[Optional[str], Opt(help="Only explanations by this explainer.")] = None,
    min_score: Annotated[Optional[float], Opt(help="Only scores at or above this.")] = None,
    by: Annotated[Optional[str], Opt(help="'explainer': one row per explainer; 'dictionary': per unit kind "
                                          "(neurons, SAE and baseline features) and layer.")] = None,
    sort: Annotated[str, Opt(help="score (default, best first), unit, detection or fuzzing (best first).")] = "score",
    limit: Annotated[Optional[int], Opt(help="At most this many rows.", min=0)] = None,
    output: Annotated[str, Opt("--format", help="table, json or csv.")] = "table",
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Best explanation per unit (a SQL view), or summaries per explainer (--by explainer) or per kind of unit
    (--by dictionary: neurons vs SAE and baseline features)."""
    from autointerp.config import load_config

    check_format(output, ("table", "json", "csv"))
    if by not in (None, "explainer", "dictionary"):
        raise UsageError(f"--by {by!r} is not supported; use --by explainer or --by dictionary")
    if sort not in ("score", "unit", "detection", "fuzzing"):
        raise UsageError(f"--sort {sort!r} is not supported; use score, unit, detection or fuzzing")
    store = open_existing(load_config(config, {"db": db}).db)
    if by == "explainer":
        rows = store.by_explainer(layer=layer, min_score=min_score)
        cols = ["explainer", "simulator", "role", "done", "gave_up", "failed", "units", "mean", "median", "ci_low",
                "ci_high", "detection_mean", "detection_ci_low", "detection_ci_high", "fuzzing_mean",
                "fuzzing_ci_low", "fuzzing_ci_high", "llm_calls", "tokens_in", "tokens_out", "cost_usd"]
        if output == "table":
            return _print_by_explainer(rows)
    elif by == "dictionary":
        rows = store.by_dictionary(layer=layer, min_score=min_score)
        cols = ["layer", "family", "kind", "explainer", "simulator", "units", "undefined", "mean", "median",
                "ci_low", "ci_high", "detection_mean", "fuzzing_mean"]
        if output == "table":
            return _print_by_dictionary(rows)
    else:
        rows = store.leaderboard(layer=layer, explainer=explainer, min_score=min_score, order=sort, limit=limit)
        cols = ["layer", "unit", "kind", "score", "score_top", "score_random", "detection", "fuzzing", "explainer",
                "simulator", "explanation"]
        if output == "table":
            return _print_leaderboard(rows)
    emit(rows, cols, output)


@app.command()
def show(
    unit: Annotated[str, typer.Argument(help="LAYER/UNIT, e.g. 13/42; KIND@LAYER/UNIT for a dictionary feature, "
                                             "e.g. sae:82a38cf9@3/17 (as the leaderboard shows it).")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
    windows: Annotated[int, Opt(help="Top windows to show.", min=0)] = 5,
) -> None:
    """One unit's card: statistics, explanations with their score, detection and fuzzing, top windows with activating
    tokens highlighted."""
    from autointerp.config import load_config

    check_format(output, ("table", "json"))
    kind, _, where = unit.rpartition("@")
    try:
        layer, u = (int(x) for x in where.split("/"))
    except ValueError:
        raise UsageError(f"{unit!r} is not LAYER/UNIT; write e.g. autointerp show 13/42 (or sae:HASH@13/42)")
    card = open_existing(load_config(config, {"db": db}).db).unit_card(layer, u, kind or "neuron")
    if output == "json":
        print_json(card)
        return
    from autointerp.cli.cards import render_unit_card

    render_unit_card(out, card, windows)


def _print_leaderboard(rows: list[dict]) -> None:
    """Leaderboard for a terminal: numbers never wrap, the explanation takes the remaining width."""
    if not rows:
        out.print("no scored explanations match; run: autointerp run --layer N")
        return
    sims = sorted({r["simulator"] for r in rows})
    table = Table(caption=cell(f"test-split Pearson r; simulator: {', '.join(sims)}; detect, fuzz: balanced "
                               "accuracy on test (chance 0.5)"), expand=True)
    for name in ("unit", "score", "top", "random", "detect", "fuzz", "explainer"):
        table.add_column(name, no_wrap=True)
    table.add_column("explanation", ratio=1, overflow="fold")
    for r in rows:
        unit = f"{r['layer']}/{r['unit']}" if r["kind"] == "neuron" else f"{r['kind']}@{r['layer']}/{r['unit']}"
        table.add_row(cell(unit), fmt(r["score"]), fmt(r["score_top"]), fmt(r["score_random"]), fmt(r["detection"]),
                      fmt(r["fuzzing"]), cell(r["explainer"]), cell(r["explanation"]))
    out.print(table)


def _print_by_explainer(rows: list[dict]) -> None:
    """Every explainer / simulator pair with how its units ended; controls (the floor) marked."""
    if not rows:
        out.print("no explanations match; run: autointerp run --layer N")
        return
    table = Table(caption="test-split Pearson r over units with a defined score; controls: a shuffled and an empty "
                          "explanation under the same simulator (the floor)")
    table.add_column("explainer / simulator", overflow="fold", ratio=1)
    for name in ("done", "gave up", "failed", "scored", "mean", "95% CI", "median", "detect", "fuzz", "LLM calls"):
        table.add_column(name, no_wrap=True, min_width=len(name))
    for r in rows:
        name = f"{r['explainer']} / {r['simulator']}" + (" (control)" if r["role"] == "control" else "")
        table.add_row(cell(name), str(r["done"]), str(r["gave_up"]), str(r["failed"]), str(r["units"]),
                      fmt(r["mean"]), f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if r["mean"] is not None else "",
                      fmt(r["median"]), fmt(r["detection_mean"]), fmt(r["fuzzing_mean"]), str(r["llm_calls"] or 0))
    out.print(table)
    if any(r["role"] == "control" and r["mean"] is None and r["simulator"] == "baseline" for r in rows):
        out.print("n/a for a control under the baseline simulator: it predicts a constant for a text that names no "
                  "token (the empty explanation), so Pearson r is undefined there by design; an LLM simulator gives "
                  "the empty control a defined floor")


def _print_by_dictionary(rows: list[dict]) -> None:
    """The SAE-versus-baselines table: one row per layer, kind of unit, explainer and simulator."""
    if not rows:
        out.print("no scored explanations match; run: autointerp run --layer N [--units sae:PATH]")
        return
    table = Table(caption="test-split Pearson r over units with a defined score; undefined: never fired on test; "
                          "detect, fuzz: mean balanced accuracy on test (chance 0.5)")
    for name in ("layer", "units of", "explainer / simulator", "n", "undef.", "mean", "95% CI", "median", "detect",
                 "fuzz"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(str(r["layer"]), cell(r["kind"]), cell(f"{r['explainer']} / {r['simulator']}"), str(r["units"]),
                      str(r["undefined"]), fmt(r["mean"]), f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
                      fmt(r["median"]), fmt(r["detection_mean"]), fmt(r["fuzzing_mean"]))
    out.print(table)


@app.command()
def models(
    check: Annotated[bool, Opt("--check", help="Probe each profile: reachable, chat, tools, logprobs, echo "
                                                 "(all-at-once simulator), prompt escaping, latency, parallelism.")] = False,
    output: FormatOpt = "table",
    config: ConfigOpt = None,
) -> None:
    """List the LLM profiles of the config (its models.NAME tables); with --check, probe each one."""
    import asyncio

    from autointerp.config import load_config
    from autointerp.llm.check import check_profile, probing, summary
    from autointerp.llm.client import LLMClient

    check_format(output, ("table", "json"))
    cfg = load_config(config)
    rows = []
    for name, profile in cfg.models.items():
        row = {"name": name, "model": profile.model, "base_url": profile.resolved_base_url() or "(openai default)",
               "api_key_env": profile.api_key_env, "logprobs": profile.supports_logprobs,
               "tools": profile.supports_tools, "simulator_method": profile.simulator_method,
               "concurrency": profile.concurrency,
               "price_in_per_mtok": profile.price_in_per_mtok, "price_out_per_mtok": profile.price_out_per_mtok}
        if check:
            async def probe(p=profile, n=name):
                async with LLMClient(probing(p), n) as client:
                    return await check_profile(client)

            try:
                row["check"] = asyncio.run(probe())
            except UsageError as e:  # e.g. the key's environment variable is not set
                row["check"] = {"reachable": False, "errors": {"profile": str(e)}}
        rows.append(row)
    if output == "json":
        print_json(rows)
        return
    if not rows:
        out.print("no model profiles; add [models.NAME] tables to autointerp.toml (see README: Configuration)")
        return
    table = Table("name", "model", "base_url", "key env", "logprobs", "tools", "simulator",
                  *(["check"] if check else []))
    for r in rows:
        cells = [r["name"], r["model"], r["base_url"], r["api_key_env"], str(r["logprobs"]), str(r["tools"]),
                 r["simulator_method"]]
        if check:
            cells.append(summary(r["check"]))
        table.add_row(*(cell(x) for x in cells))
    out.print(table)
