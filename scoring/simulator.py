"""The Simulator interface: predict a unit's per-token activation (0..10) from an explanation alone.

    result = await simulator.simulate("fires on the token 'def'", [["def", " f", "(", ")"], ...])
    result.predictions[0]      # one float in [0, 10] per token of window 0

A simulator never sees activations. A window it could not simulate has ``predictions[i] is None`` and the reason in
``errors[i]``: never a silent zero (docs/methods.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter


@dataclass(frozen=True)
class SimulationResult:
    predictions: list[list[float] | None]  # per window, per token, expected activation on the 0..10 scale
    errors: list[str | None]  # per window: None, or why the window has no prediction
    details: dict[str, Any] = field(default_factory=dict)  # e.g. positions where no numeric token appeared

    def __post_init__(self):
        assert len(self.predictions) == len(self.errors)


@runtime_checkable
class Simulator(Protocol):
    name: str
    is_baseline: bool  # True for the non-LLM floor
    profile: ModelProfile | None  # the LLM profile it calls (None: it calls none)

    def config(self) -> dict[str, Any]: ...

    def estimate(self, windows: list[list[str]], counter: TokenCounter, explanation: str) -> Estimate | None:
        """Expected LLM usage of simulating ``windows`` from ``explanation`` (None: no LLM call)."""
        ...

    async def simulate(self, explanation: str, windows: list[list[str]]) -> SimulationResult: ...
