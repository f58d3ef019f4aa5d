"""Terminal rendering of a unit's card (``autointerp show LAYER/UNIT``), from ``Store.unit_card``.

    >>> from rich.console import Console
    >>> render_unit_card(Console(), store.unit_card(13, 42), n_windows=5)

Activating tokens are highlighted by strength: the background goes from none to full as the token's activation goes
from 0 to the window set's max (the same normalisation as the explainer's prompt, docs/methods.md §2).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from autointerp.cli.text import cell, inert, markup

LEVELS = ["", "on #3a2a00", "on #6b4a00", "on #a06a00", "on #d08a00"]


def highlight(tokens: list[str], activations: list[float], m: float) -> Text:
    """Tokens as one line of text, each coloured by activation / m in five levels; newlines shown as ⏎."""
    text = Text()
    for tok, a in zip(tokens, activations):
        level = 0 if m <= 0 or a <= 0 else min(4, 1 + int(4 * a / m - 1e-9))
        text.append(inert(tok.replace("\n", "⏎")), style=LEVELS[level] + (" bold" if level == 4 else ""))
    return text


def render_unit_card(console: Console, card: dict[str, Any], n_windows: int = 5) -> None:
    u, stats = card["unit"], card["stats"] or {}
    console.print(f"[bold]unit {u['layer']}/{u['unit']}[/bold] ({markup(u['kind'])}, model {markup(u['model_hash'])})")
    if stats:
        rate = stats["firing_rate"] or 0.0
        console.print(
            f"fires on {stats['fire_count']:,} of {stats['n_tokens']:,} tokens ({100 * rate:.2f}%)"
            f"{'  [red]DEAD[/red]' if stats['fire_count'] == 0 else ''}; mean {stats['mean']:.4f}, "
            f"std {stats['std']:.4f}, max {stats['max']:.4f}"
        )
        if stats.get("top_tokens"):
            tops = ", ".join(f"{t!r} {f}/{n}" for t, f, n in stats["top_tokens"][:8])
            console.print(cell(f"top tokens (firings/occurrences): {tops}"))
    table = Table("explainer", "status", "test score", "top", "random", "detection", "fuzzing", "explanation",
                  title="explanations", caption="test score: Pearson r of simulated and true activations on the test "
                  "windows (top, random: each kind alone); detection, fuzzing: a judge's balanced accuracy on test "
                  "examples (chance 0.5), with AUROC when it gave probabilities")
    for e in card["explanations"]:
        test = next((s for s in e["scores"] if s["split"] == "test"), None)
        cells = [_num(test and test["score"]), _num(test and test["score_top"]), _num(test and test["score_random"])]
        if test and test["score"] is None:
            cells[0] = f"n/a ({test['undefined_reason']})"
        status = "failed (scoring)" if e.get("scoring") == "failed" else e["status"]
        text = e["text"] or ("(the empty explanation)" if e.get("role") == "control" else e["reason"] or "")
        table.add_row(cell(e["explainer"]), cell(status), *map(cell, cells), judged(e.get("detection")),
                      judged(e.get("fuzzing")), cell(text))
    console.print(table)
    windows = card["windows"][:n_windows]
    if windows:
        m = max(max(w["activations"]) for w in windows)
        console.print(f"top windows (max activation {m:.4f}; brighter = stronger):")
        for w in windows:
            line = cell(f"#{w['rank']:<3}{w['split']:<6}{max(w['activations']):8.4f}  ")
            console.print(line + highlight(w["tokens"], w["activations"], m), soft_wrap=True)


def judged(j: dict[str, Any] | None) -> Text:
    """One detection or fuzzing judgement (a ``judgements`` row) in a cell, one line each: balanced accuracy (or
    n/a and why it is undefined), AUROC when the judge gave probabilities, the examples judged and failed."""
    if j is None:
        return cell("not judged")
    lines = [f"n/a ({j['undefined_reason'] or j['failure'] or 'undefined'})" if j["balanced_accuracy"] is None
             else f"{j['balanced_accuracy']:.3f}"]
    if j["auroc"] is not None:
        lines.append(f"AUROC {j['auroc']:.3f}")
    lines.append(f"{j['n_judged']} judged" + (f", {j['n_failed']} failed" if j["n_failed"] else ""))
    return Text("\n").join(cell(line) for line in lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
