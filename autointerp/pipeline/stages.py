"""The two stages of one unit, and how they meet without calling back: explain, then judge.

    stages = Stages(explainer, ScoringStage([SimulationScorer(simulator)]))
    scored = await stages.unit(record, tools=None, thread="<run id>:13/7")     # a db.ScoredExplanation
    controls = await stages.controls(record, [("control:empty", "", {})])

- **Explain** (``explain``): the explainer sees the record's train windows only; if it chooses between drafts or
  revises, it gets a ``ValidJudge``: the scoring stage's validating scorer on the ``valid`` split, behind the agent's
  ``Judge`` interface. An explainer error ends the unit ``failed`` with its reason; ``RunStop`` propagates.
- **Judge** (``ScoringStage``): every scorer of the run judges the final text on ``test``. The simulation scorer's
  judgement is the unit's score (``score``, the leaderboard); the other scorers' judgements ride along.

Every LLM call made for a unit (the explainer's, its validations, the test judgements) is logged with the unit and
counted on its row (``autointerp.llm.scope.call_scope``), so a run's rows sum to its ``llm_calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from autointerp.agent.base import Explainer, Explanation, Validation
from autointerp.db.results import ScoredExplanation
from autointerp.llm.scope import call_scope
from autointerp.llm.types import RunStop
from autointerp.scoring.classify import ClassificationScorer
from autointerp.scoring.scorer import HeldOut, Judgement, Scorer
from autointerp.scoring.simulation import SimulationJudgement, SimulationScorer
from autointerp.subject.records import UnitRecord

WORST_WINDOWS = 4  # valid windows a revision is shown: those the validating scorer judged most wrong


class ScoringStage:
    """The run's scorers; the first simulation scorer is the score of record (and validates candidates)."""

    def __init__(self, scorers: Sequence[Scorer]):
        sims = [s for s in scorers if isinstance(s, SimulationScorer)]
        if not sims:
            raise ValueError("the scoring stage needs the simulation scorer: it gives the score of record")
        self.scorers = list(scorers)
        self.simulation: SimulationScorer = sims[0]

    @property
    def classifiers(self) -> list[ClassificationScorer]:
        """The detection and fuzzing scorers of the run, in order."""
        return [s for s in self.scorers if isinstance(s, ClassificationScorer)]

    @property
    def uses_llm(self) -> bool:
        return any(s.uses_llm for s in self.scorers)

    def config(self) -> dict[str, Any]:
        """Every scorer's configuration, by name: part of the run key."""
        return {s.name: s.config() for s in self.scorers}

    async def judge(self, record: UnitRecord, text: str, split: HeldOut = "test"
                    ) -> tuple[SimulationJudgement, list[Judgement]]:
        """The simulation judgement of ``text`` on ``split`` and the other scorers' judgements. When two or more of
        them call an LLM (an LLM simulator and an LLM judge) they run at once, waiting on their endpoints together
        (the profiles bound the requests in flight), and each finishes before the first error in the scorers' order
        is raised (a ``RunStop`` included); otherwise one after the other, as scorers that only compute gain nothing
        from sharing the event loop."""
        if sum(s.uses_llm for s in self.scorers) < 2:
            results: list[Any] = [await s.judge(record, text, split) for s in self.scorers]
        else:
            results = await asyncio.gather(*(s.judge(record, text, split) for s in self.scorers),
                                           return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        simulation = results[self.scorers.index(self.simulation)]
        return simulation, [r for s, r in zip(self.scorers, results) if s is not self.simulation]


class ValidJudge:
    """The agent's ``Judge`` for one unit: the scoring stage's validating scorer on ``valid`` (``validate_windows``
    of its valid windows, half top and half random: ``UnitRecord.for_validation``; 0: all), nothing else."""

    def __init__(self, scorer: SimulationScorer, record: UnitRecord, validate_windows: int = 0):
        self.scorer, self.record = scorer, record.for_validation(validate_windows)

    async def validate(self, text: str) -> Validation:
        judgement = await self.scorer.judge(self.record, text, "valid")
        worst = judgement.worst_windows(self.record, WORST_WINDOWS)
        return Validation(judgement.value, worst, judgement.failure or judgement.first_error)


async def explain(explainer: Explainer, record: UnitRecord, judge: ValidJudge | None, tools: Any,
                  thread: str) -> Explanation:
    """The explain stage: the explainer's explanation of ``record`` from its train windows (``failed`` with the
    reason when the explainer raised)."""
    try:
        return await explainer.explain(record.for_explainer(), judge, tools=tools, thread=thread)
    except RunStop:
        raise
    except Exception as e:  # an explainer failure ends this unit "failed"; the run goes on
        return Explanation("", status="failed", reason=f"{type(e).__name__}: {e}", explainer=explainer.name)


class Stages:
    """One unit through explain then judge, and its controls through judge alone."""

    def __init__(self, explainer: Explainer, scoring: ScoringStage, validate_windows: int = 0):
        self.explainer, self.scoring, self.validate_windows = explainer, scoring, validate_windows

    async def unit(self, record: UnitRecord, tools: Any = None, thread: str = "") -> ScoredExplanation:
        """Explain (train windows; candidates judged on valid), then judge the text on test."""
        with call_scope(str(record.id)) as usage:
            judge = ValidJudge(self.scoring.simulation, record, self.validate_windows)
            explanation = await explain(self.explainer, record, judge, tools, thread)
            simulation, others = (await self.scoring.judge(record, explanation.text) if explanation.text
                                  else (None, []))
        return ScoredExplanation.build(explanation, self.explainer.config(), self.explainer.is_baseline,
                                       self.scoring.simulation, simulation, usage, judgements=others)

    async def controls(self, record: UnitRecord, texts: Sequence[tuple[str, str, dict[str, Any]]]
                       ) -> list[ScoredExplanation]:
        """Each control text (explainer name, text, details), judged on test like an explanation."""
        out = []
        for name, text, details in texts:
            with call_scope(str(record.id)) as usage:
                simulation, others = await self.scoring.judge(record, text)
            explanation = Explanation(text, status="done", explainer=name, details={"control": name, **details})
            config = {"kind": "control", "name": name, "of": self.explainer.name if text else None}
            out.append(ScoredExplanation.build(explanation, config, False, self.scoring.simulation, simulation, usage,
                                               role="control", judgements=others))
        return out
