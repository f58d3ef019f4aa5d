"""``autointerp analyze``, ``probe`` and ``lens``: the statistical analyses of a layer's units."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from autointerp.cli.app import (
    ConfigOpt,
    CorpusOpt,
    DbOpt,
    DeviceOpt,
    FormatOpt,
    ModelOpt,
    Opt,
    TokensOpt,
    app,
    capture_progress,
    check_format,
    dictionary_units,
    out,
    print_json,
    probe_progress,
)
from autointerp.cli.flags import config_flag
from autointerp.cli.text import cell, markup
from autointerp.errors import UsageError


@app.command()
def analyze(
    layer: Annotated[str, Opt(help="Layer(s): N, N:M, N,M or all.")] = "all",
    model: ModelOpt = None,
    corpus: CorpusOpt = None,
    tokens: TokensOpt = None,
    device: DeviceOpt = None,
    seed: Annotated[Optional[int], Opt(help="Seed for corpus order.")] = None,
    firing: config_flag("firing") = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: Annotated[str, Opt("--format", help="table (per-layer summary) or json (one record per unit).")] = "table",
) -> None:
    """Dead units, n-gram detectors, suppression, positional units: every layer asked for, in one pass; stored."""
    from autointerp.config import load_config
    from autointerp.pipeline import analyze as run_analyses

    check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, tokens=tokens, device=device, seed=seed, db=db,
                                   firing=firing))
    progress, on_capture_start = capture_progress()
    with progress:
        result = run_analyses(cfg, layer, " ".join(sys.argv), on_capture_start)
    if output == "json":
        keys = ["layer", "unit", "dead", "firing_rate", "token_detector", "trigram_detector", "ngram_k",
                "positional_mi", "positional", "positional_kind", "positional_strength", "suppresses_triggers",
                "best_trigger_rank", "promoted", "suppressed", "top_share", "regularization", "threshold",
                "position_profile"]
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
    out.print(f"fires: {result.summaries[0]['firing_rule']}")
    out.print(f"stored in {markup(result.db)} (analysis {result.run_id}); "
              "per-unit records: autointerp analyze ... --format json")


@app.command()
def probe(
    layer: Annotated[str, Opt(help="Layer(s) whose units are probed: N, N:M, N,M or all (one set of forward "
                                   "passes for all of them).")],
    concept: Annotated[str, Opt(help="comment, string, docstring, keyword, identifier, number, operator, "
                                     "indent_ge2, or a .jsonl file of {text, spans}.")],
    method: Annotated[str, Opt(help="mean_diff (default) or adaptive (elastic-net thresholding).")] = "mean_diff",
    model: ModelOpt = None,
    corpus: Annotated[Optional[str], Opt(help="Corpus for built-in concepts (default stdlib).")] = None,
    tokens: Annotated[Optional[int], Opt(help="Labelled tokens to collect (default 100000).")] = None,
    units: Annotated[Optional[str], Opt(help="sae:PATH to probe a dictionary's features instead of the "
                                             "neurons, or resid for the residual stream's coordinates (the dense "
                                             "ceiling); every unit is ranked.")] = None,
    dictionary: Annotated[Optional[str], Opt(help="Dictionary folder (SAE or baseline) whose features are "
                                                  "probed; the same as --units sae:PATH.")] = None,
    context: Annotated[Optional[int], Opt(help="Tokens of the text before each window fed with it (default 448, "
                                               "or as many as the model's positions allow).")] = None,
    device: DeviceOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """k-sparse probing (Gurnee et al. 2023): precision, recall and F1 for k = 1, 2, 4, ... up to every unit."""
    from autointerp.config import load_config
    from autointerp.pipeline import probe as run_probe
    from autointerp.subject.probing import DEFAULT_TOKENS

    check_format(output, ("table", "json"))
    units, dictionary = dictionary_units(units, dictionary)
    residual = units == "resid"
    if residual and dictionary is not None:
        raise UsageError("--units resid probes the residual stream itself; drop --dictionary")
    if units is not None and not residual:
        raise UsageError(f"probe ranks every unit of the layer; --units takes only sae:PATH or resid, not {units!r}")
    if context is not None and context < 0:
        raise UsageError(f"--context {context} must be 0 or more tokens")
    cfg = load_config(config, dict(model=model, corpus=corpus, tokens=tokens, dictionary=dictionary, device=device,
                                   db=db))
    progress, on_progress = probe_progress(cfg.tokens or DEFAULT_TOKENS)
    with progress:
        stored = run_probe(cfg, layer, concept, method, " ".join(sys.argv), context=context, residual=residual,
                           on_progress=on_progress)
    if output == "json":  # one object per layer, one per line
        for result, _ in stored:
            sys.stdout.write(json.dumps({
                "concept": result.concept, "layer": result.layer, "kind": result.kind, "method": result.method,
                "context": result.context, "n_train": result.n_train, "n_test": result.n_test,
                "positive_rate_test": result.positive_rate_test,
                "results": [{"k": r.k, "precision": r.precision, "recall": r.recall, "f1": r.f1,
                             "units": list(r.units)} for r in result.results]}) + "\n")
        return
    first = stored[0][0]
    of = {"neuron": "", "resid": " (residual stream)"}.get(first.kind, f" ({first.kind} features)")
    facts = (f"{first.method}; {first.n_train:,} train / {first.n_test:,} test tokens, "
             f"{100 * first.positive_rate_test:.1f}% positive; each window after up to {first.context} tokens of "
             "context")
    if len(stored) == 1:
        table = Table("k", "precision", "recall", "F1", "units",
                      title=cell(f"{first.concept} at layer {first.layer}{of} ({facts})"))
        for r in first.results:
            shown = ", ".join(map(str, r.units[:8])) + (" ..." if len(r.units) > 8 else "")
            table.add_row(str(r.k), f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", shown)
        out.print(table)
        out.print(f"best F1 {first.best.f1:.3f} at k={first.best.k}; stored in {markup(cfg.db)} (probe {stored[0][1]})")
        return
    ks = [r.k for r in first.results]
    shown = list(range(len(ks)))
    if out.width < 8 * len(ks) + 40:  # a narrow terminal: every other k, and always the dense probe
        shown = sorted(set(shown[::2]) | {len(ks) - 1})
    caption = None if len(shown) == len(ks) else "other k: --format json, or one layer with --layer N"
    table = Table("layer", *(f"k={ks[i]}" for i in shown), "best", "top unit", caption=caption,
                  title=cell(f"{first.concept}: test F1 by layer and k{of} ({facts})"))
    for result, _ in stored:
        best = result.best
        table.add_row(str(result.layer), *(f"{result.results[i].f1:.3f}" for i in shown),
                      f"{best.f1:.3f} (k={best.k})", str(result.results[0].units[0]))
    out.print(table)
    top = max((result for result, _ in stored), key=lambda x: (x.best.f1, -x.best.k))
    out.print(f"best F1 {top.best.f1:.3f} at layer {top.layer}, k={top.best.k}; {len(stored)} probes stored in "
              f"{markup(cfg.db)}; one layer in detail: autointerp probe --layer {top.layer} "
              f"--concept {markup(concept)}")


LENS_COLUMNS = 8  # positions the lens table shows at once


@app.command()
def lens(
    text: Annotated[str, typer.Argument(help="Text to read through every layer.")],
    position: Annotated[Optional[int], Opt(help="Token position to show (0-based; negative from the end; "
                                                "default: every position, top-1 only).")] = None,
    top: Annotated[int, Opt(help="Tokens per layer at --position.", min=1)] = 5,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    output: FormatOpt = "table",
) -> None:
    """The logit lens (docs/methods.md §4): what the residual stream after each block predicts as the next token."""
    from autointerp.config import load_config
    from autointerp.subject.lens import logit_lens
    from autointerp.subject.model import load_subject

    check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, device=device))
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    result = logit_lens(subject, text, top=top)
    if not result.tokens:
        raise UsageError("the text has no tokens; give some text, e.g. autointerp lens 'def f(self):'")
    names = ["embeddings"] + [f"after block {i}" for i in range(len(result.top) - 1)]
    if position is not None and not -len(result.tokens) <= position < len(result.tokens):
        raise UsageError(f"--position {position} is out of range: the text has {len(result.tokens)} tokens")
    if output == "json":
        print_json({"tokens": result.tokens, "layers": [
            {"residual": name, "top": [[{"token": t, "p": p} for t, p in at] for at in layer]}
            for name, layer in zip(names, result.top)]})
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
                      title=cell(f"next token after {result.tokens[position]!r} (position "
                                 f"{position % len(result.tokens)})"))
        for name, layer in zip(names, result.top):
            table.add_row(name, *(Text(f"{t!r} {p:.2f}") for t, p in layer[position]))
    out.print(table)
