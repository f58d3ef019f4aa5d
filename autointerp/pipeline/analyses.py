"""``autointerp analyze`` and ``autointerp probe``: the statistical analyses and sparse probes of one or more layers,
each from one capture pass, stored in the results DB.

    >>> result = analyze(load_config(), "all")               # dead units, detectors, suppression, positional units
    >>> [(r.layer, pid) for r, pid in probe(load_config(), "all", "string")]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autointerp.config import Config

from autointerp.db import NewAnalysis, open_db
from autointerp.errors import UsageError
from autointerp.pipeline.inputs import capture_config, existing_db, load_inputs, package_versions, unit_space
from autointerp.subject.analyses import REGULARIZATION_TOP, analyze_layer
from autointerp.subject.capture import capture
from autointerp.subject.model import load_subject
from autointerp.subject.probing import (
    BUILTIN_CONCEPTS,
    DEFAULT_TOKENS,
    ProbeResult,
    ProbeSettings,
    load_span_concept,
    probe_layers,
)
from autointerp.subject.units import RESIDUAL, parse_layers


@dataclass
class AnalysisResult:
    run_id: str
    db: str
    n_tokens: int
    summaries: list[dict[str, Any]]  # LayerSummary.to_json() per layer
    units: list[dict[str, Any]]  # UnitAnalysis.to_json() per unit, plus "position_profile"
    capture_s: float
    wall_s: float


def analyze(cfg: Config, layers: str, command: str = "",
            on_capture_start: Callable[[int | None], Callable[[int], None]] | None = None) -> AnalysisResult:
    """Every statistical analysis (dead units, n-gram coverage, token/trigram detectors, suppression, positional
    units) for ``layers`` in ONE capture pass, stored in the DB (analysis_runs, layer_analyses, unit_analyses)."""
    t0 = time.time()
    store = existing_db(cfg.db)  # checked now; a new file is created only when there is something to store
    inputs = load_inputs(cfg)
    subject, corpus = inputs.subject, inputs.corpus
    wanted = parse_layers(layers, subject.n_layers)
    cap_cfg = capture_config(cfg, wanted, ngrams=True, top_units=REGULARIZATION_TOP)
    progress = on_capture_start(cfg.tokens) if on_capture_start else None
    t_capture = time.time()
    caps = capture(subject, corpus, cap_cfg, progress)
    capture_s = time.time() - t_capture
    summaries, units = [], []
    for layer in wanted:
        unit_results, summary = analyze_layer(subject, caps[layer], caps[layer].ngrams)
        profile = caps[layer].position_profile().T  # [U, W]
        summaries.append(summary.to_json())
        units += [{**u.to_json(), "position_profile": [round(x, 5) for x in profile[u.unit].tolist()]}
                  for u in unit_results]
    n_tokens = caps[wanted[0]].n_tokens
    store = store or open_db(cfg.db)
    analysis = NewAnalysis(command=command, config=cfg.snapshot(), versions=package_versions(), model=cfg.model,
                           model_hash=subject.weights_hash(), corpus=cfg.corpus, n_tokens=n_tokens)
    run_id = store.save_analysis(analysis, summaries, units)
    return AnalysisResult(run_id, cfg.db, n_tokens, summaries, units, capture_s, time.time() - t0)


def probe(cfg: Config, layers: str, concept: str, method: str = "mean_diff", command: str = "",
          context: int | None = None, residual: bool = False,
          on_progress: Callable[[str, int], None] | None = None) -> list[tuple[ProbeResult, str]]:
    """k-sparse probes of the units of ``layers`` (``N``, ``N:M``, ``N,M`` or ``all``: the MLP neurons, or the features
    of ``cfg.dictionary``, which belongs to one layer) for a built-in concept (labelled by Python's tokenize on
    ``cfg.corpus``) or a JSONL span-concept file, every layer from one set of forward passes; each layer stored as one
    probe_results row. ``context``: preceding tokens fed before each window (default: ``probing.MAX_CONTEXT`` within
    the model's positions). ``residual``: probe the residual stream's coordinates instead (kind ``resid``). Returns
    (ProbeResult, probe id) per layer, in layer order; ``on_progress`` as in ``probing.probe_layers``."""
    if concept.endswith(".jsonl"):
        if not Path(concept).is_file():
            raise UsageError(f"concept file {concept} not found; give a .jsonl of {{\"text\", \"spans\"}} lines")
        target = load_span_concept(concept)
    elif concept in BUILTIN_CONCEPTS:
        target = concept
    else:
        raise UsageError(f"unknown concept {concept!r}; built-in: {', '.join(BUILTIN_CONCEPTS)}, or a .jsonl file")
    if method not in ("mean_diff", "adaptive"):
        raise UsageError(f"--method {method!r} is not supported; use mean_diff or adaptive")
    store = existing_db(cfg.db)
    if isinstance(target, str):  # labelled from cfg.corpus: the preamble's subject and corpus
        inputs = load_inputs(cfg)
        subject, corpus = inputs.subject, inputs.corpus
    else:  # the spans are the texts
        subject, corpus = load_subject(cfg.model, cfg.device, cfg.dtype), None
    wanted = parse_layers(layers, subject.n_layers)
    if cfg.dictionary is not None and len(wanted) > 1:
        raise UsageError("a dictionary reads one layer; give --layer N with --units sae:PATH")
    space = RESIDUAL if residual else unit_space(cfg.model_copy(update={"layer": wanted[0]}), subject)
    settings = ProbeSettings(window=cfg.window, max_tokens=cfg.tokens or DEFAULT_TOKENS, context=context,
                             method=method, seed=cfg.seed)
    results = probe_layers(subject, corpus, wanted, target, settings, space=space, on_progress=on_progress)
    model_hash = subject.weights_hash()
    store = store or open_db(cfg.db)
    return [(result, store.save_probe(command=command, model=cfg.model, model_hash=model_hash,
                                      corpus=None if corpus is None else cfg.corpus, result=result))
            for result in results]
