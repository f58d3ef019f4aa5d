"""The row of the ``judgements`` table (migration ``m011_judgements``) for one detection or fuzzing judgement
(``autointerp.scoring.classify.ClassificationJudgement``); ``Store.insert_judgement`` writes it.

A window's tokens are stored once per judgement (``m012_shared_example_tokens``): fuzzing shows each activating
window twice, marked where the unit fires and elsewhere, and the second example is stored without ``tokens``
(``share_tokens``); ``Reads.judgements`` gives every example its tokens back (``restore_tokens``).

    >>> share_tokens([{"index": 7, "tokens": ["a"]}, {"index": 7, "tokens": ["a"]}])
    [{'index': 7, 'tokens': ['a']}, {'index': 7}]
    >>> restore_tokens([{"index": 7, "tokens": ["a"]}, {"index": 7}])
    [{'index': 7, 'tokens': ['a']}, {'index': 7, 'tokens': ['a']}]
"""

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
        failure=clean(j.failure), seed=j.seed, examples=to_json(share_tokens([e.as_dict() for e in j.examples])),
        counts=to_json(j.counts), diagnostics=to_json(j.diagnostics), created_at=utc_iso(),
    )


def share_tokens(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The examples as stored: one whose window (``index``) came earlier in the list loses its ``tokens``."""
    seen: set[Any] = set()
    out = []
    for x in examples:
        if x.get("index") in seen and "tokens" in x:
            x = {k: v for k, v in x.items() if k != "tokens"}
        seen.add(x.get("index"))
        out.append(x)
    return out


def restore_tokens(examples: Any) -> Any:
    """Stored examples with every one's ``tokens`` (those of the first example of the same window); anything that
    is not a list of dicts is given back as it is (a file another program wrote)."""
    if not isinstance(examples, list):
        return examples
    first = {x.get("index"): x["tokens"] for x in reversed(examples) if isinstance(x, dict) and "tokens" in x}
    return [dict(x, tokens=first.get(x.get("index"), [])) if isinstance(x, dict) and "tokens" not in x else x
            for x in examples]
