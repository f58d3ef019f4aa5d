"""LLM call records in the store: ``record_call`` (mixed into ``Store``) and ``RunCallSink``, a sink bound to a run.

    sink = store.call_sink(run_id)          # hand it to an LLM client: every call is stored with the run
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autointerp.db.values import finite as _finite, to_json as _json, utc_iso
from autointerp.llm.secrets import scrub_text
from autointerp.subject.records import UnitId


class CallWrites:
    """The LLM-call writes of ``Store`` (needs its ``db``, ``_write``, ``_insert`` and ``_unit_id``)."""

    def record_call(self, record: Any, run_id: str | None = None) -> None:
        """Store one LLM call record (duck-typed: profile, model, purpose, unit, messages, response, tokens_in,
        tokens_out, latency_s, cost_usd, error, attempts, created_at).

        ``record.unit`` (a ``UnitId``, its ``str()`` form such as "3/17" or "sae:x@3/17", or None) is linked only
        when ``run_id`` is given: a unit's identity needs the run's model hash. Use ``call_sink(run_id)`` to bind a run.
        """
        with self._write():
            unit_id = None
            unit = getattr(record, "unit", None)
            if run_id is not None and unit is not None:
                (model_hash,) = self.db.execute("SELECT model_hash FROM runs WHERE id = ?", [run_id]).fetchone()
                unit = _as_unit_id(unit)
                unit_id = self._unit_id(model_hash, unit.layer, unit.unit, unit.kind)
            created = getattr(record, "created_at", None)
            row = dict(
                run_id=run_id, unit_id=unit_id, profile=record.profile, model=record.model, purpose=record.purpose,
                messages=_json(record.messages), response=None if record.response is None else _json(record.response),
                tokens_in=record.tokens_in, tokens_out=record.tokens_out, latency_s=_finite(record.latency_s),
                cost_usd=_finite(record.cost_usd), error=None if record.error is None else scrub_text(record.error),
                attempts=record.attempts,
                created_at=utc_iso(created) if isinstance(created, datetime) else created or utc_iso(),
            )
            self._insert("llm_calls", row)

    def call_sink(self, run_id: str | None) -> RunCallSink:  # type: ignore[override]
        """A sink that records every call it is handed under ``run_id``."""
        return RunCallSink(self, run_id)


@dataclass(frozen=True)
class RunCallSink:
    """An LLM call sink bound to a run (``autointerp.llm.types.CallSink``, the protocol the clients write to): hand
    it to the LLM client, which calls ``record_call`` after each call."""

    store: CallWrites  # the Store
    run_id: str | None

    def record_call(self, record: Any) -> None:
        self.store.record_call(record, self.run_id)


def _as_unit_id(unit: UnitId | str) -> UnitId:
    """A ``UnitId`` as given, or parsed back from its ``str()`` form: "layer/unit" or "kind@layer/unit"."""
    if isinstance(unit, UnitId):
        return unit
    match = re.fullmatch(r"(?:(.+)@)?(\d+)/(\d+)", unit)
    if match is None:
        raise ValueError(f"unit {unit!r} is neither a UnitId nor its str() form 'layer/unit' or 'kind@layer/unit'")
    return UnitId(int(match[2]), int(match[3]), match[1] or "neuron")
