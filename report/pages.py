"""What each page shows, as plain dicts for the templates: the index, the layer pages and the unit pages.

    >>> site = SiteModel(open_readonly("autointerp.db"), Filters(layer=13))
    >>> site.index()                      # leaderboard rows, summaries with 95% intervals, runs with their spend
    >>> site.unit(0, plotter)             # the first unit's page (prev/next by position in ``site.rows``)

Paths are relative to the site's root and the same for the static site and ``serve``: ``index.html``,
``layers/13.html``, ``units/13-42.html`` (a dictionary feature: ``units/sae-82a38cf9-3-17.html``; with several models
in one file the model hash's first 8 digits come first).

Shading: a token's true activation ``a`` is shown at level ``round(10 * max(a, 0) / m)``, ``m`` the largest
activation over the unit's stored windows (docs/methods.md §2's normalisation, rounded rather than floored so the top
token is full strength); a simulation's prediction (already 0..10) at ``round(p)``.
"""

from __future__ import annotations

import re
from typing import Any

from autointerp.report.checks import score_checks
from autointerp.report.data import Filters, ReportData
from autointerp.report.judged import judgement_view, latest
from autointerp.report.plots import UnitPlotter, bars, histogram, profiles, scatter

CALL_TEXT_LIMIT = 4000  # characters of one LLM message shown on a unit page


