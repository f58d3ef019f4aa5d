"""One configuration tree, saved with every run.

    >>> cfg = load_config(overrides={"layer": 13})          # defaults < autointerp.toml < AUTOINTERP_* env < flags
    >>> cfg.model, cfg.corpus, cfg.db
    ('bundled', 'stdlib', 'autointerp.db')

Sources, later ones win: field defaults; ``autointerp.toml`` in the working directory (or the file given with
``--config``); environment variables ``AUTOINTERP_<FIELD>`` (e.g. ``AUTOINTERP_DB``, ``AUTOINTERP_TOKENS``);
command-line flags. LLM endpoints are named profiles in ``[models.NAME]`` tables (see ``autointerp.llm.profiles``);
API keys are never part of the config: a profile names the environment variable that holds its key.

**One tree, one name per setting.** Every setting has one name, used alike as a TOML key, an ``AUTOINTERP_*``
variable and a flag (``batch_size`` is ``--batch-size``); its description is the flag's help. ``SECTIONS`` groups
them: subject, capture, explainer, simulator, scoring, budget, storage, plus the ``models`` profiles. A TOML file may
write them flat (``tokens = 20000``) or in their section's table (``[capture]`` ``tokens = 20000``; in
``[explainer]`` and ``[simulator]``, ``name`` is the explainer or simulator itself). Names from before this layout
(``DEPRECATED``) are still read, for one release, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autointerp.errors import UsageError
from autointerp.llm.profiles import ModelProfile
from autointerp.scoring.scorer import SCORER_NAMES  # in the order they run

CONFIG_FILE = "autointerp.toml"
SECTIONS: dict[str, tuple[str, ...]] = {
    "subject": ("model", "layer", "units", "dictionary", "site", "force_sae", "device", "dtype"),
    "capture": ("corpus", "tokens", "window", "top_k", "n_random", "range_windows", "silent_windows", "batch_size",
                "threshold", "firing", "seed"),
    "explainer": ("explainer", "revise_rounds", "max_tool_calls", "max_unit_tokens", "best_of", "validate_windows",
                  "concurrency"),
    "simulator": ("simulator", "windows_per_request", "controls", "controls_units"),
    "scoring": ("scorers", "judge", "judge_batch", "judge_examples"),
    "budget": ("max_usd", "max_calls"),
    "storage": ("db", "log_logprobs", "tiktoken_file"),
}
DEPRECATED = {"max_rounds": "revise_rounds", "best_of_k": "best_of", "max_tokens": "max_unit_tokens"}  # until 0.3


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("bundled", description="Subject model: 'bundled', a hub id or a checkpoint folder.")
    layer: int | None = Field(None, description="0-based layer whose units are explained (with a dictionary, "
                                                "default: the layer it reads).")
    units: str | None = Field(None, description="Which units: all (default), a range '0:32', or a list '3,17,42'.")
    dictionary: str | None = Field(None, description="Dictionary folder (SAE or baseline) whose features are the "
                                                     "units, instead of the MLP neurons.")
    site: str | None = Field(None, description="Hook site the dictionary reads: resid_pre, resid_post, attn_out, "
                                               "mlp_out or mlp (default: the one the dictionary names).")
    force_sae: bool = Field(False, description="Use a dictionary even when it reconstructs its site worse than the "
                                               "mean (FVU > 1), which usually means the wrong layer or site.")
    corpus: str = Field("stdlib", description="Corpus spec: stdlib, stdlib:fit, stdlib:all, a file, a folder, "
                                              "a .jsonl file or hf:NAME. See autointerp.corpus.")
    tokens: int | None = Field(None, ge=1, description="Content tokens to capture (at least one window); default: "
                                                      "the whole corpus.")
    window: int = Field(64, ge=2, description="Tokens per window (BOS excluded).")
    top_k: int = Field(30, ge=3, description="Top windows kept per unit, dealt into train/valid/test.")
    n_random: int = Field(20, ge=2, description="Random windows in the shared reservoir, dealt into valid/test.")
    range_windows: int = Field(100, ge=0, description="Per unit, windows sampled from those where it fires, binned by "
                               "activation decile, held out for detection and fuzzing (half valid, half test).")
    silent_windows: int = Field(100, ge=0, description="Per unit, windows sampled from those where it does not fire: "
                                "detection's non-activating examples (half valid, half test).")
    batch_size: int = Field(32, ge=1, description="Windows per forward pass.")
    threshold: float = Field(0.0, description="Firing rule 'fixed': a unit fires when its activation is above this.")
    firing: Literal["auto", "fixed", "max_fraction"] = Field(
        "auto", description="When a unit fires: auto (fixed for ReLU units, max_fraction otherwise), fixed (above "
                            "threshold) or max_fraction (above half its max; see autointerp.subject.firing).")
    device: str = Field("auto", description="auto (GPU when present), cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Subject model dtype.")
    seed: int = Field(0, description="Seeds the corpus order and the random-window reservoir.")
    explainer: str = Field("baseline", description="Explainer: 'baseline' or a model profile name.")
    simulator: str = Field("baseline", description="Simulator: 'baseline' or a model profile name.")
    db: str = Field("autointerp.db", description="SQLite results file.")
    concurrency: int = Field(8, ge=1, description="Units explained and scored at once.")
    revise_rounds: int = Field(1, ge=0, description="LLM explainer: revisions on valid after the draft (0: none).")
    max_tool_calls: int = Field(4, ge=0, description="LLM explainer: tool calls per unit (0: no tools).")
    max_unit_tokens: int = Field(40_000, ge=1, description="LLM explainer: token cap per unit; past it, gave_up.")
    validate_windows: int = Field(10, ge=0, description="LLM explainer: valid windows each candidate is simulated on "
                                  "to choose between drafts and revisions (half top, half random; 0: all).")
    best_of: int = Field(1, ge=1, description="LLM explainer: independent drafts, the best on valid kept.")
    windows_per_request: int = Field(10, ge=1, description="Windows per LLM simulator request.")
    controls: bool = Field(True, description="Also judge units with a shuffled (another unit's) and an empty "
                                             "explanation under the same scorers: the floor beside each score.")
    controls_units: int = Field(16, ge=0, description="Controls on a seeded sample of this many explained live units "
                                                      "per run (enough for the floor's 95% interval); 0: every unit.")
    scorers: tuple[str, ...] = Field(
        SCORER_NAMES, description="Scorers that judge each explanation on held-out windows, comma-separated: "
        "simulation (Pearson r, the score of record; always on), detection, fuzzing.")
    judge: str = Field("baseline", description="Detection and fuzzing judge: 'baseline' (quoted tokens of the "
                                               "explanation, no LLM) or a model profile name.")
    judge_batch: int = Field(8, ge=1, description="Examples per LLM judge request (detection and fuzzing).")
    judge_examples: int = Field(50, ge=1, description="Detection and fuzzing: activating and non-activating examples "
                                                      "of each class per held-out split (delphi's 50; fewer cost an "
                                                      "LLM judge less).")
    max_usd: float | None = Field(None, ge=0, description="Stop spending on LLM calls past this many US dollars.")
    max_calls: int | None = Field(None, ge=0, description="Stop after this many LLM calls.")
    log_logprobs: bool = Field(False, description="Keep per-token logprobs in the llm_calls log (a simulator "
                                                  "reply is then about ten times larger).")
    tiktoken_file: str | None = Field(None, description="Local .tiktoken file for token counts when tiktoken "
                                                        "cannot load its encoding (offline); else an estimate.")
    models: dict[str, ModelProfile] = Field(default_factory=dict, description="LLM profiles, [models.NAME].")

    @model_validator(mode="before")
    @classmethod
    def _units_name_a_dictionary(cls, data: Any) -> Any:
        """``units = "sae:PATH"`` (a flag, a TOML file or a sweep plan) means every feature of that dictionary."""
        if isinstance(data, dict) and isinstance(data.get("units"), str) and data["units"].startswith("sae:"):
            if data.get("dictionary") is not None:
                raise ValueError("give the dictionary once: units = sae:PATH, or dictionary = PATH with units 0:32")
            data = {**data, "dictionary": data["units"][len("sae:"):], "units": None}
        return data

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorer_names(cls, value: Any) -> Any:
        """``"simulation,detection"`` (a flag or an environment variable) or a list; known names, simulation first."""
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
        unknown = [n for n in names if n not in SCORER_NAMES]
        if unknown:
            raise ValueError(f"unknown scorer {unknown[0]!r}; choose from {', '.join(SCORER_NAMES)}")
        if "simulation" not in names:
            raise ValueError("simulation gives the score of record and validates the explainer's drafts: keep it "
                             "(e.g. simulation,detection)")
        return tuple(n for n in SCORER_NAMES if n in names)

    @model_validator(mode="after")
    def _tokens_hold_a_window(self) -> Config:
        if self.tokens is not None and self.tokens < self.window:
            raise ValueError(f"tokens {self.tokens} is less than one window of {self.window} tokens; give "
                             f"--tokens {self.window} or more (or a smaller --window)")
        return self

    def snapshot(self) -> dict[str, Any]:
        """The config as saved with a run (contains no secrets: profiles hold env-var names, not keys)."""
        return self.model_dump(mode="json")

    def run_key(self, model_hash: str, explainer_config: dict, simulator_config: dict,
                units: dict | None = None, scorers: dict | None = None) -> str:
        """Identity of a run's outputs: the same key means the same results, so a run with it can be resumed.
        ``units``: the identity of a dictionary whose features are the units (None: the MLP neurons); ``scorers``:
        the configuration of the scorers besides the simulation scorer (None or empty: none, and the key of a run
        scored by simulation alone stays what it was)."""
        fields = ("layer", "units", "corpus", "tokens", "window", "top_k", "n_random", "threshold", "dtype", "seed",
                  "validate_windows")
        if self.firing != "auto":  # keys of runs under the default rule stay as they were
            fields += ("firing",)
        if scorers:  # the samples the classifiers draw from; no simulation score depends on them
            fields += ("range_windows", "silent_windows")
        key = {f: getattr(self, f) for f in fields}
        key.update(model_hash=model_hash, explainer=explainer_config, simulator=simulator_config)
        if units is not None:
            key["unit_space"] = units
        if scorers:
            key["scorers"] = scorers
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _from_env() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        raw = os.environ.get(f"AUTOINTERP_{name.upper()}")
        if raw is None or name == "models":
            continue
        values[name] = raw  # pydantic converts "13" -> 13 etc.; bad values raise with the field's name
    return values


def flatten(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A TOML document's settings as flat ``Config`` fields: section tables unfolded, deprecated names renamed (with
    a warning naming the file); anything unknown is left for ``Config`` to refuse by name."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, v in value.items():
                field = key if name == "name" and key in ("explainer", "simulator") else name
                flat[f"{key}.{name}" if field not in SECTIONS[key] and field not in DEPRECATED else field] = v
        else:
            flat[key] = value
    for old, new in DEPRECATED.items():
        if old in flat:
            warnings.warn(f"{source}: '{old}' is deprecated, write '{new}' (read as {new} until 0.3)", FutureWarning,
                          stacklevel=3)
            flat.setdefault(new, flat.pop(old))
            flat.pop(old, None)
    return flat


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the config from the file, the environment and the given overrides (None values are ignored)."""
    data: dict[str, Any] = {}
    file = Path(path) if path else Path(CONFIG_FILE)
    if path and not file.is_file():
        raise UsageError(f"config file {path} not found; pass an existing TOML file to --config")
    if file.is_file():
        try:
            data = flatten(tomllib.loads(file.read_text()), str(file))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"config file {file} is not valid TOML ({e}); fix it or pass another with --config")
    data.update(_from_env())
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return place_dictionary(Config(**data))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        # from None: the validation error repeats the bad value, which may hold a secret (a key in a base_url)
        source = file if file.is_file() else "flags/env"
        raise UsageError(f"bad setting {where}: {err['msg']} (from {source})") from None


def place_dictionary(cfg: Config) -> Config:
    """``cfg`` with its layer defaulting to the dictionary's own (read from the folder, weights not loaded);
    UsageError, before anything is written, when a given layer or site disagrees with the dictionary's, or a site
    is given without a dictionary."""
    if cfg.dictionary is None:
        if cfg.site is not None:
            raise UsageError("--site names where a dictionary reads; give the dictionary too (--units sae:PATH)")
        return cfg
    from autointerp.subject.sae_formats import read_placement

    layer, _ = read_placement(cfg.dictionary, cfg.layer).resolve(cfg.layer, cfg.site)
    return cfg if cfg.layer is not None or layer is None else cfg.model_copy(update={"layer": layer})
