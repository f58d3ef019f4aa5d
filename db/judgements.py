"""The row of the ``judgements`` table (migration ``m011_judgements``) for one detection or fuzzing judgement
(``autointerp.scoring.classify.ClassificationJudgement``); ``Store.insert_judgement`` writes it."""

from __future__ import annotations

from typing import Any

from autointerp.db.values import finite, to_json, utc_iso
from autointerp.llm.secrets import scrub_secrets, scrub_text


def judgement_row(explanation_id: int, j: Any) -> dict[str, Any]:
    """Every column but ``id``; the reasons scrubbed of credential shapes, the JSON columns encoded."""
    def clean(text: str | None) -> str | None:
        return None if text is None else scrub_text(text)

    return dict(
        explanation_id=explanation_id, scorer=j.scorer, split=j.split, judge=j.judge,
        config=to_json(scrub_secrets(j.config)), balanced_accuracy=finite(j.balanced_accuracy), auroc=finite(j.auroc),
        n_judged=j.n_judged, n_failed=j.n_failed,
        undefined_reason=clean(j.undefined_reason) if j.value is None else None,
        failure=clean(j.failure), seed=j.seed, examples=to_json([e.as_dict() for e in j.examples]),
        counts=to_json(j.counts), diagnostics=to_json(j.diagnostics), created_at=utc_iso(),
    )