class SiteModel:
    """The pages of one database under ``filters``. ``rows`` and ``layers`` (``name_rows`` and ``filter_layers`` of
    what ``data`` reads) may be handed in: ``serve`` keeps them up to date itself and renders on several
    connections."""

    def __init__(self, data: ReportData, filters: Filters = Filters(), rows: list[dict[str, Any]] | None = None,
                 layers: dict[int, dict[str, Any]] | None = None):
        self.data, self.filters = data, filters
        self.rows = name_rows(data.unit_rows(filters)) if rows is None else rows
        self.multi_model = len({r["model_hash"] for r in self.rows}) > 1
        self.position = {r["unit_id"]: i for i, r in enumerate(self.rows)}
        self.by_slug = {r["slug"]: i for i, r in enumerate(self.rows)}
        self.layers = filter_layers(data.analysis_layers(), filters) if layers is None else layers

    # -- the index -----------------------------------------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        f = self.filters
        explainers = self.data.by_explainer(layer=f.layer, min_score=f.min_score)
        dictionaries = [d for d in self.data.by_dictionary(layer=f.layer, min_score=f.min_score)
                        if f.kind is None or d["kind"] == f.kind or d["family"] == f.kind]
        scored = [r for r in self.rows if r["score"] is not None]
        groups: dict[str, list[float]] = {}
        for r in scored:
            groups.setdefault(r["explainer"], []).append(r["score"])
        plot = histogram("best test score per unit", groups, "Pearson r (pooled, test windows)", "scores",
                         range_=(-0.2, 1.0), bins=24) if scored else None
        return dict(rows=self.rows, explainers=explainers, dictionaries=dictionaries, runs=self.data.runs(),
                    evals=self.data.dictionaries(), layers=sorted(self.layers), filters=f, plot=plot,
                    n_scored=len(scored), kinds=sorted({r["kind"] for r in self.rows}),
                    explainer_names=sorted({r["explainer"] for r in scored}),
                    layer_names=sorted({r["layer"] for r in self.rows}))

    # -- layer pages ---------------------------------------------------------------------------------------------

    def layers_overview(self) -> dict[str, Any] | None:
        if not self.layers:
            return None
        ls = sorted(self.layers)
        summaries = [self.layers[x]["summary"] for x in ls]
        return dict(
            dead=bars("percent dead units by layer", ls, [s["pct_dead"] for s in summaries], "% dead", "dead"),
            rate=bars("mean firing rate of live units by layer", ls,
                      [s["mean_firing_rate_live"] for s in summaries], "firing rate", "rate"),
        )

    def layer(self, layer: int) -> dict[str, Any]:
        meta = self.layers[layer]
        units = self.data.layer_units(meta["run_id"], layer)
        rows = {(r["kind"], r["layer"], r["unit"]): r for r in self.rows}
        for u in units:
            row = rows.get((u["kind"], layer, u["unit"]), {})
            u["slug"] = row.get("slug")
            u.update({k: row.get(k) for k in ("score", "detection", "fuzzing")})  # the unit's best explanation's
        live = [u for u in units if not u["dead"]]
        positional = sorted((u for u in units if u["positional"]), key=lambda u: -u["positional_mi"])
        detectors = [u for u in units if u["token_detector"] or u["trigram_detector"]]
        plots = dict(
            rates=histogram(f"firing rate of the live units of layer {layer}",
                            {"live units": [u["firing_rate"] for u in live]}, "firing rate", f"l{layer}r", bins=30),
            mi=scatter("positional information I(act; pos) per unit", [u["unit"] for u in units],
                       [u["positional_mi"] for u in units], "unit", "nats", f"l{layer}mi", hline=0.05),
            profiles=profiles("positional units: firing rate by position",
                              {str(u["unit"]): u["analysis"].get("position_profile") or [] for u in positional[:12]},
                              f"l{layer}p") if positional else None,
        )
        layers = sorted(self.layers)
        i = layers.index(layer)
        return dict(layer=layer, meta=meta, summary=meta["summary"], units=units, detectors=detectors,
                    positional=positional, plots=plots, n_dead=len(units) - len(live),
                    prev=layers[i - 1] if i else None, next=layers[i + 1] if i + 1 < len(layers) else None)

    # -- unit pages ----------------------------------------------------------------------------------------------

    def unit(self, i: int, plotter: UnitPlotter) -> dict[str, Any]:
        row = self.rows[i]
        page = self.data.unit_page(row["unit_id"])
        windows = page["windows"]
        m = max((max(w["activations"], default=0.0) for w in windows), default=0.0)
        own = [e for e in page["explanations"] if e.get("role", "explanation") != "control"]
        explanations = [_explanation(n, e, windows) for n, e in enumerate(own, 1)]
        controls = [_explanation(n, e, windows) for n, e in
                    enumerate((e for e in page["explanations"] if e.get("role") == "control"), 1)]
        by_split: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
        for w in windows:
            lines = []
            for e in explanations:
                sim = e["simulations"].get(w["id"])
                if sim is not None:
                    lines.append(dict(n=e["n"], error=sim["error"], r=e["per_window"].get(str(w["corpus_index"])),
                                      predictions=sim["predictions"]))
            by_split[w["split"]].append(dict(
                index=w["corpus_index"], source=w["source"], rank=w["rank"], max=max(w["activations"], default=0.0),
                tokens=shade(w["tokens"], w["activations"], m), sims=[dict(
                    s, tokens=shade(w["tokens"], w["activations"], m, s["predictions"])) for s in lines]))
        for split in ("valid", "test"):  # top windows first, then random, each by rank
            by_split[split].sort(key=lambda w: (w["source"] != "top", w["rank"]))
        stats, analysis = page["stats"], page["analysis"]
        profile = (analysis or {}).get("analysis", {}).get("position_profile") or (
            (stats or {}).get("extra", {}).get("position_firing_rate"))
        top_acts = [a for w in windows if w["source"] == "top" for a in w["activations"]]
        random_acts = [a for w in windows if w["source"] == "random" for a in w["activations"]]
        plot = plotter.draw(top_acts, random_acts, profile, (stats or {}).get("firing_rate"), prefix="u")
        return dict(row=row, unit=page["unit"], run_id=page["run_id"], stats=stats, analysis=analysis,
                    explanations=explanations, controls=controls, windows=by_split, max_activation=m, plot=plot,
                    calls=[_call(c) for c in page["calls"]],
                    prev=self.rows[i - 1] if i else None, next=self.rows[i + 1] if i + 1 < len(self.rows) else None)


def name_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (``ReportData.unit_rows``, in its order) with each unit's ``slug`` and ``name`` set."""
    multi_model = len({r["model_hash"] for r in rows}) > 1
    for r in rows:
        r["slug"] = unit_slug(r, multi_model)
        r["name"] = unit_name(r)
    return rows


def filter_layers(layers: dict[int, dict[str, Any]], filters: Filters) -> dict[int, dict[str, Any]]:
    return {k: v for k, v in layers.items() if filters.layer is None or k == filters.layer}


def unit_name(row: dict[str, Any]) -> str:
    base = f"{row['layer']}/{row['unit']}"
    return base if row["kind"] == "neuron" else f"{row['kind']}@{base}"


