"""The run store: one SQLite file written through sqlite-utils; the CLI, Datasette and ``sqlite-utils`` read it alike.

    from autointerp.db import open_db

    with open_db("/tmp/autointerp.db") as store:      # creates the file, applies pending migrations
        print(store.leaderboard(limit=10))            # [] on a fresh file; rows of the `leaderboard` view

How the pipeline writes (see ``ScoredExplanation`` for what one explanation carries):

    run_id = store.find_resumable_run(key) or store.start_run(NewRun(run_key=key, model="gpt2", model_hash=h, ...))
    done = store.done_units(run_id)                   # {(kind, layer, unit)} finished (done or gave up)
    store.save_unit_result(run_id, record, h, {"dead": False}, [scored])   # one transaction per unit
    store.finish_run(run_id, "done", wall_s=12.5)    # or "stopped" with a stop_reason, or "failed"

Every write is one ``BEGIN IMMEDIATE`` transaction, so an interrupted run never leaves half a unit. Floats that are
not finite (NaN, inf) are never written: they become NULL, and a NaN score gets the reason "not a number". Configs are
scrubbed of secrets before they are stored (``scrub_secrets``). SQLite errors a person can act on (corrupt file,
locked by another process) become ``UsageError``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from autointerp.db.judgements import judgement_row
from autointerp.db.health import check_db_target, quick_check, remember_writes
from autointerp.db.migrations import migrate
from autointerp.db.rows import NewAnalysis, NewRun
from autointerp.db.values import finite as _finite, to_json as _json, utc_iso
from autointerp.db.calls import CallWrites, RunCallSink  # noqa: F401 (RunCallSink: re-exported)
from autointerp.db.views import Reads
from autointerp.errors import UsageError
from autointerp.llm.secrets import scrub_secrets, scrub_text
from autointerp.outcomes import FINISHED, RunState, StopReason, UnitOutcome, worst_outcome
from autointerp.subject.records import UnitRecord
from autointerp.db.results import ScoredExplanation


def open_db(path: str | Path, busy_timeout_s: float = 5.0) -> Store:
    """Open (or create) the store at ``path``: WAL (synchronous=NORMAL), foreign keys on, a busy timeout, pending migrations applied.

    An existing file gets SQLite's ``quick_check`` first, so a damaged one is refused before anything is written to it
    (once per process per file while it is unchanged: ``health.quick_check``; ``check_db``: the full check). Raises
    ``UsageError`` for a file that is not a SQLite database or is damaged, one locked by another process for longer
    than ``busy_timeout_s``, one that cannot be opened, or one written by a newer autointerp."""
    path = Path(path)
    conn: sqlite3.Connection | None = None
    check = path.is_file() and path.stat().st_size > 0
    if not path.exists():
        check_db_target(path)
    try:
        with _usage_errors(path, busy_timeout_s, opening=True):
            conn = sqlite3.connect(path, timeout=busy_timeout_s)
            if check:
                quick_check(conn, path)
            db = Database(conn, execute_plugins=False)
            db.execute("PRAGMA foreign_keys = ON")
            db.enable_wal()
            # WAL with synchronous=NORMAL: a commit is not fsynced, only checkpoints are; the file stays consistent
            # across any crash, and an application crash loses nothing committed (a power cut may lose the last few
            # units, which the next run redoes). A per-unit fsync was 5% of the LLM phase's CPU at 16 units in flight.
            db.execute("PRAGMA synchronous = NORMAL")
            migrate(db, str(path))
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return Store(db, path, busy_timeout_s)


class Store(Reads, CallWrites):
    """Reads (``views.Reads``) and writes of one autointerp SQLite file. Build it with ``open_db``; ``store.db`` is
    the ``sqlite_utils.Database``."""

    def __init__(self, db: Database, path: Path, busy_timeout_s: float):
        self.db = db
        self.path = path
        self.busy_timeout_s = busy_timeout_s

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        remember_writes(self.path)  # this store's writes are no reason to read the whole file again

    # -- runs and units ------------------------------------------------------------------------------------------

    def start_run(self, run: NewRun) -> str:
        """Record a new run with status 'running'; returns its id (uuid4 hex). ``run.config`` is scrubbed of secrets.

        ``run.n_tokens`` (content tokens captured) may be set later with ``set_run_tokens``, once capture has run."""
        run_id = uuid.uuid4().hex
        row = dict(
            id=run_id, run_key=run.run_key, created_at=utc_iso(), status="running", command=run.command,
            config=_json(scrub_secrets(run.config)), versions=_json(run.versions), model=run.model,
            model_hash=run.model_hash, layer=run.layer, unit_kind=run.unit_kind, corpus=run.corpus,
            n_tokens=run.n_tokens, seed=run.seed, explainer=run.explainer, simulator=run.simulator,
        )
        with self._write():
            self.db.table("runs").insert(row)
        return run_id

    def find_resumable_run(self, run_key: str) -> str | None:
        """The latest run with this key, whatever its status (a complete one simply has nothing left to do)."""
        row = self.db.execute(
            "SELECT id FROM runs WHERE run_key = ? ORDER BY created_at DESC, rowid DESC", [run_key]
        ).fetchone()
        return row[0] if row else None

    def resume_run(self, run_id: str) -> None:
        """Mark an earlier run as running again (its finished units stay; finish_run closes it)."""
        with self._write():
            self.db["runs"].update(run_id, {"status": "running", "stop_reason": None, "finished_at": None})

    def run_outcomes(self, run_id: str) -> list[dict[str, Any]]:
        """One row per unit finished in this run: layer, unit, kind, status, explanation, test score (and
        detection, fuzzing: balanced accuracy on test, None when not judged or undefined)."""
        sql = """SELECT x.layer, x.unit, x.kind, r.status, x.explanation, x.score, x.undefined_reason, x.detection,
                        x.fuzzing
                 FROM unit_runs r JOIN explanation_scores x ON x.unit_id = r.unit_id AND x.run_id = r.run_id
                 WHERE r.run_id = ? AND x.role = 'explanation' ORDER BY x.layer, x.unit"""
        cols = ["layer", "unit", "kind", "status", "explanation", "score", "undefined_reason", "detection", "fuzzing"]
        return [dict(zip(cols, row)) for row in self.db.execute(sql, [run_id]).fetchall()]

    def run_tokens(self, run_id: str) -> int:
        """Content tokens the run captured (0 before its capture finished)."""
        return int(self.db["runs"].get(run_id)["n_tokens"] or 0)

    def set_run_tokens(self, run_id: str, n_tokens: int) -> None:
        """Record how many content tokens the run's capture read."""
        with self._write():
            if self.db.execute("UPDATE runs SET n_tokens = ? WHERE id = ?", [n_tokens, run_id]).rowcount != 1:
                raise KeyError(f"no run {run_id}")

    def finish_run(self, run_id: str, state: RunState, wall_s: float, stop_reason: StopReason | None = None) -> None:
        """Close a run in ``state`` (done, stopped with its ``stop_reason``, failed); ``wall_s`` is added to the run's
        total, so a resumed run sums its sessions."""
        if (state == "stopped") != (stop_reason is not None) or state == "running":
            raise ValueError(f"a run finishes done, failed, or stopped with a stop reason; not {state}/{stop_reason}")
        with self._write():
            cur = self.db.execute(
                "UPDATE runs SET status = ?, stop_reason = ?, finished_at = ?, wall_s = COALESCE(wall_s, 0) + ? "
                "WHERE id = ?",
                [state, stop_reason, utc_iso(), _finite(wall_s) or 0.0, run_id],
            )
            if cur.rowcount != 1:
                raise KeyError(f"no run {run_id}")

    def add_run_wall(self, run_id: str, seconds: float) -> None:
        """Add a session's time to the run's ``wall_s`` (a killed session never reached ``finish_run``)."""
        with self._write():
            self.db.execute("UPDATE runs SET wall_s = COALESCE(wall_s, 0) + ? WHERE id = ?",
                            [_finite(seconds) or 0.0, run_id])

    def unit_id(self, model_hash: str, layer: int, unit: int, kind: str = "neuron") -> int:
        """The id of this unit of these weights, created on first use."""
        with self._write():
            return self._unit_id(model_hash, layer, unit, kind)

    def done_units(self, run_id: str) -> set[tuple[str, int, int]]:
        """``(kind, layer, unit)`` of the units this run finished as done or gave_up; failed ones are to be retried."""
        rows = self.db.execute(
            "SELECT u.kind, u.layer, u.unit FROM unit_runs r JOIN units u ON u.id = r.unit_id "
            f"WHERE r.run_id = ? AND r.status IN ({', '.join('?' * len(FINISHED))})",
            [run_id, *FINISHED],
        )
        return {(kind, layer, unit) for kind, layer, unit in rows}

    # -- one unit, atomically ------------------------------------------------------------------------------------

    def save_unit_result(
        self,
        run_id: str,
        record: UnitRecord,
        model_hash: str,
        stats_extra: dict[str, Any],
        explanations: Sequence[ScoredExplanation],
    ) -> UnitOutcome:
        """Write one unit's statistics, windows, explanations, simulations, scores and ledger row in one transaction.

        Anything this run saved earlier for the unit is replaced, so a failed unit can be retried by the same run.
        The unit's ledger status is the least finished of its explanations' (failed > gave_up > done; failed when
        there are none); it is returned.
        """
        uid = record.id
        ranked = [e for e in explanations if e.role == "explanation"]  # controls never decide the unit's outcome
        worst = worst_outcome(e.status for e in ranked)
        reason = next((e.reason for e in ranked if e.status == worst), "no explanation")
        with self._write():
            unit_id = self._unit_id(model_hash, uid.layer, uid.unit, uid.kind)
            for table in ("explanations", "windows", "unit_stats", "unit_runs"):  # cascades to simulations, scores
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ? AND unit_id = ?", [run_id, unit_id])
            self._insert("unit_stats", _stats_row(run_id, unit_id, record, stats_extra))
            window_ids: dict[int, int] = {}
            for w in record.windows:
                row = dict(
                    run_id=run_id, unit_id=unit_id, corpus_index=w.index, source=w.source, split=w.split,
                    rank=w.rank, tokens=_json(w.tokens), token_ids=_json(w.token_ids), activations=_json(w.activations),
                )
                window_ids[w.index] = self._insert("windows", row)
            for scored in explanations:
                self._insert_explanation(run_id, unit_id, record, scored, window_ids)
            self._insert("unit_runs",
                dict(run_id=run_id, unit_id=unit_id, status=worst, reason=_clean(reason), finished_at=utc_iso())
            )
        return worst

    def save_controls(self, run_id: str, record: UnitRecord, model_hash: str,
                      controls: Sequence[ScoredExplanation]) -> None:
        """Replace the controls (``role == "control"``) this run saved for a unit already saved by
        ``save_unit_result``; one transaction. Raises KeyError when the unit's windows are not in the run."""
        assert all(c.role == "control" for c in controls)
        uid = record.id
        with self._write():
            unit_id = self._unit_id(model_hash, uid.layer, uid.unit, uid.kind)
            rows = self.db.execute("SELECT corpus_index, id FROM windows WHERE run_id = ? AND unit_id = ?",
                                   [run_id, unit_id]).fetchall()
            if not rows:
                raise KeyError(f"unit {uid} has no windows in run {run_id}; save_unit_result first")
            self.db.execute("DELETE FROM explanations WHERE run_id = ? AND unit_id = ? AND role = 'control'",
                            [run_id, unit_id])
            for control in controls:
                self._insert_explanation(run_id, unit_id, record, control, dict(rows))

    def controlled_units(self, run_id: str) -> set[tuple[str, int, int]]:
        """``(kind, layer, unit)`` of the units of this run that have their controls saved."""
        rows = self.db.execute(
            "SELECT DISTINCT u.kind, u.layer, u.unit FROM explanations e JOIN units u ON u.id = e.unit_id "
            "WHERE e.run_id = ? AND e.role = 'control'", [run_id])
        return {(kind, layer, unit) for kind, layer, unit in rows}

    def _insert_explanation(
        self, run_id: str, unit_id: int, record: UnitRecord, scored: ScoredExplanation, window_ids: dict[int, int]
    ) -> None:
        e = scored.explanation
        row = dict(
            run_id=run_id, unit_id=unit_id, explainer=e.explainer,
            explainer_config=_json(scrub_secrets(scored.explainer_config)), is_baseline=int(scored.is_baseline),
            text=e.text, status=e.status, reason=_clean(e.reason), details=_json(e.details), created_at=utc_iso(),
            llm_calls=scored.llm_calls, tokens_in=scored.tokens_in, tokens_out=scored.tokens_out,
            cost_usd=_finite(scored.cost_usd), simulator=scored.simulator, scoring=scored.scoring,
            scoring_reason=scored.scoring_reason, role=scored.role,
        )
        explanation_id = self._insert("explanations", row)
        n_tokens = {w.index: len(w.tokens) for w in record.windows}
        for index, (predictions, error) in scored.simulations.items():
            if index not in window_ids:
                raise ValueError(f"simulation of window {index}, which is not one of the unit's windows")
            if predictions is None and not error:
                raise ValueError(f"simulation of window {index} has neither predictions nor an error")
            if predictions is not None and len(predictions) != n_tokens[index]:
                raise ValueError(f"window {index}: {len(predictions)} predictions for {n_tokens[index]} tokens")
            row = dict(
                explanation_id=explanation_id, window_id=window_ids[index], simulator=scored.simulator,
                predictions=None if predictions is None else _json(predictions), error=_clean(error),
            )
            self._insert("simulations", row)
        simulator_config = _json(scrub_secrets(scored.simulator_config))
        for split, result in (("valid", scored.valid), ("test", scored.test)):
            if result is None:
                continue
            windows = record.split(split)
            if len(result.per_window) != len(windows):
                raise ValueError(f"{split} score has {len(result.per_window)} per-window values for {len(windows)} "
                                 f"{split} windows")
            score = _finite(result.score)
            row = dict(
                explanation_id=explanation_id, simulator=scored.simulator, simulator_config=simulator_config,
                split=split, score=score, score_top=_finite(result.score_top),
                score_random=_finite(result.score_random),
                undefined_reason=result.undefined_reason or (None if score is not None else "not a number"),
                per_window=_json({w.index: r for w, r in zip(windows, result.per_window)}),
                n_windows=result.n_windows, created_at=utc_iso(),
                diagnostics=_json(scored.diagnostics) if split == "test" else None,
            )
            self._insert("scores", row)
        for judgement in scored.judgements:  # detection and fuzzing (m011), deleted with the explanation
            self.insert_judgement(explanation_id, judgement)

    def save_analysis(self, analysis: NewAnalysis, summaries: Sequence[dict[str, Any]],
                      units: Sequence[dict[str, Any]]) -> str:
        """Store one ``autointerp analyze`` pass in one transaction; returns its id.

        ``summaries``: LayerSummary.to_json() per layer; ``units``: UnitAnalysis.to_json() per unit (with "layer"
        and "unit"), each also carrying "position_profile" when the caller has it."""
        run_id = uuid.uuid4().hex
        layers = sorted({int(u["layer"]) for u in units} | {int(x["layer"]) for x in summaries})
        model_hash = analysis.model_hash
        with self._write():
            self.db.table("analysis_runs").insert(dict(
                id=run_id, created_at=utc_iso(), command=analysis.command,
                config=_json(scrub_secrets(analysis.config)), versions=_json(analysis.versions), model=analysis.model,
                model_hash=model_hash, corpus=analysis.corpus, n_tokens=analysis.n_tokens, layers=_json(layers)))
            self.db.table("layer_analyses").insert_all(
                {"run_id": run_id, "layer": x["layer"], "summary": _json(x)} for x in summaries)
            rows = []
            for u in units:
                td, tg = u.get("token_detector"), u.get("trigram_detector")
                st = u.get("suppresses_triggers")
                rows.append(dict(
                    run_id=run_id, unit_id=self._unit_id(model_hash, u["layer"], u["unit"], "neuron"),
                    dead=int(u["dead"]), firing_rate=_finite(u["firing_rate"]),
                    token_detector=None if td is None else _json(td), trigram_detector=None if tg is None else _json(tg),
                    ngram_k=_json(u["ngram_k"]), positional_mi=_finite(u["positional_mi"]),
                    positional=int(u["positional"]), positional_kind=u.get("positional_kind"),
                    suppresses_triggers=None if st is None else int(st), analysis=_json(u)))
            self.db.table("unit_analyses").insert_all(rows)
        return run_id

    def save_probe(self, *, command: str, model: str, model_hash: str, corpus: str | None, result: Any) -> str:
        """Store one ``ProbeResult`` (autointerp.subject.probing); returns its id."""
        probe_id = uuid.uuid4().hex
        best = result.best
        rows = [{"k": r.k, "units": list(r.units), "precision": r.precision, "recall": r.recall, "f1": r.f1}
                for r in result.results]
        with self._write():
            self.db.table("probe_results").insert(dict(
                id=probe_id, created_at=utc_iso(), command=command, model=model, model_hash=model_hash, corpus=corpus,
                layer=result.layer, kind=result.kind, concept=result.concept, method=result.method,
                n_train=result.n_train, n_test=result.n_test, context=result.context, best_k=best.k,
                best_f1=_finite(best.f1), results=_json(rows)))
        return probe_id

    def save_dictionary_eval(self, *, command: str, model: str, model_hash: str, corpus: str, report: Any,
                             config: dict[str, Any]) -> str:
        """Store one dictionary evaluation (``pipeline.DictionaryReport``); returns its id."""
        eval_id = uuid.uuid4().hex
        r = report
        with self._write():
            self._insert("dictionary_evals", dict(
                id=eval_id, created_at=utc_iso(), command=command, path=r.path, kind=r.kind, family=r.family,
                model=model, model_hash=model_hash, layer=r.layer, site=r.site, d_in=r.d_in, n_features=r.n_features,
                corpus=corpus, n_tokens=r.n_tokens, fvu=_finite(r.fvu), mean_l0=r.mean_l0,
                dead_features=r.dead_features, loss_clean=_finite(r.loss_clean), loss_spliced=_finite(r.loss_spliced),
                config=_json(scrub_secrets(config))))
        return eval_id

    # -- internals -----------------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so that a busy file waits, then fails clearly."""
        with _usage_errors(self.path, self.busy_timeout_s, opening=False):
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.rollback()
                raise

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        """INSERT one row (inside ``_write``); returns its rowid. Plain SQL: the hot path writes about a hundred rows
        per unit, and sqlite-utils' ``Table.insert`` re-reads the schema for each one."""
        sql = f"INSERT INTO [{table}] ({', '.join(f'[{k}]' for k in row)}) VALUES ({', '.join('?' * len(row))})"
        return self.db.conn.execute(sql, list(row.values())).lastrowid

    def _unit_id(self, model_hash: str, layer: int, unit: int, kind: str) -> int:
        key = [model_hash, layer, unit, kind]
        self.db.execute(
            "INSERT INTO units (model_hash, layer, unit, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", key
        )
        (unit_id,) = self.db.execute(
            "SELECT id FROM units WHERE model_hash = ? AND layer = ? AND unit = ? AND kind = ?", key
        ).fetchone()
        return unit_id

    # -- detection and fuzzing (issue 21) ------------------------------------------------------------------------

    def save_judgements(self, explanation_id: int, judgements: Sequence[Any]) -> list[int]:
        """Write the detection and fuzzing judgements (``autointerp.scoring.classify.ClassificationJudgement``) of one
        stored explanation in one transaction; returns their row ids. See ``insert_judgement``."""
        with self._write():
            return [self.insert_judgement(explanation_id, j) for j in judgements]

    def insert_judgement(self, explanation_id: int, j: Any) -> int:
        """One judgement's row, inside an open ``_write()`` transaction (so that a unit's save can write its
        explanations and their judgements at once). A judgement already saved for the same explanation, scorer, split
        and judge is replaced; deleting the explanation deletes its judgements."""
        self.db.execute("DELETE FROM judgements WHERE explanation_id = ? AND scorer = ? AND split = ? AND judge = ?",
                        [explanation_id, j.scorer, j.split, j.judge])
        return self._insert("judgements", judgement_row(explanation_id, j))

    def explanation_id(self, run_id: str, model_hash: str, layer: int, unit: int, kind: str, explainer: str,
                       role: str = "explanation") -> int | None:
        """The id of the latest explanation this run saved for the unit by ``explainer`` (None when there is none)."""
        found = self.db.execute(
            "SELECT e.id FROM explanations e JOIN units u ON u.id = e.unit_id WHERE e.run_id = ? AND u.model_hash = ? "
            "AND u.layer = ? AND u.unit = ? AND u.kind = ? AND e.explainer = ? AND e.role = ? ORDER BY e.id DESC",
            [run_id, model_hash, layer, unit, kind, explainer, role]).fetchone()
        return found[0] if found else None


