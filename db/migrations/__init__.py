"""The schema of the autointerp SQLite file, as append-only migrations applied on every open.

    >>> import sqlite_utils
    >>> from autointerp.db.migrations import migrate, migrations
    >>> db = sqlite_utils.Database(memory=True)
    >>> migrate(db, "memory")
    >>> [m.name for m in migrations.applied(db)]  # doctest: +NORMALIZE_WHITESPACE
    ['m001_initial', 'm002_views', 'm003_analyses', 'm004_probes', 'm005_dictionaries', 'm006_probe_kind',
     'm007_probe_context', 'm008_leases_sweeps', 'm009_outcomes', 'm010_outcome_words', 'm011_judgements',
     'm012_shared_example_tokens']

Each migration is a module of this package named as the migration (``m001_initial.py``, ...), registered in order
below. The same set also runs from the shell: ``sqlite-utils migrate autointerp.db db/migrations/__init__.py``.

Rules. A released migration is never edited. A change to a table or a view is a new migration, a new module
registered last, which may ``DROP VIEW`` and create it anew. The SQL is written inside each function for that reason:
a shared constant edited later would silently change what an old migration means. Applied migrations are recorded
by ``sqlite_utils.Migrations`` in ``_sqlite_migrations`` (set ``autointerp``); a file that records one this code
does not know was written by a newer autointerp, and ``migrate`` refuses it.

Conventions: JSON lives in TEXT columns; timestamps are ISO-8601 UTC text; a NULL score always carries its reason.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

from autointerp.db.migrations.m001_initial import m001_initial
from autointerp.db.migrations.m002_views import m002_views
from autointerp.db.migrations.m003_analyses import m003_analyses
from autointerp.db.migrations.m004_probes import m004_probes
from autointerp.db.migrations.m005_dictionaries import m005_dictionaries
from autointerp.db.migrations.m006_probe_kind import m006_probe_kind
from autointerp.db.migrations.m007_probe_context import m007_probe_context
from autointerp.db.migrations.m008_leases_sweeps import m008_leases_sweeps
from autointerp.db.migrations.m009_outcomes import m009_outcomes
from autointerp.db.migrations.m010_outcome_words import m010_outcome_words
from autointerp.db.migrations.m011_judgements import m011_judgements
from autointerp.db.migrations.m012_shared_example_tokens import m012_shared_example_tokens
from autointerp.errors import UsageError

migrations = Migrations("autointerp")

for _migration in (
    m001_initial,  # runs, units and everything one run writes per unit
    m002_views,  # the leaderboard and summary views
    m003_analyses,  # per-layer analyses
    m004_probes,  # sparse probing results
    m005_dictionaries,  # SAE and baseline dictionaries as units
    m006_probe_kind,  # which units a probe read
    m007_probe_context,  # the context fed before each probed window
    m008_leases_sweeps,  # leases and the sweep ledger
    m009_outcomes,  # explainer and scoring outcomes, controls, accounting
    m010_outcome_words,  # one vocabulary for outcomes; controls are not baselines
    m011_judgements,  # detection and fuzzing results, and the views that show them
    m012_shared_example_tokens,  # a window's tokens stored once per judgement
):
    migrations()(_migration)  # in this order: the order they apply in


def _known_names() -> frozenset[str]:
    with Database(memory=True) as empty:  # everything registered is pending on an empty database
        return frozenset(m.name for m in migrations.pending(empty))


KNOWN = _known_names()


def migrate(db: Database, where: str) -> None:
    """Apply the pending migrations, all of them or none, in one write transaction.

    ``where`` names the file in messages. Raises ``UsageError`` when the file records a migration this code does not
    know. SQLite errors (locked, not a database) propagate; ``open_db`` turns them into messages.
    """
    refuse_newer(db, where)
    if not migrations.pending(db):
        return
    db.conn.execute("BEGIN IMMEDIATE")  # re-check under the write lock: another process may have migrated meanwhile
    try:
        refuse_newer(db, where)
        migrations.apply(db)  # nested: each migration is a savepoint inside this transaction
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def refuse_newer(db: Database, where: str) -> None:
    """``UsageError`` when the file records a migration this code does not know (a newer autointerp wrote it)."""
    unknown = [m.name for m in migrations.applied(db) if m.name not in KNOWN]
    if unknown:
        raise UsageError(
            f"{where} was written by a newer autointerp (schema {unknown[-1]}); upgrade autointerp or use another --db"
        )
