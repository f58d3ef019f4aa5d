"""The ``autointerp`` command: a thin layer over ``autointerp.pipeline`` and ``autointerp.db``.

    autointerp run --layer 13                  # capture, explain, simulate, score, store, summarise
    autointerp leaderboard --layer 13          # best explanation per unit
    autointerp leaderboard --by explainer      # one row per explainer: units, mean, median, 95% CI
    autointerp show 13/42                      # one unit's card

Bad input prints one line saying what to do and exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import sys
import time
import traceback
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from autointerp.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Explain and score every neuron of a language-model layer.")
# Piped or redirected output gets 120 columns (rich's default is 80, which truncates the wider tables); a
# terminal, or $COLUMNS, sets its own width.
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)
err = Console(stderr=True)

Opt = typer.Option
ConfigOpt = Annotated[Optional[str], Opt("--config", help="TOML config file (default: ./autointerp.toml).")]
DbOpt = Annotated[Optional[str], Opt("--db", help="SQLite file (default ./autointerp.db, or $AUTOINTERP_DB).")]
ModelOpt = Annotated[Optional[str], Opt("--model", help="'bundled' (default), a hub id or a checkpoint folder.")]
CorpusOpt = Annotated[Optional[str], Opt("--corpus", help="stdlib (default), a file, folder, .jsonl or hf:NAME.")]
TokensOpt = Annotated[Optional[int], Opt("--tokens", help="Content tokens to capture (default: whole corpus).")]
DeviceOpt = Annotated[Optional[str], Opt("--device", help="auto, cpu, cuda, cuda:N.")]
FormatOpt = Annotated[str, Opt("--format", help="table or json.")]
EvalCorpusOpt = Annotated[Optional[str], Opt("--corpus", help="Evaluation corpus (default stdlib, the held-out "
                                                               "split).")]


@app.callback()
def _root(debug: Annotated[bool, Opt("--debug", help="Show tracebacks.")] = False) -> None:
    """autointerp: natural-language explanations of MLP neurons, with honest scores."""


@app.command()
def run(
    layer: Annotated[Optional[int], Opt(help="0-based layer to explain.")] = None,
    model: ModelOpt = None,
    corpus: CorpusOpt = None,
    tokens: TokensOpt = None,
    units: Annotated[Optional[str], Opt(help="Units: 0:32 or 3,17,42 (default: all); sae:PATH for every feature "
                                             "of a dictionary folder.")] = None,
    dictionary: Annotated[Optional[str], Opt(help="Dictionary folder (SAE or baseline) whose features are the "
                                                  "units; --units then picks among them.")] = None,
    explainer: Annotated[Optional[str], Opt(help="'baseline' (default) or a model profile.")] = None,
    simulator: Annotated[Optional[str], Opt(help="'baseline' (default) or a model profile.")] = None,
    window: Annotated[Optional[int], Opt(help="Tokens per window (default 64).")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Windows per forward pass (default 32).")] = None,
    device: DeviceOpt = None,
    dtype: Annotated[Optional[str], Opt(help="auto, float32, bfloat16, float16.")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed for corpus order and random windows.")] = None,
    concurrency: Annotated[Optional[int], Opt(help="Units explained and scored at once (default 8).")] = None,
    revise_rounds: Annotated[Optional[int], Opt(help="LLM explainer revisions (default 1; 0: none).")] = None,
    max_tool_calls: Annotated[Optional[int], Opt(help="LLM explainer tool calls per unit (default 4).")] = None,
    best_of: Annotated[Optional[int], Opt(help="LLM explainer: independent drafts (default 1).")] = None,
    max_usd: Annotated[Optional[float], Opt(help="Stop LLM spending past this many US dollars.")] = None,
    max_calls: Annotated[Optional[int], Opt(help="Stop after this many LLM calls.")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fresh: Annotated[bool, Opt("--fresh", help="Start a new run even if this exact run exists (default: resume).")] = False,
    output: Annotated[str, Opt("--format", help="Summary format: table or json.")] = "table",
) -> None:
    """Capture -> explain -> simulate -> score -> store, for every unit of one layer; then print a summary."""
    from autointerp.config import load_config
    from autointerp.pipeline import run as run_pipeline

    _check_format(output, ("table", "json"))
    units, dictionary = _dictionary_units(units, dictionary)
    cfg = load_config(config, dict(layer=layer, model=model, corpus=corpus, tokens=tokens, units=units,
                                   dictionary=dictionary,
                                   explainer=explainer, simulator=simulator, window=window, batch_size=batch_size,
                                   device=device, dtype=dtype, seed=seed, db=db, max_usd=max_usd,
                                   max_calls=max_calls, revise_rounds=revise_rounds, max_tool_calls=max_tool_calls,
                                   best_of=best_of, concurrency=concurrency))
    progress, on_capture_start = _capture_progress()
    state: dict = {}

    def on_unit(outcome) -> None:
        if "units" not in state:
            state["units"] = progress.add_task("explain+score (units)", total=None, rate="")
        progress.advance(state["units"])

    def on_estimate(e: dict) -> None:
        progress.console.print(
            f"LLM estimate for {e['units']} units: ~{e['calls']:,} calls, ~{e['tokens_in']:,} tokens in, "
            f"~{e['tokens_out']:,} out, ~${e['cost_usd']:.4f} (tokens counted by {e['token_counting']})"
            + (f"; stops at --max-usd {cfg.max_usd}" if cfg.max_usd is not None else "")
            + (f"; stops at --max-calls {cfg.max_calls}" if cfg.max_calls is not None else ""))

    with progress:
        summary = run_pipeline(cfg, " ".join(sys.argv), on_capture_start, on_unit, fresh=fresh,
                               on_estimate=on_estimate)
    if output == "json":
        out.print_json(json.dumps(_summary_json(summary)))
    else:
        _print_summary(summary)


@app.command()
def analyze(
    layer: Annotated[str, Opt(help="Layer(s): N, N:M, N,M or all.")] = "all",
    model: ModelOpt = None,
    corpus: CorpusOpt = None,
    tokens: TokensOpt = None,
    device: DeviceOpt = None,
    seed: Annotated[Optional[int], Opt(help="Seed for corpus order.")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: Annotated[str, Opt("--format", help="table (per-layer summary) or json (one record per unit).")] = "table",
) -> None:
    """Dead units, n-gram detectors, suppression, positional units: every layer asked for, in one pass; stored."""
    from autointerp.config import load_config
    from autointerp.pipeline import analyze as run_analyses

    _check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, tokens=tokens, device=device, seed=seed, db=db))
    progress, on_capture_start = _capture_progress()
    with progress:
        result = run_analyses(cfg, layer, " ".join(sys.argv), on_capture_start)
    if output == "json":
        keys = ["layer", "unit", "dead", "firing_rate", "token_detector", "trigram_detector", "ngram_k",
                "positional_mi", "positional", "positional_kind", "positional_strength", "suppresses_triggers",
                "best_trigger_rank", "promoted", "suppressed", "top_share", "regularization", "position_profile"]
        for u in result.units:
            sys.stdout.write(json.dumps({k: u[k] for k in keys}) + "\n")
        return
    table = Table("layer", "% dead", "live firing", "token det.", "trigram det.", "positional", "suppress own",
                  "regular.", title=f"{result.n_tokens:,} tokens, one pass ({result.capture_s:.0f}s capture)",
                  caption="regular.: VISIT's regularization units (in the layer's top 100 on > 85% of tokens)")
    for x in result.summaries:
        frac = "n/a" if x["suppression_fraction"] is None else f"{x['n_detectors_suppressing']}/" \
               f"{x['n_token_detectors']} ({100 * x['suppression_fraction']:.0f}%)"
        rate = "n/a" if x["mean_firing_rate_live"] is None else f"{100 * x['mean_firing_rate_live']:.1f}%"
        table.add_row(str(x["layer"]), f"{x['pct_dead']:.1f}", rate, str(x["n_token_detectors"]),
                      str(x["n_trigram_detectors"]), str(x["n_positional"]), frac, str(x["n_regularization"]))
    out.print(table)
    out.print(f"stored in {result.db} (analysis {result.run_id}); per-unit records: autointerp analyze ... --format json")


@app.command()
def probe(
    layer: Annotated[int, Opt(help="0-based layer whose units are probed.")],
    concept: Annotated[str, Opt(help="comment, string, docstring, keyword, identifier, number, operator, "
                                     "indent_ge2, or a .jsonl file of {text, spans}.")],
    method: Annotated[str, Opt(help="mean_diff (default) or adaptive (elastic-net thresholding).")] = "mean_diff",
    model: ModelOpt = None,
    corpus: Annotated[Optional[str], Opt(help="Corpus for built-in concepts (default stdlib).")] = None,
    tokens: Annotated[Optional[int], Opt(help="Labelled tokens to collect (default 20000).")] = None,
    units: Annotated[Optional[str], Opt(help="sae:PATH to probe a dictionary's features instead of the "
                                             "neurons (every unit is ranked).")] = None,
    dictionary: Annotated[Optional[str], Opt(help="Dictionary folder (SAE or baseline) whose features are "
                                                  "probed; the same as --units sae:PATH.")] = None,
    device: DeviceOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """k-sparse probing (Gurnee et al. 2023): precision, recall and F1 for k = 1, 2, 4, ... units."""
    from autointerp.config import load_config
    from autointerp.pipeline import probe as run_probe

    _check_format(output, ("table", "json"))
    units, dictionary = _dictionary_units(units, dictionary)
    if units is not None:
        raise UsageError(f"probe ranks every unit of the layer; --units takes only sae:PATH, not {units!r}")
    cfg = load_config(config, dict(model=model, corpus=corpus, tokens=tokens, dictionary=dictionary, device=device,
                                   db=db))
    result, probe_id = run_probe(cfg, layer, concept, method, " ".join(sys.argv))
    rows = [{"k": r.k, "precision": r.precision, "recall": r.recall, "f1": r.f1, "units": list(r.units)}
            for r in result.results]
    if output == "json":
        out.print_json(json.dumps({"concept": result.concept, "layer": result.layer, "kind": result.kind,
                                   "method": result.method, "n_train": result.n_train, "n_test": result.n_test,
                                   "results": rows}))
        return
    of = "" if result.kind == "neuron" else f" ({result.kind} features)"
    table = Table("k", "precision", "recall", "F1", "units", title=f"{result.concept} at layer {result.layer}{of} "
                  f"({result.method}; {result.n_train:,} train / {result.n_test:,} test tokens, "
                  f"{100 * result.positive_rate_test:.1f}% positive)")
    for r in rows:
        units = ", ".join(map(str, r["units"][:8])) + (" ..." if len(r["units"]) > 8 else "")
        table.add_row(str(r["k"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", units)
    out.print(table)
    out.print(f"best F1 {result.best.f1:.3f} at k={result.best.k}; stored in {cfg.db} (probe {probe_id})")


LENS_COLUMNS = 8  # positions the lens table shows at once


@app.command()
def lens(
    text: Annotated[str, typer.Argument(help="Text to read through every layer.")],
    position: Annotated[Optional[int], Opt(help="Token position to show (0-based; negative from the end; "
                                                "default: every position, top-1 only).")] = None,
    top: Annotated[int, Opt(help="Tokens per layer at --position.")] = 5,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """The logit lens (METHODS.md §4): what the residual stream after each block predicts as the next token."""
    from autointerp.config import load_config
    from autointerp.subject.lens import logit_lens
    from autointerp.subject.model import load_subject

    _check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, device=device))
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    result = logit_lens(subject, text, top=max(1, top))
    if not result.tokens:
        raise UsageError("the text has no tokens; give some text, e.g. autointerp lens 'def f(self):'")
    names = ["embeddings"] + [f"after block {i}" for i in range(len(result.top) - 1)]
    if position is not None and not -len(result.tokens) <= position < len(result.tokens):
        raise UsageError(f"--position {position} is out of range: the text has {len(result.tokens)} tokens")
    if output == "json":
        out.print_json(json.dumps({"tokens": result.tokens, "layers": [
            {"residual": name, "top": [[{"token": t, "p": p} for t, p in at] for at in layer]}
            for name, layer in zip(names, result.top)]}))
        return
    if position is None:
        shown = range(max(0, len(result.tokens) - LENS_COLUMNS), len(result.tokens))
        note = f" (the last {LENS_COLUMNS}; --position for any other)" if len(result.tokens) > LENS_COLUMNS else ""
        table = Table("residual", title=f"top-1 next token at each position{note}")
        for p in shown:
            table.add_column(Text(repr(result.tokens[p])))
        for name, layer in zip(names, result.top):
            table.add_row(name, *(Text(f"{layer[p][0][0]!r} {layer[p][0][1]:.2f}") for p in shown))
    else:
        table = Table("residual", *(f"#{i + 1}" for i in range(len(result.top[0][0]))),
                      title=f"next token after {result.tokens[position]!r} (position {position % len(result.tokens)})")
        for name, layer in zip(names, result.top):
            table.add_row(name, *(Text(f"{t!r} {p:.2f}") for t, p in layer[position]))
    out.print(table)


sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders and baseline dictionaries as units.")
app.add_typer(sae_app, name="sae")


@sae_app.command("train")
def sae_train(
    layer: Annotated[int, Opt(help="0-based layer whose activations the dictionary reads.")],
    out_dir: Annotated[str, Opt("--out", help="New folder for the dictionary (cfg.json + safetensors).")],
    kind: Annotated[str, Opt(help="sae (default), or a baseline: pca, ica, random, default.")] = "sae",
    site: Annotated[str, Opt(help="resid (residual stream after the block, default) or mlp (the neurons).")] = "resid",
    ratio: Annotated[float, Opt(help="SAE features per input dimension (random: half as many directions).")] = 4.0,
    alpha: Annotated[float, Opt(help="SAE L1 coefficient (loss: summed squared error + alpha * L1); 1.0 gives "
                                     "mean L0 about 20 on the bundled model's residual stream.")] = 1.0,
    epochs: Annotated[int, Opt(help="SAE passes over the fitting activations.")] = 10,
    fit_tokens: Annotated[int, Opt(help="Tokens of activations to fit on.")] = 200_000,
    fit_corpus: Annotated[str, Opt(help="Corpus to fit on (default stdlib:fit, the split the bundled model "
                                        "was trained on).")] = "stdlib:fit",
    eval_tokens: Annotated[int, Opt(help="Held-out tokens to evaluate on.")] = 50_000,
    model: ModelOpt = None,
    corpus: EvalCorpusOpt = None,
    device: DeviceOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """Fit an SAE (METHODS.md §7) or a baseline dictionary on one layer; evaluate it; explain its features with
    `autointerp run --layer N --units sae:OUT`."""
    from autointerp.config import load_config
    from autointerp.pipeline import train_dictionary

    _check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, device=device, db=db))
    report = train_dictionary(cfg, layer, kind, site, out_dir, ratio=ratio, alpha=alpha, epochs=epochs,
                              fit_tokens=fit_tokens, fit_corpus=fit_corpus, eval_tokens=eval_tokens,
                              command=" ".join(sys.argv))
    _print_dictionary(report, output, cfg.db)


@sae_app.command("eval")
def sae_eval(
    path: Annotated[str, typer.Argument(help="Dictionary folder: autointerp, SAELens or sparsify layout.")],
    layer: Annotated[int, Opt(help="0-based layer it reads.")],
    eval_tokens: Annotated[int, Opt(help="Tokens to evaluate on.")] = 50_000,
    model: ModelOpt = None,
    corpus: EvalCorpusOpt = None,
    device: DeviceOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """FVU, mean L0, dead features and the subject's loss with the layer spliced (SAEs); stored."""
    from autointerp.config import load_config
    from autointerp.pipeline import evaluate_dictionary

    _check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, device=device, db=db))
    _print_dictionary(evaluate_dictionary(cfg, path, layer, eval_tokens, " ".join(sys.argv)), output, cfg.db)


