"""The LLM explainer agent on a planted unit (fires on the token " self"), with scripted FakeLLM replies, fake
UnitTools and a fake Validator: drafting, tools, revision, caps, re-asks, split hygiene and checkpoint resume.
No network; every graph is built inside its test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from dataclasses import asdict
from typing import Any

import pytest

from autointerp.agent.base import Explainer
from autointerp.agent.graph import AgentLimits, run_tool
from autointerp.agent.llm_explainer import LLMExplainer
from autointerp.llm.client import Budget, BudgetExceeded
from autointerp.testing.fake import FakeLLM
from autointerp.llm.profiles import ModelProfile
from autointerp.testing.server import HTTPFailure, Reply
from autointerp.llm.tokens import TokenCounter
from autointerp.subject.records import (
    UnitRecord,
    UnitStats,
)

from fakes import (
    BETTER,
    BETTER_TEXT,
    SELF,
    SELF_TEXT,
    FakeTools,
    FakeJudge,
    Script,
    Sink,
    planted_record,
)

NO_TOOLS = AgentLimits(revise_rounds=0, max_tool_calls=0)


def explainer(script: Script, limits: AgentLimits, *, tools: bool = True, profile: ModelProfile | None = None,
              **kw: Any) -> tuple[LLMExplainer, FakeLLM, Sink]:
    """An LLMExplainer over a FakeLLM replaying ``script``; ``kw``: checkpoint_path for the explainer, anything else
    for the FakeLLM (e.g. budget)."""
    checkpoint = {key: kw.pop(key) for key in ("checkpoint_path",) if key in kw}
    sink = Sink()
    fake = FakeLLM(script, profile=profile, name="fake-profile", sink=sink, **kw)
    return LLMExplainer(fake, fake.profile, FakeTools if tools else None, limits, **checkpoint), fake, sink


def run(coro):
    return asyncio.run(coro)


# --- tests ----------------------------------------------------------------------------------------------------------

def test_is_an_explainer_whose_config_names_everything_but_the_key():
    ex, fake, _ = explainer(Script(), AgentLimits())
    assert isinstance(ex, Explainer) and not ex.is_baseline and ex.name == "fake-profile"
    config = ex.config()
    assert config["limits"]["revise_rounds"] == 1 and config["tools"] is True and len(config["prompt_sha256"]) == 64
    assert "api_key_env" not in config["profile"] and config["profile"]["model"] == fake.profile.model
    json.dumps(config)  # stored in the DB as JSON


def test_estimate_counts_the_planned_calls():
    record = planted_record()
    one, _, _ = explainer(Script(), NO_TOOLS)
    assert one.estimate(record, TokenCounter()).calls == 1
    full, _, _ = explainer(Script(), AgentLimits(best_of=2, revise_rounds=1, max_tool_calls=3))
    estimate = full.estimate(record, TokenCounter())
    assert estimate.calls == 6 and estimate.tokens_in > 5 * one.estimate(record, TokenCounter()).tokens_in


def test_exactly_one_llm_call_without_revision_or_tools():
    script = Script(SELF)
    ex, fake, sink = explainer(script, NO_TOOLS)
    record = planted_record()
    validator = FakeJudge(record)
    out = run(ex.explain(record.for_explainer(), validator))
    assert (out.text, out.status, out.reason) == (SELF_TEXT, "done", None)
    assert fake.totals.calls == 1 and out.details["llm_calls"] == 1 and validator.calls == []
    assert script.requests[0]["tools"] is None and [r.purpose for r in sink.records] == ["explain"]
    assert out.details["tokens_in"] > 0 and out.details["tool_calls"] == 0 and out.explainer == "fake-profile"


def test_drafts_calls_tools_then_revises_and_keeps_the_better():
    script = Script(
        Reply(tool_calls=[("statistics", {}), ("run_text", {"text": "def f(self): return self.x"})]),
        SELF,
        BETTER,
    )
    ex, fake, sink = explainer(script, AgentLimits(revise_rounds=1, max_tool_calls=4))
    record = planted_record()
    validator = FakeJudge(record, {SELF_TEXT: 0.4, BETTER_TEXT: 0.8})
    out = run(ex.explain(record.for_explainer(), validator))
    assert (out.text, out.status) == (BETTER_TEXT, "done")
    assert [r.purpose for r in sink.records] == ["explain", "explain", "revise"]
    assert [spec["function"]["name"] for spec in script.requests[0]["tools"]] == [
        "statistics", "train_windows", "quantile_windows", "run_text"]
    tool_results = [m for m in script.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_results] == ["call_0", "call_1"]
    assert '"firing_rate": 0.05' in tool_results[0]["content"]
    assert " self\t10" in tool_results[1]["content"] and "(0 tool call(s) left)" not in tool_results[1]["content"]
    revise_prompt = script.requests[2]["messages"][-1]["content"]
    assert SELF_TEXT in revise_prompt and "0.40" in revise_prompt and "missed firing" in revise_prompt
    assert validator.calls == [SELF_TEXT, BETTER_TEXT]
    assert out.details["candidates"] == [
        {"text": SELF_TEXT, "origin": "draft 1", "valid_score": 0.4},
        {"text": BETTER_TEXT, "origin": "revision 1", "valid_score": 0.8},
    ]
    assert out.details["tool_calls"] == 2 and out.details["rounds"] == 1 and out.details["chosen"] == "revision 1"
    statistics_in_draft = script.requests[0]["messages"][1]["content"]
    assert "detector: \"token\"" in statistics_in_draft  # the evidence summary comes from tools.statistics()


def test_revision_that_scores_worse_on_valid_is_not_kept():
    record = planted_record()
    ex, _, _ = explainer(Script(SELF, BETTER, "EXPLANATION: Anything at all."), AgentLimits(revise_rounds=2))
    validator = FakeJudge(record, {SELF_TEXT: 0.7, BETTER_TEXT: 0.3, "Anything at all.": None})
    out = run(ex.explain(record.for_explainer(), validator))
    assert (out.text, out.status, out.details["chosen"]) == (SELF_TEXT, "done", "draft 1")
    assert [c["valid_score"] for c in out.details["candidates"]] == [0.7, 0.3, None]


def test_second_revision_revises_the_best_so_far():
    record = planted_record()
    script = Script(SELF, "EXPLANATION: Something worse.", BETTER)
    ex, _, _ = explainer(script, AgentLimits(revise_rounds=2))
    out = run(ex.explain(record.for_explainer(), FakeJudge(record, {SELF_TEXT: 0.5, BETTER_TEXT: 0.6})))
    assert out.text == BETTER_TEXT
    assert SELF_TEXT in script.requests[2]["messages"][-1]["content"]  # not "Worse."


def test_best_of_keeps_the_best_draft():
    record = planted_record()
    ex, fake, _ = explainer(Script("EXPLANATION: Letter A.", "EXPLANATION: Letter B.", "EXPLANATION: Letter C."),
                            AgentLimits(best_of=3, revise_rounds=0, max_tool_calls=0))
    scores = {"Letter A.": 0.2, "Letter B.": 0.9, "Letter C.": 0.5}
    out = run(ex.explain(record.for_explainer(), FakeJudge(record, scores)))
    assert (out.text, out.details["chosen"], fake.totals.calls) == ("Letter B.", "draft 2", 3)


def test_tool_call_cap_ends_gave_up_with_the_best_so_far():
    record = planted_record()
    script = Script(SELF, Reply(tool_calls=[("statistics", {})]), Reply(tool_calls=[("statistics", {})]))
    ex, fake, _ = explainer(script, AgentLimits(revise_rounds=1, max_tool_calls=1))
    out = run(ex.explain(record.for_explainer(), FakeJudge(record, {SELF_TEXT: 0.5})))
    assert (out.text, out.status, out.details["stop"]) == (SELF_TEXT, "gave_up", "max_tool_calls")
    assert "max_tool_calls cap (1)" in out.reason and out.details["tool_calls"] == 1 and fake.totals.calls == 3


def test_tool_call_cap_before_any_candidate_fails_with_the_reason():
    ex, _, _ = explainer(Script(Reply(tool_calls=[("statistics", {})] * 3)), AgentLimits(max_tool_calls=2))
    out = run(ex.explain(planted_record().for_explainer(), None))
    assert (out.text, out.status) == ("", "gave_up") and "max_tool_calls cap (2)" in out.reason
    assert out.details["tool_calls"] == 0


def test_token_cap_ends_gave_up_before_the_next_call():
    record = planted_record()
    ex, fake, _ = explainer(Script(SELF), AgentLimits(revise_rounds=3, max_unit_tokens=10))
    out = run(ex.explain(record.for_explainer(), FakeJudge(record)))
    assert (out.text, out.status, out.details["stop"]) == (SELF_TEXT, "gave_up", "max_tokens")
    assert "max_unit_tokens cap (10)" in out.reason and fake.totals.calls == 1


def test_garbage_answer_is_reasked_once_then_fails():
    script = Script("I am not sure.\nMaybe def?", "still\nnothing")
    ex, fake, _ = explainer(script, NO_TOOLS)
    out = run(ex.explain(planted_record().for_explainer(), None))
    assert (out.text, out.status, out.details["stop"]) == ("", "gave_up", "unparseable")
    assert "EXPLANATION" in out.reason and fake.totals.calls == 2
    assert 'there was no line "EXPLANATION: <one sentence>"' in script.requests[1]["messages"][-1]["content"]


def test_garbage_revision_gives_up_with_the_draft():
    record = planted_record()
    ex, _, _ = explainer(Script(SELF, "no\nidea", ""), AgentLimits(revise_rounds=1))
    out = run(ex.explain(record.for_explainer(), FakeJudge(record)))
    assert (out.text, out.status, out.details["stop"]) == (SELF_TEXT, "gave_up", "unparseable")


def test_reask_that_works_is_done():
    ex, fake, _ = explainer(Script("thinking\nout loud", SELF), NO_TOOLS)
    out = run(ex.explain(planted_record().for_explainer(), None))
    assert (out.text, out.status, fake.totals.calls) == (SELF_TEXT, "done", 2)


def test_bad_tool_arguments_go_back_to_the_model_as_errors():
    record = planted_record()
    bad_calls = [("run_text", "{not json"), ("train_windows", {"offset": -1}), ("train_windows", {"n": 2}),
                 ("quantile_windows", {"lo": 0.9, "hi": 0.5}), ("run_python", {"code": "1"}),
                 ("statistics", {"x": 1}), ("run_text", {"text": 5}), ("quantile_windows", {"lo": True, "hi": 1})]
    script = Script(Reply(tool_calls=bad_calls), SELF)
    ex, _, _ = explainer(script, AgentLimits(revise_rounds=0, max_tool_calls=8))
    out = run(ex.explain(record.for_explainer(), None))
    assert out.status == "done"
    results = [m["content"] for m in script.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == len(bad_calls) and all(r.startswith("error: ") for r in results)
    assert "there is no tool 'run_python'" in results[4]


def test_window_tools_show_train_windows_on_the_draft_scale():
    tools = FakeTools(planted_record().for_explainer())
    text = run_tool(tools, "train_windows", '{"offset": 1, "n": 1}', m=5.0)
    assert "<start>\ndef\t0\n" in text and " self\t7\n" in text  # rank 3: 3.8 of 5.0
    assert run_tool(tools, "train_windows", '{"offset": 50}', m=5.0) == "no windows match"
    assert "self\t2" in run_tool(tools, "quantile_windows", '{"lo": 0.5, "hi": 0.9}', m=5.0)


def test_explainer_never_sees_valid_or_test_activations():
    record = planted_record()
    seen_by_factory: list[UnitRecord] = []

    def factory(rec: UnitRecord) -> FakeTools:
        seen_by_factory.append(rec)
        return FakeTools(rec)

    script = Script(Reply(tool_calls=[("train_windows", {"offset": 0, "n": 8}), ("statistics", {})]), SELF,
                    Reply(tool_calls=[("train_windows", {"offset": 2, "n": 8})]), BETTER)
    fake = FakeLLM(script)
    ex = LLMExplainer(fake, fake.profile, factory, AgentLimits(revise_rounds=1, max_tool_calls=4))
    out = run(ex.explain(record, FakeJudge(record)))  # even handed the FULL record
    assert out.status == "done" and fake.totals.calls == 4
    assert all(w.split == "train" for w in seen_by_factory[0].windows)
    prompts = script.prompts()
    assert not any("TESTONLY" in p or "0.77" in p for p in prompts)
    draft_prompts, revision_prompts = prompts[:2], prompts[2:]
    assert not any("VALIDONLY" in p for p in draft_prompts)
    # revision shows the Validator's worst valid windows (docs/methods.md §2 allows valid for revision), nothing else
    assert all("VALIDONLY" in p for p in revision_prompts)


def test_tool_less_profile_skips_the_tool_loop_but_still_revises():
    record = planted_record()
    script = Script(SELF, BETTER)
    profile = ModelProfile(model="fake-model", supports_tools=False)
    ex, fake, _ = explainer(script, AgentLimits(revise_rounds=1, max_tool_calls=4), profile=profile)
    out = run(ex.explain(record.for_explainer(), FakeJudge(record, {BETTER_TEXT: 0.9})))
    assert (out.text, fake.totals.calls) == (BETTER_TEXT, 2)
    assert all(r["tools"] is None for r in script.requests) and ex.config()["tools"] is False
    assert "tool calls for this neuron" not in script.requests[0]["messages"][0]["content"]
    assert "detector" in script.requests[0]["messages"][1]["content"]  # statistics still summarised


def test_no_validator_means_one_draft_and_no_revision():
    ex, fake, _ = explainer(Script(SELF), AgentLimits(best_of=3, revise_rounds=2, max_tool_calls=0))
    out = run(ex.explain(planted_record().for_explainer(), None))
    assert (out.status, fake.totals.calls) == ("done", 1)


def test_dead_unit_costs_no_llm_call():
    record = planted_record()
    dead = UnitRecord(record.id, record.windows, UnitStats(5000, 0, 0.0, 0.0, 0.0, 0.0, 0.0))
    ex, fake, _ = explainer(Script(), AgentLimits())
    out = run(ex.explain(dead.for_explainer(), None))
    assert (out.text, out.status, fake.totals.calls) == ("Never fires (dead on 5000 tokens).", "done", 0)


def test_llm_error_fails_the_unit_and_budget_exceeded_propagates():
    ex, _, _ = explainer(Script(HTTPFailure(400, message="bad request")), NO_TOOLS)
    out = run(ex.explain(planted_record().for_explainer(), None))
    assert (out.text, out.status) == ("", "failed") and "LLM call failed" in out.reason and "HTTP 400" in out.reason
    ex, _, _ = explainer(Script(SELF), NO_TOOLS, budget=Budget(max_calls=0))
    with pytest.raises(BudgetExceeded):
        run(ex.explain(planted_record().for_explainer(), None))


def test_checkpoint_resume_does_not_repeat_finished_calls(tmp_path):
    path = str(tmp_path / "results.db.agent.sqlite")
    record = planted_record()
    limits = AgentLimits(revise_rounds=1, max_tool_calls=0)
    first = Script(SELF, HTTPFailure(400, message="interrupted"))
    ex, _, _ = explainer(first, limits, checkpoint_path=path)
    validator = FakeJudge(record, {SELF_TEXT: 0.3, BETTER_TEXT: 0.6})
    out = run(ex.explain(record.for_explainer(), validator, thread="run1:0/5"))
    assert out.status == "failed" and out.details["resumable"] and out.details["llm_calls"] == 1
    assert len(first.requests) == 2 and validator.calls == [SELF_TEXT]

    second = Script(BETTER)
    ex, fake, _ = explainer(second, limits, checkpoint_path=path)
    out = run(ex.explain(record.for_explainer(), validator, thread="run1:0/5"))
    assert (out.text, out.status) == (BETTER_TEXT, "done")
    assert fake.totals.calls == 1 and "Revise your explanation" in second.requests[0]["messages"][-1]["content"]
    assert validator.calls == [SELF_TEXT, BETTER_TEXT]  # the draft was neither re-asked nor re-validated
    assert out.details["llm_calls"] == 2  # usage accumulates across the interruption

    with sqlite3.connect(path) as db:  # finished units leave nothing behind
        assert db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
    third = Script(SELF, BETTER)  # so a new run of the unit starts from the draft
    ex, fake, _ = explainer(third, limits, checkpoint_path=path)
    assert (run(ex.explain(record.for_explainer(), validator, thread="run1:0/5")).status == "done"
            and fake.totals.calls == 2)


def test_checkpoint_threads_are_per_run_and_unit(tmp_path):
    path = str(tmp_path / "agent.sqlite")
    record = planted_record()
    ex, _, _ = explainer(Script(HTTPFailure(400)), NO_TOOLS, checkpoint_path=path)
    assert run(ex.explain(record.for_explainer(), None, thread=f"runA:{record.id}")).status == "failed"
    script = Script(SELF)  # another run's thread does not resume runA's
    ex, fake, _ = explainer(script, NO_TOOLS, checkpoint_path=path)
    assert run(ex.explain(record.for_explainer(), None, thread=f"runB:{record.id}")).status == "done"
    assert len(script.requests) == 1


def test_concurrent_units_share_one_checkpoint_file(tmp_path):
    """Six units in flight at once, each failing at its second call: one file holds all six threads, each under its
    own id; a second pass resumes each from its draft (one call per unit, not two) and empties the file."""
    path = str(tmp_path / "agent.sqlite")
    records = [planted_record(unit) for unit in range(6)]

    def threads() -> set[str]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return {row[0] for row in db.execute("SELECT DISTINCT thread_id FROM checkpoints")}

    def all_units(respond):
        fake = FakeLLM(respond)
        ex = LLMExplainer(fake, fake.profile, FakeTools, AgentLimits(revise_rounds=1), checkpoint_path=path)

        async def go():
            return await asyncio.gather(*(ex.explain(r.for_explainer(), FakeJudge(r), thread=f"r:{r.id}")
                                          for r in records))

        return [o.status for o in run(go())], fake.totals.calls

    # the draft (a system and a user message) is answered; the revision, a longer conversation, fails for good
    assert all_units(lambda messages, tools, logprobs: SELF if len(messages) <= 2 else HTTPFailure(400)) == (
        ["failed"] * 6, 12)
    assert threads() == {f"r:{r.id}" for r in records}
    assert all_units(lambda messages, tools, logprobs: SELF) == (["done"] * 6, 6)  # the drafts are not asked again
    assert threads() == set()


def test_agent_limits_old_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="is deprecated; use"):
        limits = AgentLimits(max_rounds=3, max_tokens=500, best_of_k=2)
    assert (limits.revise_rounds, limits.max_unit_tokens, limits.best_of) == (3, 500, 2)
    assert "max_rounds" not in asdict(limits)  # the explainer's config holds the new names only
