"""The read side of the store: the leaderboard, per-explainer summaries and unit cards the CLI prints.

    from autointerp.db import open_db

    with open_db("/tmp/autointerp.db") as store:
        store.leaderboard(layer=3, min_score=0.5, limit=20)   # rows of the `leaderboard` view, filtered
        store.by_explainer()                                  # mean, median, 95% bootstrap CI per explainer
        store.unit_card(3, 17)                                # stats, explanations with scores, top windows

The views themselves (``leaderboard``, ``explanation_scores``, ``explainer_summary``, ``llm_usage``,
``dictionary_scores``) are SQL, created by the ``migrations`` package, so Datasette and ``sqlite-utils`` read the
same rows. What SQL cannot do well (median, bootstrap CI) is computed here from ``explanation_scores``. ``Reads`` is
mixed into ``Store``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlite_utils import Database

from autointerp.db.judgements import restore_tokens
from autointerp.errors import UsageError

BOOTSTRAP_RESAMPLES = 2000
CLASSIFIERS = ("detection", "fuzzing")  # columns of explanation_scores and leaderboard (migration m011_judgements)
_JSON_COLUMNS = frozenset(
    "config versions quantiles top_tokens extra tokens token_ids activations explainer_config details predictions "
    "simulator_config per_window messages response summary analysis token_detector trigram_detector ngram_k "
    "layers examples counts diagnostics".split()
)


class Reads:
    """Read helpers over the views; needs ``db`` and ``path``, which ``Store`` (and the report's read-only
    ``ReportData``) provides."""

    db: Database
    path: Path

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Query rows with their JSON columns decoded."""
        return [{k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v for k, v in row.items()}
                for row in self.db.query(sql, params)]

    def leaderboard(
        self,
        layer: int | None = None,
        explainer: str | None = None,
        min_score: float | None = None,
        order: Literal["score", "unit"] = "score",
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of the ``leaderboard`` view (best test score per unit), filtered.

        ``explainer`` keeps the units whose best explanation is by that explainer, exactly as filtering the view in
        Datasette would; compare explainers with ``by_explainer``. ``order``: "score" (best first), "unit", or
        "detection" / "fuzzing" (the best explanation's balanced accuracy on test, best first, undefined last).
        """
        orders = {"score": "score DESC, model_hash, kind, layer, unit", "unit": "model_hash, kind, layer, unit",
                  **{m: f"{m} IS NULL, {m} DESC, model_hash, kind, layer, unit" for m in CLASSIFIERS}}
        if order not in orders:
            raise UsageError(f"unknown order {order!r}; use one of: {', '.join(orders)}")
        where, params = _where(layer=layer, explainer=explainer)
        if min_score is not None:
            where.append("score >= ?")
            params.append(min_score)
        sql = f"SELECT * FROM leaderboard {_and(where)} ORDER BY {orders[order]}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return list(self.db.query(sql, params))

    def by_explainer(
        self, layer: int | None = None, min_score: float | None = None, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Per explainer and simulator, every pair that wrote an explanation (controls as their own rows, ``role``
        "control"): how its units ended (``done``, ``gave_up``, ``failed``: failed when the explainer or the
        scoring failed), the LLM calls, tokens and cost spent, and over the explanations with a defined test score:
        ``units``, ``explanations``, mean, median and a 95% bootstrap CI of the mean (``BOOTSTRAP_RESAMPLES``
        resamples, seeded; None when there is none). Best mean first, pairs without a score last.

        ``min_score`` keeps only the explanations scoring at least that, and only pairs that have some. Beside the
        simulation score: ``detection_mean`` and ``fuzzing_mean`` (balanced accuracy on test) with their 95% bootstrap
        CI (``detection_ci_low`` ...), over the explanations with a defined one (None when none has).
        """
        summaries = {(r["explainer"], r["simulator"]): r
                     for r in self._score_summaries(("explainer", "simulator"), layer, min_score, seed)}
        where, params = _where(layer=layer)
        sql = f"""SELECT explainer, simulator, MIN(role) AS role, SUM(status = 'done') AS done,
                         SUM(status = 'gave_up') AS gave_up, SUM(status = 'failed') AS failed,
                         SUM(llm_calls) AS llm_calls, SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out,
                         SUM(cost_usd) AS cost_usd
                  FROM explanation_scores {_and(where)} GROUP BY explainer, simulator"""
        rows = []
        for counts in self.db.query(sql, params):
            key = (counts["explainer"], counts["simulator"])
            if min_score is not None and key not in summaries:
                continue
            empty = dict(units=0, explanations=0, mean=None, median=None, ci_low=None, ci_high=None)
            row = {**counts, **summaries.get(key, {**dict(zip(("explainer", "simulator"), key)), **empty})}
            for metric in CLASSIFIERS:
                mean, low, high = self._metric_summary(metric, key, layer, min_score, seed)
                row.update({f"{metric}_mean": mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            rows.append(row)
        return sorted(rows, key=lambda r: (r["mean"] is None, -(r["mean"] or 0.0), r["explainer"], r["simulator"]))

    def _metric_summary(self, metric: str, key: tuple[str, str], layer: int | None, min_score: float | None,
                        seed: int) -> tuple[float | None, float | None, float | None]:
        """Mean and 95% bootstrap CI of ``metric`` (detection or fuzzing) over one explainer / simulator pair."""
        where, params = _where(layer=layer)
        where += ["explainer IS ?", "simulator IS ?", f"{metric} IS NOT NULL"]
        params += list(key)
        if min_score is not None:
            where.append("score >= ?")
            params.append(min_score)
        values = np.array([r[0] for r in self.db.execute(f"SELECT {metric} FROM explanation_scores {_and(where)}",
                                                         params)])
        if not len(values):
            return None, None, None
        return (float(values.mean()), *bootstrap_ci(values, seed))

    def run_controls(self, run_id: str) -> list[dict[str, Any]]:
        """Per control of a run (``role`` "control"): its name, the units it scored, how many had a defined score,
        and their mean; beside them the mean detection and fuzzing (``detection_mean``, ``fuzzing_mean``; None when
        none was judged) and how many had one (``detected``, ``fuzzed``)."""
        sql = """SELECT explainer AS control, COUNT(*) AS units, COUNT(score) AS scored, AVG(score) AS mean,
                        COUNT(detection) AS detected, AVG(detection) AS detection_mean, COUNT(fuzzing) AS fuzzed,
                        AVG(fuzzing) AS fuzzing_mean
                 FROM explanation_scores WHERE run_id = ? AND role = 'control' GROUP BY explainer ORDER BY explainer"""
        return list(self.db.query(sql, [run_id]))

    def by_dictionary(
        self, layer: int | None = None, min_score: float | None = None, seed: int = 0
    ) -> list[dict[str, Any]]:
        """``by_explainer`` per unit kind as well: neurons, and each dictionary's features (family ``sae``, ``pca``,
        ``ica``, ``random``, ``default``), per layer. The SAE-versus-baselines comparison of Cunningham et al.
        (compare rows with the same explainer and simulator). ``undefined``: units whose every score is NULL (a
        feature that never fires on the test windows has no defined correlation). ``detection_mean`` and
        ``fuzzing_mean``: the means of the defined ones over the same explanations (None when none has one)."""
        keys = ("layer", "kind", "explainer", "simulator")
        rows = self._score_summaries(keys, layer, min_score, seed)
        where, params = _where(layer=layer)
        where.append("score IS NOT NULL")
        if min_score is not None:
            where.append("score >= ?")
            params.append(min_score)
        means = {tuple(r[k] for k in keys): r for r in self.db.query(
            f"SELECT {', '.join(keys)}, AVG(detection) AS detection_mean, AVG(fuzzing) AS fuzzing_mean "
            f"FROM explanation_scores {_and(where)} GROUP BY {', '.join(keys)}", params)}
        for row in rows:
            found = means.get(tuple(row[k] for k in keys), {})
            row.update({f"{m}_mean": found.get(f"{m}_mean") for m in CLASSIFIERS})
        where, params = _where(layer=layer)
        sql = f"SELECT layer, kind, explainer, simulator, undefined FROM dictionary_scores {_and(where)}"
        undefined: dict[tuple, int] = {}
        for r in self.db.query(sql, params):
            key = (r["layer"], r["kind"], r["explainer"], r["simulator"])
            undefined[key] = undefined.get(key, 0) + r["undefined"]
        for row in rows:
            row["family"] = row["kind"].split(":", 1)[0]
            row["undefined"] = undefined.get((row["layer"], row["kind"], row["explainer"], row["simulator"]), 0)
        return sorted(rows, key=lambda r: (r["layer"], r["explainer"], r["simulator"], -r["mean"]))

    def _score_summaries(self, keys: tuple[str, ...], layer: int | None, min_score: float | None, seed: int
                         ) -> list[dict[str, Any]]:
        where, params = _where(layer=layer)
        where.append("score IS NOT NULL")
        if min_score is not None:
            where.append("score >= ?")
            params.append(min_score)
        groups: dict[tuple, list[tuple[int, float]]] = {}
        sql = f"SELECT {', '.join(keys)}, unit_id, score FROM explanation_scores {_and(where)}"
        for r in self.db.query(sql, params):
            groups.setdefault(tuple(r[k] for k in keys), []).append((r["unit_id"], r["score"]))
        rows = []
        for group, pairs in groups.items():
            scores = np.array([s for _, s in pairs])
            low, high = bootstrap_ci(scores, seed)
            rows.append(dict(zip(keys, group), units=len({u for u, _ in pairs}), explanations=len(scores),
                             mean=float(scores.mean()), median=float(np.median(scores)), ci_low=low, ci_high=high))
        return sorted(rows, key=lambda r: r["mean"], reverse=True)

    def tokens_per_call(self, profile: str, model: str, purposes: Sequence[str]) -> dict[str, float] | None:
        """What the successful calls logged for this profile and model, for these purposes, used on average:
        ``{"calls", "tokens_in", "tokens_out"}`` (tokens per call); None when there are none."""
        marks = ", ".join("?" * len(purposes))
        calls, tokens_in, tokens_out = self.db.execute(
            f"SELECT COUNT(*), AVG(tokens_in), AVG(tokens_out) FROM llm_calls WHERE profile = ? AND model = ? "
            f"AND error IS NULL AND purpose IN ({marks})", [profile, model, *purposes]).fetchone()
        return {"calls": calls, "tokens_in": tokens_in, "tokens_out": tokens_out} if calls else None

    def unit_card(self, layer: int, unit: int, kind: str = "neuron", model_hash: str | None = None) -> dict[str, Any]:
        """Everything about one unit: its latest statistics, every explanation with its scores, its top windows.
        Each explanation (and control) has ``detection`` and ``fuzzing``: its latest judgement on test by that scorer
        (a ``judgements`` row with its examples, ``latest_judgement``), None when it was not judged.

        Statistics and windows come from the latest run that saved the unit. Raises ``UsageError`` when the unit is
        not in the file, or is there for several models and ``model_hash`` is None.
        """
        where, params = _where(layer=layer, unit=unit, kind=kind, model_hash=model_hash)
        units = list(self.db.query(f"SELECT * FROM units {_and(where)}", params))
        name = f"{kind} {layer}/{unit}"
        if not units:
            raise UsageError(f"no {name} in {self.path}; check the layer and unit, or pass another --db")
        if len(units) > 1:
            hashes = ", ".join(u["model_hash"] for u in units)
            raise UsageError(f"{name} exists for several models ({hashes}); pass the model hash")
        u = units[0]
        latest = self.db.execute(
            "SELECT s.run_id FROM unit_stats s JOIN runs r ON r.id = s.run_id WHERE s.unit_id = ? "
            "ORDER BY r.created_at DESC, r.rowid DESC",
            [u["id"]],
        ).fetchone()
        run_id = latest[0] if latest else None
        here = [run_id, u["id"]]
        stats = next(iter(self.rows("SELECT * FROM unit_stats WHERE run_id = ? AND unit_id = ?", here)), None)
        explanations = self.rows("SELECT * FROM explanations WHERE unit_id = ? ORDER BY created_at DESC, id DESC",
                                 [u["id"]])
        judged = self.judgements([e["id"] for e in explanations])
        for e in explanations:
            sql = "SELECT * FROM scores WHERE explanation_id = ? ORDER BY split, simulator"
            e["scores"] = self.rows(sql, [e["id"]])
            for scorer in CLASSIFIERS:
                e[scorer] = latest_judgement(judged.get(e["id"], []), scorer)
        sql = (
            "SELECT corpus_index, split, rank, tokens, activations FROM windows "
            "WHERE run_id = ? AND unit_id = ? AND source = 'top' ORDER BY rank"
        )
        windows = self.rows(sql, here)
        return dict(unit=u, run_id=run_id, stats=stats, explanations=explanations, windows=windows)

    def judgements(self, explanation_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """{explanation id: its detection and fuzzing judgements} (table ``judgements``, JSON decoded: ``examples``
        as ``Example.as_dict()``, ``counts``, ``config``, ``diagnostics``), each explanation's in the order scorer,
        test before valid, newest first. Explanations never judged are absent."""
        out: dict[int, list[dict[str, Any]]] = {}
        sql = ("SELECT * FROM judgements WHERE explanation_id IN (SELECT value FROM json_each(?)) "
               "ORDER BY explanation_id, scorer, split = 'test' DESC, id DESC")
        for row in self.rows(sql, [json.dumps(sorted(set(explanation_ids)))]):
            row["examples"] = restore_tokens(row.get("examples"))  # a window's tokens are stored once (m012)
            out.setdefault(row["explanation_id"], []).append(row)
        return out


def latest_judgement(rows: Sequence[dict[str, Any]], scorer: str, split: str = "test") -> dict[str, Any] | None:
    """The newest of ``rows`` (``Reads.judgements`` of one explanation) by ``scorer`` on ``split``: the one the
    ``explanation_scores`` view shows; None when there is none."""
    return max((r for r in rows if r["scorer"] == scorer and r["split"] == split), key=lambda r: r["id"],
               default=None)


def bootstrap_ci(values: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: ``BOOTSTRAP_RESAMPLES`` resamples with replacement, seeded."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _where(**equal: Any) -> tuple[list[str], list[Any]]:
    """``column = ?`` clauses for the filters that are not None."""
    given = {k: v for k, v in equal.items() if v is not None}
    return [f"{k} = ?" for k in given], list(given.values())


def _and(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""
