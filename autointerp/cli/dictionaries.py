"""``autointerp sae train``, ``eval``, ``inspect`` and ``export``: sparse autoencoders and baseline dictionaries."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from autointerp.cli.app import (
    ConfigOpt,
    DbOpt,
    DeviceOpt,
    EvalCorpusOpt,
    FormatOpt,
    ModelOpt,
    Opt,
    app,
    check_format,
    fmt,
    out,
    print_json,
)
from autointerp.cli.text import cell, markup

sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders and baseline dictionaries as units.")
app.add_typer(sae_app, name="sae")


@sae_app.command("train")
def sae_train(
    layer: Annotated[int, Opt(help="0-based layer whose activations the dictionary reads.")],
    out_dir: Annotated[str, Opt("--out", help="New folder for the dictionary (cfg.json + safetensors).")],
    kind: Annotated[str, Opt(help="sae (default), or a baseline: pca, ica, random, default.")] = "sae",
    site: Annotated[str, Opt(help="Hook site: resid_post (default), resid_pre, attn_out, mlp_out or mlp (the "
                                   "neurons' activations).")] = "resid_post",
    ratio: Annotated[float, Opt(help="SAE features per input dimension (random: half as many directions).")] = 4.0,
    alpha: Annotated[float, Opt(help="SAE L1 coefficient (loss: summed squared error + alpha * L1); 1.0 gives "
                                     "mean L0 about 20 on the bundled model's residual stream.")] = 1.0,
    epochs: Annotated[int, Opt(help="SAE passes over the fitting activations.", min=1)] = 10,
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
    """Fit an SAE (docs/methods.md §7) or a baseline dictionary on one layer; evaluate it; explain its features with
    `autointerp run --layer N --units sae:OUT`."""
    from autointerp.config import load_config
    from autointerp.pipeline import DictionarySettings, train_dictionary

    check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, device=device, db=db))
    settings = DictionarySettings(ratio=ratio, alpha=alpha, epochs=epochs, fit_tokens=fit_tokens,
                                  fit_corpus=fit_corpus, eval_tokens=eval_tokens)
    report = train_dictionary(cfg, layer, kind, site, out_dir, settings, command=" ".join(sys.argv))
    _print_dictionary(report, output, cfg.db)


@sae_app.command("eval")
def sae_eval(
    path: Annotated[str, typer.Argument(help="Dictionary folder: autointerp, SAELens, sparsify or Gemma Scope.")],
    layer: Annotated[Optional[int], Opt(help="0-based layer it reads (default: its own).")] = None,
    site: Annotated[Optional[str], Opt(help="Hook site it reads (default: its own).")] = None,
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

    check_format(output, ("table", "json"))
    cfg = load_config(config, dict(model=model, corpus=corpus, device=device, db=db))
    _print_dictionary(evaluate_dictionary(cfg, path, layer, eval_tokens, " ".join(sys.argv), site=site), output,
                      cfg.db)


@sae_app.command("inspect")
def sae_inspect(
    path: Annotated[str, typer.Argument(help="Dictionary folder (or params.npz): autointerp, SAELens, sparsify or "
                                             "Gemma Scope.")],
    layer: Annotated[Optional[int], Opt(help="Layer of a multi-layer sparsify checkpoint.")] = None,
    output: FormatOpt = "table",
) -> None:
    """What autointerp understood of a dictionary: format, site, layer, widths, activation, encoding options."""
    from autointerp.subject.sae_formats import describe, load_placement, read_placement

    check_format(output, ("table", "json"))
    placement = read_placement(path, layer)
    row = describe(placement, load_placement(placement))
    if output == "json":
        print_json(row)
        return
    table = Table(title=cell(str(placement.folder)), show_header=False)
    for key, value in row.items():
        shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
        table.add_row(key, cell("unknown (give --layer / --site)" if shown is None else str(shown)))
    out.print(table)


@sae_app.command("export")
def sae_export(
    path: Annotated[str, typer.Argument(help="SAE folder in any layout autointerp reads.")],
    to: Annotated[str, Opt("--to", help="Layout to write: autointerp, saelens, sparsify or gemma-scope.")],
    out_dir: Annotated[str, Opt("--out", help="New folder to write it into.")],
    layer: Annotated[Optional[int], Opt(help="Layer to name (default: its own; resid_pre of L+1 is resid_post "
                                             "of L).")] = None,
    site: Annotated[Optional[str], Opt(help="Site to name (default: its own).")] = None,
) -> None:
    """Write the same SAE in another tool's layout; the copy gives the same feature activations."""
    from autointerp.errors import UsageError
    from autointerp.subject.sae import SparseAutoencoder
    from autointerp.subject.sae_export import export
    from autointerp.subject.sae_formats import load_placement, read_placement

    placement = read_placement(path, layer)
    at, where = placement.resolve(layer, site)
    sae = load_placement(placement)
    if not isinstance(sae, SparseAutoencoder):
        raise UsageError(f"{path} is a baseline dictionary, not an SAE; only SAEs are exported")
    if at is None or where is None:
        raise UsageError(f"{path} does not say its layer and site; give --layer N and --site")
    folder = export(sae, out_dir, to, where, at)
    out.print(f"wrote {markup(str(folder))} ({to}, {where} of layer {at}); explain its features: autointerp run "
              f"--units sae:{markup(str(folder))}")


def _print_dictionary(report, output: str, db: str) -> None:
    from dataclasses import asdict

    if output == "json":
        print_json(asdict(report))
        return
    table = Table(title=cell(f"{report.path}: layer {report.layer}, {report.n_tokens:,} held-out tokens"))
    for name in ("kind", "site", "features", "FVU", "mean L0", "dead", "loss clean", "loss spliced"):
        table.add_column(name, no_wrap=True)
    table.add_row(cell(report.kind), cell(report.site), f"{report.n_features:,}", fmt(report.fvu),
                  f"{report.mean_l0:.1f}", f"{report.dead_features:,}", fmt(report.loss_clean),
                  fmt(report.loss_spliced))
    out.print(table)
    out.print(f"stored in {markup(db)}; explain its features: autointerp run --layer {report.layer} "
              f"--units sae:{markup(report.path)}")