def _print_dictionary(report, output: str, db: str) -> None:
    from dataclasses import asdict

    if output == "json":
        out.print_json(json.dumps(asdict(report)))
        return
    table = Table(title=f"{report.path}: layer {report.layer}, {report.n_tokens:,} held-out tokens")
    for name in ("kind", "site", "features", "FVU", "mean L0", "dead", "loss clean", "loss spliced"):
        table.add_column(name, no_wrap=True)
    table.add_row(report.kind, report.site, f"{report.n_features:,}", _fmt(report.fvu), f"{report.mean_l0:.1f}",
                  f"{report.dead_features:,}", _fmt(report.loss_clean), _fmt(report.loss_spliced))
    out.print(table)
    out.print(f"stored in {db}; explain its features: autointerp run --layer {report.layer} --units sae:{report.path}")


@app.command()
def models(
    check: Annotated[bool, Opt("--check", help="Probe each profile: reachable, logprobs, tool calls.")] = False,
    output: FormatOpt = "table",
    config: ConfigOpt = None,
) -> None:
    """List the LLM profiles of the config (its models.NAME tables); with --check, probe each one."""
    import asyncio

    from autointerp.config import load_config
    from autointerp.llm.check import check_profile
    from autointerp.llm.client import LLMClient

    _check_format(output, ("table", "json"))
    cfg = load_config(config)
    rows = []
    for name, profile in cfg.models.items():
        row = {"name": name, "model": profile.model, "base_url": profile.resolved_base_url() or "(openai default)",
               "api_key_env": profile.api_key_env, "logprobs": profile.supports_logprobs,
               "tools": profile.supports_tools, "concurrency": profile.concurrency,
               "price_in_per_mtok": profile.price_in_per_mtok, "price_out_per_mtok": profile.price_out_per_mtok}
        if check:
            async def probe(p=profile, n=name):
                async with LLMClient(p, n) as client:
                    return await check_profile(client)

            try:
                row["check"] = asyncio.run(probe())
            except UsageError as e:  # e.g. the key's environment variable is not set
                row["check"] = {"reachable": False, "logprobs": None, "tools": None, "error": str(e)}
        rows.append(row)
    if output == "json":
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no model profiles; add [models.NAME] tables to autointerp.toml (see README: Configuration)")
        return
    table = Table("name", "model", "base_url", "key env", "logprobs", "tools", *(["check"] if check else []))
    for r in rows:
        cells = [r["name"], r["model"], r["base_url"], r["api_key_env"], str(r["logprobs"]), str(r["tools"])]
        if check:
            c = r["check"]
            cells.append(c["error"] or f"reachable, logprobs={c['logprobs']}, tools={c['tools']}")
        table.add_row(*(Text(x) for x in cells))
    out.print(table)


