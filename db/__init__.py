"""The db room (imports every room above it: errors, corpus, llm, prompts, subject, agent, scoring): the run store,
one SQLite file holding runs, units, windows, explanations, simulations, scores and LLM calls.

    from autointerp.db import open_db

    with open_db("/tmp/autointerp.db") as store:      # creates the file, applies pending migrations
        print(store.leaderboard(limit=10))

The schema and the views (``leaderboard``, ``explanation_scores``, ``explainer_summary``, ``llm_usage``) are in
``migrations/`` (one module per migration); opening and writing in ``store.py`` (a new run or analysis row is a
``NewRun`` or ``NewAnalysis`` of ``rows.py``); the read helpers the CLI prints in ``views.py``. The same views
answer in Datasette and ``sqlite-utils``: ``sqlite-utils rows /tmp/autointerp.db leaderboard``.
"""

from autointerp.db.health import check_db, check_db_target
from autointerp.db.results import ScoredExplanation
from autointerp.db.rows import NewAnalysis, NewRun
from autointerp.db.store import (
    RunCallSink,
    Store,
    open_db,
    scrub_secrets,
)
from autointerp.db.views import BOOTSTRAP_RESAMPLES, bootstrap_ci

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "NewAnalysis",
    "NewRun",
    "RunCallSink",
    "ScoredExplanation",
    "Store",
    "bootstrap_ci",
    "check_db",
    "check_db_target",
    "open_db",
    "scrub_secrets",
]
