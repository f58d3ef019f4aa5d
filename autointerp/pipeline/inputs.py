"""The one preamble: a configuration turned into its checked inputs before anything is written.

    inputs = load_inputs(cfg)                               # subject, corpus (both checked against each other)
    space, units = run_units(cfg, inputs.subject)           # the unit space of cfg.layer and the units asked for
    capture_config(cfg, [cfg.layer])                        # every capture setting of the config, in one place

``run``, ``analyze``, ``probe`` and dictionary training all start here, so each check lives in one place: the layer
(``Subject.check_layer``), the window against the model's positions and the corpus against the window
(``subject.capture.check_window`` / ``check_corpus``, which the capture itself also uses), the unit list
(``subject.units.parse_units``) and the results file (``existing_db``: a corrupt, locked or newer file fails now; a
new one is created only once every input has been checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from autointerp.config import Config
from autointerp.corpus import Corpus, iter_token_windows, open_corpus
from autointerp.db import Store, check_db_target, open_db
from autointerp.subject.capture import CaptureConfig, check_corpus, check_window
from autointerp.subject.model import Subject, load_subject
from autointerp.subject.units import (
    GUARD_TOKENS,
    NEURONS,
    UnitSpace,
    check_reconstruction,
    load_unit_space,
    parse_units,
)


@dataclass(frozen=True)
class Inputs:
    """A config's subject and corpus, loaded and checked against each other."""

    subject: Subject
    corpus: Corpus


def load_inputs(cfg: Config, *, subject: Subject | None = None, corpus: str | None = None,
                layers: list[int] | None = None) -> Inputs:
    """Load (or take: ``subject``, shared by a sweep) the subject and open the corpus (``corpus``: another spec than
    ``cfg.corpus``, e.g. a dictionary's fitting corpus); check ``layers``, the window and the corpus."""
    opened = open_corpus(corpus or cfg.corpus, cfg.seed)
    subject = subject or load_subject(cfg.model, cfg.device, cfg.dtype)
    for layer in layers or []:
        subject.check_layer(layer)
    check_window(subject, cfg.window)
    check_corpus(opened, subject, cfg.window)
    return Inputs(subject, opened)


def unit_space(cfg: Config, subject: Subject, guard: bool = True) -> UnitSpace:
    """The run's units: the MLP neurons, or the features of ``cfg.dictionary`` (a folder) at ``cfg.layer`` and
    ``cfg.site`` (default: the dictionary's own). With ``guard`` an SAE first reconstructs a few thousand tokens of
    ``cfg.corpus`` at its site: the space's ``check`` holds FVU and mean L0; FVU > 1 is refused unless
    ``cfg.force_sae`` (``subject.units.check_reconstruction``)."""
    if cfg.dictionary is None:
        return NEURONS
    space = load_unit_space(cfg.dictionary, cfg.layer, subject, cfg.site)
    if not guard:
        return space
    windows = iter_token_windows(open_corpus(cfg.corpus, cfg.seed), subject.tokenizer, cfg.window,
                                 -(-GUARD_TOKENS // cfg.window))
    return check_reconstruction(subject, space, cfg.layer, windows, cfg.force_sae, batch_size=cfg.batch_size)


def run_units(cfg: Config, subject: Subject, guard: bool = True) -> tuple[UnitSpace, list[int]]:
    """The unit space of ``cfg.layer`` (``unit_space``) and the units ``cfg.units`` asks for (all when None)."""
    space = unit_space(cfg, subject, guard)
    return space, parse_units(cfg.units, space.n_units(subject))


def capture_config(cfg: Config, layers: list[int], **extra: Any) -> CaptureConfig:
    """The capture settings of ``cfg`` for ``layers`` (``extra``: what one command adds, e.g. n-gram counts)."""
    return CaptureConfig(layers=layers, window=cfg.window, top_k=cfg.top_k, n_random=cfg.n_random,
                         batch_size=cfg.batch_size, max_tokens=cfg.tokens, threshold=cfg.threshold,
                         firing=cfg.firing, seed=cfg.seed, range_windows=cfg.range_windows,
                         silent_windows=cfg.silent_windows, **extra)


def existing_db(path: str | Path) -> Store | None:
    """The store at ``path`` when the file exists (checked as by ``open_db``), else None after checking that it can be
    created: a command opens its database early this way and creates it only once every input has been checked."""
    if Path(path).exists():
        return open_db(path)
    check_db_target(path)
    return None


def package_versions() -> dict[str, str]:
    """The versions of the packages a run's results depend on, saved with the run."""
    names = ["autointerp", "torch", "transformers", "openai", "langgraph", "pydantic", "sqlite-utils", "numpy"]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out