def _capture_progress():
    """A progress display on stderr and the ``on_capture_start`` hook that adds the capture bar (tokens, tok/s).

    Transient: it disappears when done, so a failed run leaves only its one-line error."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err, transient=True)

    def on_capture_start(total: int | None):
        task = progress.add_task("capture (tokens)", total=total, rate="")
        t0 = time.time()

        def advance(n: int) -> None:
            progress.advance(task, n)
            progress.update(task, rate=f"{progress.tasks[task].completed / max(time.time() - t0, 1e-9):,.0f} tok/s")

        return advance

    return progress, on_capture_start


def _summary_json(s) -> dict:
    return {
        "run_id": s.run_id, "db": s.db, "layer": s.layer, "explainer": s.explainer, "simulator": s.simulator,
        "baseline": s.baseline, "units_total": s.units_total, "units_done": len(s.outcomes),
        "units_skipped": s.units_skipped, "unit_kind": s.unit_kind, "n_tokens": s.n_tokens, "mean_score": s.mean_score,
        "median_score": s.median_score, "stopped": s.stopped, "llm_estimate": s.estimate, "llm_usage": s.llm_usage,
        "wall_s": round(s.wall_s, 2), "capture_s": round(s.capture_s, 2), "explain_s": round(s.explain_s, 2),
        "units": [{"unit": o.unit, "score": o.score, "status": o.status, "explanation": o.explanation}
                  for o in sorted(s.outcomes, key=lambda o: o.unit)],
    }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _print_summary(s) -> None:
    label = f"{s.explainer} explainer" + (" (BASELINE: the non-LLM floor)" if s.baseline else "")
    out.print(f"[bold]layer {s.layer}[/bold]: {len(s.outcomes)} units explained and scored"
              + (f", {s.units_skipped} already done by an earlier run" if s.units_skipped else "")
              + f" in {s.wall_s:.1f}s")
    if s.capture_s:
        out.print(f"captured {s.n_tokens:,} tokens in {s.capture_s:.1f}s ({s.n_tokens / s.capture_s:,.0f} tok/s)")
    if s.explain_s:
        out.print(f"explained and scored in {s.explain_s:.1f}s")
    out.print(f"{label}; {s.simulator} simulator; score = Pearson r on held-out test windows (top + random)")
    out.print(f"mean score {_fmt(s.mean_score)}, median {_fmt(s.median_score)}, "
              f"{len(s.outcomes) - len(s.scores)} units without a defined score")
    scored = sorted((o for o in s.outcomes if o.score is not None), key=lambda o: -o.score)
    if scored:
        table = Table("unit", "score", "explanation", title="best and worst units")
        picks = scored[:5] + ([None] if len(scored) > 10 else []) + scored[max(5, len(scored) - 5):]
        for o in picks:
            if o is None:
                table.add_row("...", "", "")
            else:
                name = f"{s.layer}/{o.unit}" if s.unit_kind == "neuron" else f"{s.unit_kind}@{s.layer}/{o.unit}"
                table.add_row(name, _fmt(o.score), Text(o.explanation))
        out.print(table)
    if s.llm_usage:
        u = s.llm_usage
        out.print(f"LLM: {u['calls']:,} calls ({u['errors']} failed), {u['tokens_in']:,} tokens in, "
                  f"{u['tokens_out']:,} out, ${u['cost_usd']:.4f}; per unit: {u['per_unit']['calls']} calls, "
                  f"{u['per_unit']['tokens_in']:,} in, {u['per_unit']['tokens_out']:,} out")
    if s.stopped:
        out.print(f"[yellow]stopped early: {s.stopped}[/yellow]; the same command resumes with the units left")
    out.print(f"results in {s.db} (run {s.run_id}); see: autointerp leaderboard --layer {s.layer}")


@app.command()
def leaderboard(
    layer: Annotated[Optional[int], Opt(help="Only this layer.")] = None,
    explainer: Annotated[Optional[str], Opt(help="Only explanations by this explainer.")] = None,
    min_score: Annotated[Optional[float], Opt(help="Only scores at or above this.")] = None,
    by: Annotated[Optional[str], Opt(help="'explainer': one row per explainer; 'dictionary': per unit kind "
                                          "(neurons, SAE and baseline features) and layer.")] = None,
    sort: Annotated[str, Opt(help="score (default, best first) or unit.")] = "score",
    limit: Annotated[Optional[int], Opt(help="At most this many rows.")] = None,
    output: Annotated[str, Opt("--format", help="table, json or csv.")] = "table",
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Best explanation per unit (a SQL view), or summaries per explainer (--by explainer) or per kind of unit
    (--by dictionary: neurons vs SAE and baseline features)."""
    from autointerp.config import load_config

    _check_format(output, ("table", "json", "csv"))
    if by not in (None, "explainer", "dictionary"):
        raise UsageError(f"--by {by!r} is not supported; use --by explainer or --by dictionary")
    if sort not in ("score", "unit"):
        raise UsageError(f"--sort {sort!r} is not supported; use score or unit")
    store = _open_existing(load_config(config, {"db": db}).db)
    if by == "explainer":
        rows = store.by_explainer(layer=layer, min_score=min_score)
        cols = ["explainer", "simulator", "units", "mean", "median", "ci_low", "ci_high"]
    elif by == "dictionary":
        rows = store.by_dictionary(layer=layer, min_score=min_score)
        cols = ["layer", "family", "kind", "explainer", "simulator", "units", "undefined", "mean", "median",
                "ci_low", "ci_high"]
        if output == "table":
            return _print_by_dictionary(rows)
    else:
        rows = store.leaderboard(layer=layer, explainer=explainer, min_score=min_score, order=sort, limit=limit)
        cols = ["layer", "unit", "kind", "score", "score_top", "score_random", "explainer", "simulator", "explanation"]
        if output == "table":
            return _print_leaderboard(rows)
    _emit(rows, cols, output)


