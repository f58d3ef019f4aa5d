"""What the explainer agent may look at, as one read-only interface the pipeline implements per unit.

    tools: UnitTools = ...                      # built by autointerp.pipeline for one unit (subject-backed)
    tools.statistics()                          # firing rate, top tokens, quantiles, positional profile, ...
    tools.train_windows(offset=10, n=5)         # more *train* windows, ranked by max activation
    tools.quantile_windows(0.5, 0.9, n=4)       # fresh corpus windows whose max activation is in that quantile band
    tools.run_text("def f(self):")              # the unit's activation on each token of text the LLM wrote

Nothing here can reach ``valid`` or ``test`` activations: train windows come from the record handed to the
explainer, quantile windows are drawn from corpus windows outside every split, and ``run_text`` runs the subject
model on new text only. No tool executes code.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from autointerp.subject.records import Window


@runtime_checkable
class UnitTools(Protocol):
    def statistics(self) -> dict[str, Any]:
        """Corpus-wide facts about the unit (JSON-serialisable): firing_rate, dead, top_tokens
        [{"token", "firings", "occurrences"}], quantiles, position_firing_rate, and analysis results when present."""
        ...

    def train_windows(self, offset: int = 0, n: int = 5) -> list[Window]:
        """Train-split top windows ``offset .. offset + n`` in rank order (an empty list past the end)."""
        ...

    def quantile_windows(self, lo: float, hi: float, n: int = 4) -> list[Window]:
        """Up to ``n`` windows, outside every split, whose max activation lies between the ``lo`` and ``hi``
        quantiles (0..1) of the unit's activation distribution."""
        ...

    def run_text(self, text: str) -> list[tuple[str, float]]:
        """Tokenize ``text`` as the subject does, run it, return (token, activation) per token (BOS excluded)."""
        ...
