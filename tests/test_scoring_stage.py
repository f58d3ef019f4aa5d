"""The scoring stage: an LLM simulator and an LLM judge wait on their endpoints at once; an error in either is raised
once both are done. The scorers are the real ones; only the simulator and the judge are doubles that wait on each
other, so that running them one after the other would time out."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.llm.types import RunStop
from autointerp.pipeline.stages import ScoringStage
from autointerp.scoring.classify import DetectionScorer
from autointerp.scoring.judges import QuotedJudge
from autointerp.scoring.simulation import SimulationScorer
from autointerp.scoring.simulator import SimulationResult

from test_report_judgements import TEXT, judged_record


class WaitingSimulator:
    """An LLM-like simulator that answers only once the judge has been asked (or fails after ``wait_s``)."""

    name, is_baseline, profile = "waiting", False, None

    def __init__(self, asked: asyncio.Event, wait_s: float = 5.0):
        self.asked, self.wait_s, self.done = asked, wait_s, False

    def config(self):
        return {"kind": "waiting"}

    def estimate(self, *args):
        return None

    async def simulate(self, explanation, windows):
        await asyncio.wait_for(self.asked.wait(), self.wait_s)
        await asyncio.sleep(0.1)  # still simulating when the judge has finished
        self.done = True
        return SimulationResult(predictions=[[float(i) for i in range(len(w))] for w in windows],
                                errors=[None] * len(windows))


class SignallingJudge(QuotedJudge):
    """The quoted-token judge, counted as an LLM judge, that says when it is asked; ``stop``: then stops the run."""

    name, uses_llm = "signalling", True

    def __init__(self, asked: asyncio.Event, stop: bool = False):
        self.asked, self.stop = asked, stop

    async def answer(self, task, explanation, examples):
        self.asked.set()
        if self.stop:
            raise RunStop("the judge's endpoint answers another model")
        return await super().answer(task, explanation, examples)


def stage(stop: bool = False) -> tuple[ScoringStage, WaitingSimulator]:
    asked = asyncio.Event()
    simulator = WaitingSimulator(asked)
    return ScoringStage([SimulationScorer(simulator), DetectionScorer(SignallingJudge(asked, stop))]), simulator


def test_an_llm_simulator_and_an_llm_judge_wait_together():
    async def go():
        scoring, _ = stage()
        return await scoring.judge(judged_record(1), TEXT)

    simulation, (detection,) = asyncio.run(go())
    assert simulation.failure is None and simulation.score is not None  # it did not wait out its 5 s
    assert detection.scorer == "detection" and detection.value is not None


def test_a_run_stop_from_one_scorer_is_raised_after_the_other_finished():
    async def go():
        scoring, simulator = stage(stop=True)
        with pytest.raises(RunStop, match="another model"):
            await scoring.judge(judged_record(1), TEXT)
        return simulator

    assert asyncio.run(go()).done  # no simulation left running behind the stop