@app.command()
def show(
    unit: Annotated[str, typer.Argument(help="LAYER/UNIT, e.g. 13/42; KIND@LAYER/UNIT for a dictionary feature, "
                                             "e.g. sae:82a38cf9@3/17 (as the leaderboard shows it).")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
    windows: Annotated[int, Opt(help="Top windows to show.")] = 5,
) -> None:
    """One unit's card: statistics, explanations with scores, top windows with activating tokens highlighted."""
    from autointerp.config import load_config

    _check_format(output, ("table", "json"))
    kind, _, where = unit.rpartition("@")
    try:
        layer, u = (int(x) for x in where.split("/"))
    except ValueError:
        raise UsageError(f"{unit!r} is not LAYER/UNIT; write e.g. autointerp show 13/42 (or sae:HASH@13/42)")
    card = _open_existing(load_config(config, {"db": db}).db).unit_card(layer, u, kind or "neuron")
    if output == "json":
        out.print_json(json.dumps(card))
        return
    from autointerp.report import render_unit_card

    render_unit_card(out, card, windows)


def _open_existing(path: str):
    """Open a results DB for reading; a missing file is an error, not a new empty DB."""
    from pathlib import Path

    from autointerp.db import open_db

    if not Path(path).is_file():
        raise UsageError(f"no results database at {path}; run 'autointerp run --layer N' first or pass --db")
    return open_db(path)


def _dictionary_units(units: str | None, dictionary: str | None) -> tuple[str | None, str | None]:
    """``--units sae:PATH`` means every feature of that dictionary: returns (units, dictionary) with it split out."""
    if units is None or not units.startswith("sae:"):
        return units, dictionary
    if dictionary is not None:
        raise UsageError("give the dictionary once: --units sae:PATH, or --dictionary PATH --units 0:32")
    return None, units[len("sae:"):]


def _check_format(value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"--format {value!r} is not supported here; use {' or '.join(allowed)}")


def _emit(rows: list[dict], cols: list[str], output: str) -> None:
    if output == "json":
        out.print_json(json.dumps(rows))
    elif output == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        if not rows:
            out.print("no scored explanations match; run: autointerp run --layer N")
            return
        table = Table(*cols)
        for r in rows:
            table.add_row(*(Text(_fmt(v)) if isinstance(v, float) else Text(str(v)) for v in (r.get(c) for c in cols)))
        out.print(table)


def _print_leaderboard(rows: list[dict]) -> None:
    """Leaderboard for a terminal: numbers never wrap, the explanation takes the remaining width."""
    if not rows:
        out.print("no scored explanations match; run: autointerp run --layer N")
        return
    sims = sorted({r["simulator"] for r in rows})
    table = Table(caption=f"test-split Pearson r; simulator: {', '.join(sims)}", expand=True)
    for name in ("unit", "score", "top", "random", "explainer"):
        table.add_column(name, no_wrap=True)
    table.add_column("explanation", ratio=1, overflow="fold")
    for r in rows:
        unit = f"{r['layer']}/{r['unit']}" if r["kind"] == "neuron" else f"{r['kind']}@{r['layer']}/{r['unit']}"
        table.add_row(unit, _fmt(r["score"]), _fmt(r["score_top"]), _fmt(r["score_random"]), r["explainer"],
                      Text(r["explanation"]))
    out.print(table)


def _print_by_dictionary(rows: list[dict]) -> None:
    """The SAE-versus-baselines table: one row per layer, kind of unit, explainer and simulator."""
    if not rows:
        out.print("no scored explanations match; run: autointerp run --layer N [--units sae:PATH]")
        return
    table = Table(caption="test-split Pearson r over units with a defined score; undefined: never fired on test")
    for name in ("layer", "units of", "explainer / simulator", "n", "undef.", "mean", "95% CI", "median"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        table.add_row(str(r["layer"]), r["kind"], f"{r['explainer']} / {r['simulator']}", str(r["units"]),
                      str(r["undefined"]), _fmt(r["mean"]), f"{_fmt(r['ci_low'])}-{_fmt(r['ci_high'])}",
                      _fmt(r["median"]))
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the command
    argv = [a for a in argv if a != "--debug"]
    try:
        code = app(args=argv, standalone_mode=False)  # typer returns 130 for Ctrl-C, an exit code for Exit
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except UsageError as e:
        if debug:
            traceback.print_exc()
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.exceptions.TyperException as e:  # bad flags (typer's click errors derive from it): status 2
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted: finished units are saved; run the same command again to resume", markup=False)
        sys.exit(130)
    except sqlite3.Error as e:
        if debug:
            traceback.print_exc()
        err.print(f"error: database problem: {e}; pass another --db or check the file", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
