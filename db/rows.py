"""The records a caller hands the store to open a row: a new run (``Store.start_run``) and one ``analyze`` pass
(``Store.save_analysis``). Each field is the column of its name; ``config`` is scrubbed of secrets when written.

    run_id = store.start_run(NewRun(run_key=key, command="autointerp run", config=cfg.snapshot(), ...))
    analysis_id = store.save_analysis(NewAnalysis(command=..., model=..., ...), summaries, units)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NewRun:
    """One row of ``runs`` as a run starts (status 'running')."""

    run_key: str  # what the run is (Config.run_key): a later session with the same key resumes it
    command: str  # the command line that started it
    config: dict[str, Any]  # the config snapshot
    versions: dict[str, str]  # {package: version} of the software that ran it
    model: str  # the subject model as configured (a name or a path)
    model_hash: str  # the hash of its weights
    layer: int
    unit_kind: str  # the units' kind (UnitSpace.kind): "neuron", or a dictionary's family:hash8
    corpus: str
    seed: int
    explainer: str  # the explainer's name
    simulator: str  # the simulator's name
    n_tokens: int | None = None  # content tokens captured; may be set later (Store.set_run_tokens)


@dataclass(frozen=True)
class NewAnalysis:
    """One row of ``analysis_runs``: where an ``autointerp analyze`` pass ran; its layers and units go with it."""

    command: str  # the command line that ran it
    config: dict[str, Any]  # the config snapshot
    versions: dict[str, str]  # {package: version}
    model: str
    model_hash: str  # the hash of the subject's weights
    corpus: str
    n_tokens: int  # content tokens captured
