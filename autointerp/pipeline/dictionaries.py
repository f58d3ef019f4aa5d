"""``autointerp sae train`` and ``autointerp sae eval``: fit a dictionary (an SAE, or a baseline: PCA, ICA, random
directions, the default basis) on a layer's activations, and measure it (FVU, L0, dead features, spliced loss).

    >>> report = train_dictionary(load_config(), layer=3, family="sae", site="resid", out="runs/l3-sae")
    >>> train_dictionary(load_config(), 3, "sae", "mlp", "runs/l3-mlp", DictionarySettings(ratio=8, epochs=20))
    >>> report.fvu, report.mean_l0, report.loss_spliced
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from autointerp.config import Config
from autointerp.corpus import iter_token_windows
from autointerp.db import Store, open_db
from autointerp.errors import UsageError
from autointerp.pipeline.inputs import existing_db, load_inputs
from autointerp.subject.sae import (
    SAETrainConfig,
    SparseAutoencoder,
    default_basis,
    dictionary_metrics,
    ica_dictionary,
    pca_dictionary,
    random_dictionary,
    spliced_loss,
    train_sae,
)
from autointerp.subject.sae_formats import read_placement
from autointerp.subject.sites import canonical_site
from autointerp.subject.units import collect_activations, load_unit_space

DICTIONARY_FAMILIES = ("sae", "pca", "ica", "random", "default")
FIT_CORPUS = "stdlib:fit"  # dictionaries are fitted on the split the bundled model was trained on, scored on the rest


@dataclass(frozen=True)
class DictionarySettings:
    """How ``train_dictionary`` fits and measures a dictionary; each field is the ``sae train`` flag of its name."""

    ratio: float = 4.0  # features per input dimension: ratio x d_in for an SAE, ratio x d_in / 2 random directions
    alpha: float = 1.0  # the SAE's L1 coefficient; the CLI's default too (mean L0 about 20 on the bundled model)
    epochs: int = 10  # SAE passes over the fitting activations
    fit_tokens: int = 200_000  # tokens of activations to fit on
    fit_corpus: str = FIT_CORPUS  # the corpus they are read from
    eval_tokens: int = 50_000  # held-out tokens of cfg.corpus it is evaluated on (``evaluate_dictionary``)


@dataclass
class DictionaryReport:
    path: str
    kind: str  # the units' kind, family:hash8
    family: str
    layer: int
    site: str
    d_in: int
    n_features: int
    n_tokens: int  # evaluation tokens
    fvu: float | None
    mean_l0: float
    dead_features: int
    loss_clean: float | None  # nats per predicted token (SAEs only)
    loss_spliced: float | None
    n_fit_tokens: int | None = None  # set by train_dictionary
    eval_id: str = ""


def train_dictionary(cfg: Config, layer: int, family: str, site: str, out: str,
                     settings: DictionarySettings = DictionarySettings(), command: str = "") -> DictionaryReport:
    """Fit a dictionary on ``layer``'s ``site`` activations over ``settings.fit_tokens`` of ``settings.fit_corpus``,
    save it to the new folder ``out`` (its metadata names the layer, site and model, so ``run --units sae:OUT`` can
    check them), then evaluate it like ``evaluate_dictionary`` on ``settings.eval_tokens``.

    Families: ``sae`` (tied for residual-width sites, untied for MLP activations, docs/methods.md §7; ``ratio`` x d_in
    features, L1 coefficient ``alpha``), ``pca`` and ``ica`` (d_in directions), ``random`` (``ratio`` x d_in / 2
    directions) and ``default`` (the site's own coordinates); baseline directions are sign-split into two features
    each, so every feature is non-negative like a neuron.
    """
    ratio, fit_tokens, fit_corpus = settings.ratio, settings.fit_tokens, settings.fit_corpus
    if family not in DICTIONARY_FAMILIES:
        raise UsageError(f"--kind {family!r} is not one of {', '.join(DICTIONARY_FAMILIES)}")
    site = canonical_site(site)
    _check_numbers(cfg, ratio=ratio, alpha=settings.alpha, epochs=settings.epochs, fit_tokens=fit_tokens,
                   eval_tokens=settings.eval_tokens)
    target = _check_out(out)
    store = existing_db(cfg.db)
    fitting = load_inputs(cfg, corpus=fit_corpus, layers=[layer])
    subject, fit = fitting.subject, fitting.corpus
    load_inputs(cfg, subject=subject)  # the held-out corpus, checked before the fit
    model_hash = subject.weights_hash()
    windows = iter_token_windows(fit, subject.tokenizer, cfg.window, max(1, fit_tokens // cfg.window))
    acts = collect_activations(subject, windows, layer, site, max_tokens=fit_tokens, batch_size=cfg.batch_size)
    metadata = {"layer": layer, "site": site, "model": cfg.model, "model_hash": model_hash,
                "fit_corpus": fit_corpus, "fit_tokens": len(acts), "seed": cfg.seed}
    d_in = acts.shape[1]
    if family == "sae":
        dictionary = train_sae(acts, SAETrainConfig(ratio=ratio, alpha=settings.alpha, tied=site != "mlp",
                                                    epochs=settings.epochs, seed=cfg.seed, metadata=metadata))
    elif family == "default":
        dictionary = replace(default_basis(d_in, split_signs=True), metadata=metadata)
    elif family == "random":
        dictionary = replace(random_dictionary(acts, max(1, round(ratio * d_in / 2)), seed=cfg.seed),
                             metadata=metadata)
    elif family == "pca":
        dictionary = replace(pca_dictionary(acts, min(d_in, len(acts))), metadata=metadata)
    else:
        dictionary = replace(ica_dictionary(acts, min(d_in, len(acts)), seed=cfg.seed), metadata=metadata)
    dictionary.save(target)
    report = evaluate_dictionary(cfg, out, layer, settings.eval_tokens, command, store=store, subject=subject)
    report.n_fit_tokens = len(acts)
    return report


def evaluate_dictionary(cfg: Config, path: str, layer: int | None, eval_tokens: int = 50_000, command: str = "", *,
                        store: Store | None = None, subject=None, site: str | None = None) -> DictionaryReport:
    """FVU, mean L0 and dead features of the dictionary folder ``path`` on ``eval_tokens`` of ``cfg.corpus`` (the
    held-out split by default), and for an SAE the subject's loss with the site replaced by its reconstruction;
    stored in ``dictionary_evals``. ``layer`` / ``site`` None: the dictionary's own."""
    _check_numbers(cfg, eval_tokens=eval_tokens)
    store = store or existing_db(cfg.db)
    inputs = load_inputs(cfg, subject=subject, layers=[] if layer is None else [layer])
    subject, corpus = inputs.subject, inputs.corpus
    space = load_unit_space(path, layer, subject, site)
    layer = read_placement(path, layer).resolve(layer, site)[0]
    max_windows = max(1, eval_tokens // cfg.window)
    windows = list(iter_token_windows(corpus, subject.tokenizer, cfg.window, max_windows))
    acts = collect_activations(subject, windows, layer, space.site, max_tokens=eval_tokens,
                               batch_size=cfg.batch_size)
    metrics = dictionary_metrics(space.dictionary, acts)
    loss_clean = loss_spliced = None
    if isinstance(space.dictionary, SparseAutoencoder):
        loss_clean, loss_spliced = spliced_loss(subject, space.dictionary, windows, layer, space.site,
                                                batch_size=cfg.batch_size)
    report = DictionaryReport(
        path=str(path), kind=space.kind, family=space.family, layer=layer, site=space.site,
        d_in=space.dictionary.d_in, n_features=metrics.n_features, n_tokens=metrics.n_tokens, fvu=metrics.fvu,
        mean_l0=metrics.mean_l0, dead_features=metrics.dead_features, loss_clean=loss_clean,
        loss_spliced=loss_spliced,
    )
    cfg_file = Path(path) / "cfg.json"
    config = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {"format": space.dictionary.metadata.get(
        "format"), "path": str(path)}
    store = store or open_db(cfg.db)
    report.eval_id = store.save_dictionary_eval(command=command, model=cfg.model, model_hash=subject.weights_hash(),
                                                corpus=cfg.corpus, report=report, config=config)
    return report


def _check_numbers(cfg: Config, **values: float) -> None:
    """UsageError for a numeric option out of its range (names as the ``sae`` flags spell them)."""
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if name in ("fit_tokens", "eval_tokens") and value < cfg.window:
            raise UsageError(f"{flag} {value} is less than one window of {cfg.window} tokens; give {cfg.window} "
                             "or more")
        if name == "epochs" and value < 1:
            raise UsageError(f"{flag} {value}: give 1 or more passes")
        if name == "ratio" and not value > 0:
            raise UsageError(f"{flag} {value}: give a positive number of features per input dimension")
        if name == "alpha" and not value >= 0:
            raise UsageError(f"{flag} {value}: give 0 or more")


def _check_out(out: str) -> Path:
    """The new dictionary folder ``out``: UsageError when it is a file, a folder that is not empty, or cannot be
    created (its nearest existing parent is not a writable folder)."""
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {out} is a file; give a new folder for the dictionary")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"{out} already exists and is not empty; choose another --out or remove it")
    parent = target.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create a folder under {parent}; choose another --out")
    return target
