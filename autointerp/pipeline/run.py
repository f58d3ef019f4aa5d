"""``autointerp run``: corpus -> subject capture -> explain -> judge -> db, for one layer, through ``RunSession``.

    >>> from autointerp.config import load_config
    >>> from autointerp.pipeline import run
    >>> summary = run(load_config(overrides={"layer": 13, "units": "0:8"}))
    >>> summary.mean_score, summary.state, summary.db

A run is identified by its *run key* (``RunSession.run_key``): running the same command again finds the unfinished
run with that key and only does the units it has not finished (each unit is committed on its own), so an interrupted
run resumes. One process per run: the session holds the lease ``run:<run key>`` (``autointerp.db.leases``), so a
second process on the same run either waits for it (``wait=True``) or gets ``LeaseHeld`` (the CLI says who holds it
and exits 0) and never does a unit twice. How a run flows, stage by stage: ``autointerp.pipeline.session``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autointerp.config import Config
from autointerp.db.leases import LeaseInfo
from autointerp.pipeline.inputs import capture_config, existing_db, load_inputs, run_units
from autointerp.pipeline.estimate import estimate_run
from autointerp.pipeline.session import OpenOptions, ProgressStart, RunSession, build_components, controlled_units, run_key
from autointerp.subject.capture import capture
from autointerp.pipeline.summary import RunSummary, UnitOutcome


def run(
    cfg: Config,
    command: str = "",
    on_capture_start: ProgressStart | None = None,
    on_unit: Callable[[UnitOutcome], None] | None = None,
    fresh: bool = False,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    wait: bool = False,
    on_wait: Callable[[LeaseInfo], None] | None = None,
) -> RunSummary:
    """Capture -> explain -> judge -> store for ``cfg.layer``; see the module docstring.

    ``on_capture_start(total_tokens_or_None)`` returns a per-batch progress callback; ``on_unit`` is called
    after each unit is committed. ``fresh`` starts a new run even when one with the same key exists.
    ``on_estimate`` receives the expected LLM usage of the units left, before any LLM call is made.
    Another live process on the same run: ``LeaseHeld``, or with ``wait`` ``on_wait(holder)`` and wait for it.
    """
    with RunSession.open(cfg, OpenOptions(command, fresh, wait, on_wait)) as session:
        if session.todo:
            cap = session.capture(on_capture_start)
            estimate = session.estimate(cap)
            if estimate is not None and on_estimate:
                on_estimate(estimate)
            session.explain_and_score(cap, on_unit)
        session.finish()
    return session.summary


def estimate(cfg: Config) -> dict[str, Any] | None:
    """What ``run(cfg)`` would spend on LLM calls, per purpose and per unit, without calling an LLM or writing
    anything (``autointerp run --estimate``); None when the run uses no LLM.

    The prompts are counted on windows of a short capture (enough windows for one unit's top and random windows:
    every window has ``cfg.window`` tokens, so their count does not depend on which ones they are); tokens per call
    are measured from earlier calls of the same profiles in ``cfg.db`` when it holds enough of them
    (``measured.estimate_run``). Units a resumable run already finished are not counted."""
    _, explainer, stages = build_components(cfg)
    store = existing_db(cfg.db)
    try:
        inputs = load_inputs(cfg, layers=[cfg.layer])
        space, units = run_units(cfg, inputs.subject, guard=False)
        left, controlled = units, controlled_units(cfg, len(units))
        if store is not None:
            run_id = store.find_resumable_run(run_key(cfg, inputs.subject.weights_hash(), explainer, stages, space))
            if run_id is not None:
                done = store.done_units(run_id)
                left = [u for u in units if (space.kind, cfg.layer, u) not in done]
                controlled = controlled_units(cfg, len(units), len(store.controlled_units(run_id)))
        if not left:
            return None
        sample = max(cfg.top_k + cfg.n_random, 8) * cfg.window * 4  # windows enough for one unit's record
        short = cfg.model_copy(update={"tokens": min(cfg.tokens or sample, sample)})
        cap = capture(inputs.subject, inputs.corpus, capture_config(short, [cfg.layer]), None, space)[cfg.layer]
        return estimate_run(store, cap.unit_record(left[0], space.kind), explainer, stages, len(left),
                            cfg.tiktoken_file, controlled)
    finally:
        if store is not None:
            store.close()


__all__ = ["RunSummary", "UnitOutcome", "estimate", "run"]
