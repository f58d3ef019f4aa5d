"""The detection and fuzzing scorers of a run, built from its config (``autointerp.scoring.classify``).

    >>> judge = make_judge(cfg, llm)                       # cfg.judge: "baseline" (quoted tokens) or a profile name
    >>> detection, fuzzing = make_classifiers(cfg, llm)    # Scorer objects: .name, .uses_llm, .config(), .judge(...)

Settings (``autointerp.config``, section ``judge``): ``judge``, ``judge_batch`` (examples per LLM request),
``judge_examples`` (examples of each class per held-out split); the shuffle is seeded by ``seed``. Each scorer's
``config()`` is what enters the run key.
"""

from __future__ import annotations

from collections.abc import Sequence

from autointerp.config import Config
from autointerp.errors import UsageError
from autointerp.pipeline.components import LLMContext
from autointerp.scoring.classify import ClassificationScorer, Judge, Task
from autointerp.scoring.judges import LLMJudge, QuotedJudge


def make_judge(cfg: Config, llm: LLMContext) -> Judge:
    """``cfg.judge``: "baseline" (the non-LLM floor, ``QuotedJudge``) or a model profile name (``LLMJudge``)."""
    if cfg.judge == "baseline":
        return QuotedJudge()
    try:
        client, profile = llm.client(cfg.judge)
    except UsageError:
        if cfg.judge in llm.profiles or ":" in cfg.judge:
            raise  # a real profile whose key or URL is missing: that message says what to do
        known = ", ".join(["baseline", *sorted(llm.profiles)])
        raise UsageError(f"unknown judge {cfg.judge!r}; choose one of: {known}, or openai:MODEL "
                         "(define profiles as [models.NAME] in autointerp.toml)")
    return LLMJudge(client, profile, examples_per_request=cfg.judge_batch)


def make_classifiers(cfg: Config, llm: LLMContext, names: Sequence[Task] = ("detection", "fuzzing")
                     ) -> list[ClassificationScorer]:
    """One scorer per name, sharing one judge."""
    judge = make_judge(cfg, llm)
    return [ClassificationScorer(name, judge, n_per_class=cfg.judge_examples, seed=cfg.seed) for name in names]
