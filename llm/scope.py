"""Which unit an LLM call is for, and a tally of the calls made for one piece of work, without threading either
through every signature.

    from autointerp.llm.scope import call_scope

    with call_scope("13/7") as usage:            # every chat call made inside, in this task or tasks it starts,
        await explainer.explain(record, validate)  # is logged with unit "13/7" (unless the call names its own)
    usage.calls, usage.tokens_in, usage.cost_usd   # and counted here: one per call record, failures included

Scopes nest; a call is counted by the innermost one only. It is a ``contextvars`` variable: asyncio tasks created
inside the block inherit it, and concurrent units in their own tasks never see each other's scope. Every
``CallRecord`` a client logs is counted exactly once in the scope it was made in, so a tally equals the rows the
call sink stored for that work.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from autointerp.llm.types import Totals


@dataclass(frozen=True)
class Scope:
    unit: str | None  # the unit the calls are about, as str(UnitId), e.g. "13/7"
    usage: Totals  # calls, errors, tokens and cost of the calls made in this scope


_CURRENT: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("autointerp_llm_scope", default=None)


@contextlib.contextmanager
def call_scope(unit: str | None = None) -> Iterator[Totals]:
    """Count the calls made inside (see the module docstring); ``unit``: None keeps the enclosing scope's unit."""
    outer = _CURRENT.get()
    scope = Scope(unit if unit is not None else (outer.unit if outer else None), Totals())
    token = _CURRENT.set(scope)
    try:
        yield scope.usage
    finally:
        _CURRENT.reset(token)


def current_scope() -> Scope | None:
    return _CURRENT.get()