def unit_slug(row: dict[str, Any], multi_model: bool = False) -> str:
    kind = "" if row["kind"] == "neuron" else re.sub(r"[^A-Za-z0-9_.]+", "-", row["kind"]) + "-"
    model = f"{row['model_hash'][:8]}-" if multi_model else ""
    return f"{model}{kind}{row['layer']}-{row['unit']}"


def shade(tokens: list[str], acts: list[float], m: float, preds: list[float] | None = None
           ) -> list[tuple[str, int, int | None, str | None]]:
    """(token, true level 0..10, simulated level 0..10 or None, hover text or None) per token."""
    out = []
    for k, (tok, a) in enumerate(zip(tokens, acts)):
        level = 0 if m <= 0 or a <= 0 else min(10, round(10 * a / m))
        p = None if preds is None else preds[k]
        sim = None if p is None else max(0, min(10, round(p)))
        hover = f"{a:.3g}" if p is None else f"{a:.3g} | sim {p:.2g}"
        out.append((tok, level, sim, hover if level or sim else None))
    return out


def _explanation(n: int, e: dict[str, Any], windows: list[dict[str, Any]]) -> dict[str, Any]:
    test = e["scores"].get("test")
    by_id = {w["id"]: w for w in windows}
    scored = [w for w in windows if w["split"] == "test" and w["id"] in e["simulations"]]
    check = None
    if test is not None and scored:
        check = score_checks([w["activations"] for w in scored],
                             [e["simulations"][w["id"]]["predictions"] for w in scored], seed=e["id"])
    details = e["details"] or {}
    judged = [judgement_view(j) for j in e.get("judgements", [])]
    return dict(
        n=n, id=e["id"], text=e["text"], explainer=e["explainer"], status=e["status"], reason=e["reason"],
        is_baseline=bool(e["is_baseline"]), run_id=e["run_id"], created_at=e["created_at"],
        llm_calls=e["llm_calls"], tokens_in=e["tokens_in"], tokens_out=e["tokens_out"], cost_usd=e["cost_usd"],
        test=test, valid=e["scores"].get("valid"), check=check, explainer_config=e["explainer_config"],
        simulator_config=(test or e["scores"].get("valid") or {}).get("simulator_config"),
        simulations={k: v for k, v in e["simulations"].items() if k in by_id},
        per_window=(test or {}).get("per_window") or {},
        candidates=details.get("candidates") or [], chosen=details.get("chosen"), stop=details.get("stop"),
        tool_calls=details.get("tool_calls"), rounds=details.get("rounds"), drafts=details.get("drafts"),
        other={k: v for k, v in details.items() if k not in {"candidates", "chosen", "stop", "tool_calls", "rounds",
                                                               "drafts", "llm_calls", "tokens_in", "tokens_out",
                                                               "cost_usd"}},
        other_run=bool(windows) and not scored and test is not None,
        judgements=judged, detection=latest(judged, "detection"), fuzzing=latest(judged, "fuzzing"),
    )


def _clip(text: Any) -> str:
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    return text if len(text) <= CALL_TEXT_LIMIT else text[:CALL_TEXT_LIMIT] + f" … ({len(text):,} characters)"


def _call(c: dict[str, Any]) -> dict[str, Any]:
    """One LLM call as a unit page lists it: the messages sent, the reply and its tool calls, clipped."""
    messages = []
    for msg in c["messages"] if isinstance(c["messages"], list) else []:
        if isinstance(msg, dict):
            messages.append(dict(role=str(msg.get("role", "?")), content=_clip(msg.get("content")),
                                 tool_calls=_tool_calls(msg.get("tool_calls"))))
    reply = None
    choices = (c["response"] or {}).get("choices") if isinstance(c["response"], dict) else None
    if choices and isinstance(choices[0], dict):
        msg = choices[0].get("message") or {}
        reply = dict(content=_clip(msg.get("content")), tool_calls=_tool_calls(msg.get("tool_calls")))
    return dict(c, messages=messages, reply=reply)


def _tool_calls(calls: Any) -> list[dict[str, str]]:
    out = []
    for tc in calls if isinstance(calls, list) else []:
        fn = tc.get("function", {}) if isinstance(tc, dict) else {}
        out.append(dict(name=str(fn.get("name", "?")), arguments=_clip(fn.get("arguments"))))
    return out
