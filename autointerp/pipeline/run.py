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
from autointerp.pipeline.session import OpenOptions, ProgressStart, RunSession
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


__all__ = ["RunSummary", "UnitOutcome", "run"]