def _stats_row(run_id: str, unit_id: int, record: UnitRecord, extra: dict[str, Any]) -> dict[str, Any]:
    s = record.stats
    return dict(
        run_id=run_id, unit_id=unit_id, n_tokens=s.n_tokens, fire_count=s.fire_count,
        firing_rate=_finite(s.firing_rate), mean=_finite(s.mean), std=_finite(s.std), max=_finite(s.max),
        min=_finite(s.min), threshold=_finite(s.threshold), quantiles=_json(s.quantiles),
        top_tokens=_json(record.top_tokens), extra=_json(extra),
    )


def _clean(reason: str | None) -> str | None:
    """A failure's reason, credential shapes scrubbed (the LLM client already removed its own key)."""
    return None if reason is None else scrub_text(reason)


@contextmanager
def _usage_errors(path: Path, busy_timeout_s: float, opening: bool) -> Iterator[None]:
    """SQLite errors a person can act on, as ``UsageError``; on open also a corrupt or unopenable file."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        name = getattr(e, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise UsageError(
                f"{path} is locked by another process (waited {busy_timeout_s:g} s); "
                "wait for it to finish or pass another --db"
            ) from e
        if opening and name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            raise UsageError(f"{path} is not a SQLite database or is corrupt; pass another --db") from e
        if opening and name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
            raise UsageError(f"cannot open {path} ({e}); pass another --db") from e
        raise
