"""When a unit "fires": the rule every count of a capture uses (firing rates, dead units, token and n-gram detectors,
positional units, regularization units), chosen per model and stored with the results.

    >>> from autointerp.subject.firing import resolve_rule, max_fraction_thresholds
    >>> resolve_rule("auto", "silu")
    'max_fraction'

Rules (``CaptureConfig.firing``):

- ``fixed``: fires when ``a > threshold`` (``CaptureConfig.threshold``, default 0), the same for every unit. Right
  for ReLU units, whose activation is exactly 0 when they are off. ``auto`` picks it for ReLU models.
- ``max_fraction`` (``auto`` for every other nonlinearity: GELU, SiLU, gated MLPs): unit u fires when
  ``a > t_u`` with ``t_u = max(MAX_FRACTION * m_u, FLOOR_FRACTION * median_v max(m_v, 0))``, where ``m_u`` is u's
  largest activation over the first ``CALIBRATION_TOKENS`` content tokens of the pass and the median runs over the
  units of the layer. A gated unit ``act(gate) * up`` is rarely exactly 0: under "> 0" it "fires" on about half of all
  tokens (SmolLM2-135M layer 13: 50.0% for every unit, no dead units, no detectors), which says nothing. Half of the
  unit's own maximum separates its strong activations from its background the way Bills et al. normalise activations
  for the simulator (0..10 of the max). The layer-relative floor makes "dead" meaningful again: a unit whose
  activations stay under a tenth of the layer's typical maximum never fires, as a ReLU unit that never leaves 0.

The thresholds come from the same streaming pass: capture holds back the first ``CALIBRATION_TOKENS`` tokens'
activations (memory ``tokens x units x layers x 4`` bytes: 8,192 x 1,536 x 4 = 50 MB per SmolLM2 layer), sets the
thresholds from them, then feeds those batches and every later one through the same counts, so each statistic uses
one threshold per unit. A unit whose only strong activations come after the calibration tokens gets a lower
threshold than its true maximum would give (it fires more often than it would under the rule with the whole
corpus's maxima); raise ``calibration_tokens`` when that matters. The thresholds are stored per unit
(``UnitStats.threshold``) and the rule per layer (``LayerSummary.firing_rule``).

Negative activations of gated units are signal too (the down projection reads the sign): for every rule but
``fixed``, capture also keeps each unit's ``BOTTOM_K`` windows with the most negative activation
(``LayerCapture.bottom_windows``), stored with the unit's statistics. The simulator's 0..10 scale is unchanged
(docs/methods.md §2: negative activations map to 0).
"""

from __future__ import annotations

from typing import Literal

import torch

from autointerp.subject.model import RELU_ACTIVATIONS

FiringRule = Literal["auto", "fixed", "max_fraction"]
RULES: tuple[str, ...] = ("auto", "fixed", "max_fraction")
MAX_FRACTION = 0.5
FLOOR_FRACTION = 0.1
CALIBRATION_TOKENS = 8192
BOTTOM_K = 10


def resolve_rule(rule: str, activation: str) -> str:
    """``auto`` -> ``fixed`` for ReLU units, ``max_fraction`` for any other nonlinearity; others unchanged."""
    if rule not in RULES:
        raise ValueError(f"firing rule {rule!r} is not one of {', '.join(RULES)}")
    if rule == "auto":
        return "fixed" if activation in RELU_ACTIVATIONS else "max_fraction"
    return rule


def max_fraction_thresholds(unit_max: torch.Tensor, fraction: float = MAX_FRACTION,
                            floor: float = FLOOR_FRACTION) -> torch.Tensor:
    """[U] thresholds of the ``max_fraction`` rule from each unit's calibration maximum ``unit_max`` [U]."""
    unit_max = unit_max.float()
    layer_floor = floor * float(unit_max.clamp(min=0).median())
    return torch.clamp(fraction * unit_max, min=layer_floor)


def describe(rule: str, threshold: float, calibration_tokens: int, seen: int | None = None) -> str:
    """One line stating the rule in force, stored with the results."""
    if rule == "fixed":
        return f"fixed: fires when activation > {threshold:g}"
    used = calibration_tokens if seen is None else min(seen, calibration_tokens)
    return (f"max_fraction: fires when activation > max({MAX_FRACTION:g} x the unit's max, {FLOOR_FRACTION:g} x the "
            f"layer's median unit max), maxima over the first {used} tokens")


def bottom_k(rule: str) -> int:
    """How many most-negative windows capture keeps per unit under ``rule`` (resolved)."""
    return 0 if rule == "fixed" else BOTTOM_K
