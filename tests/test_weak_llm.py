"""A weak model that misbehaves (issue 16), against the scripted local server: a reply that goes off format is
stopped after a few tokens, no request is repeated that would repeat its output, no refused request is retried,
no revision is asked for without windows, and an explanation that is not one sentence about the unit is rejected."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from autointerp.llm.client import LLMClient
from autointerp.llm.profiles import ModelProfile
from autointerp.testing.server import FakeOpenAIServer, Reply, Traits, scripted
from autointerp.scoring.llm_simulator import LLMSimulator, ReplyWatch, reply_budget
from autointerp.llm.tokens import TokenCounter

DATA = json.loads((Path(__file__).parent / "data" / "weak_model_replies.json").read_text())
WINDOWS = [["def", " area", "(", "self", "):"], ["x", " =", " 1"]]
# what a weak model writes instead of copying the lines: prose, over and over, until max_tokens
RAMBLE = "The neuron is activated by the token self because it is a Python keyword.\n" * 300


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_an_off_format_simulator_reply_is_stopped_after_a_few_tokens():
    with FakeOpenAIServer(scripted(RAMBLE), token_latency_s=0.001) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=False, max_retries=3)

        async def go():
            async with LLMClient(profile, "local") as client:
                return await LLMSimulator(client, profile, windows_per_request=2).simulate("self", WINDOWS)

        result = asyncio.run(go())
        time.sleep(0.3)
        (written,) = srv.streamed_tokens
        assert len(srv.requests) == 1  # a bad reply is an answer, not a failure: no retry
    assert written < 200, written  # of ~4,500 tokens the ramble would have taken
    assert result.predictions == [None, None] and result.details["stopped_replies"] == 1
    assert all("stopped early: off format before window 1's <start> line" in e for e in result.errors)
    assert result.details["tokens_out"] < 100


def test_max_tokens_is_the_replys_real_need():
    """At least a token, a tab, a number in two digits and a newline per line (a tokenizer that splits every one,
    as SmolLM2's writes "10" as "1" "0"), and the <start>/<end> lines; below the old fixed allowance of 8 tokens per
    line and 8 per window (on ten windows of 64 tokens, where the per-line allowance, not the preamble, decides)."""
    lines = sum(len(w) for w in WINDOWS)
    assert 5 * lines + 4 * len(WINDOWS) <= reply_budget(WINDOWS, TokenCounter())
    windows = [["x"] * 64] * 10
    assert 5 * 640 + 40 <= reply_budget(windows, TokenCounter()) < 8 * 640 + 8 * 10


def test_the_reply_watch_passes_a_good_reply_and_stops_at_its_end():
    good = "Here you go:\n<start>\ndef\t0\n area\t0\n(\t0\nself\t9\n):\t0\n<end>\n<start>\nx\t0\n =\t0\n 1\t0\n<end>\n"
    watch = ReplyWatch([5, 3])
    lines = good.splitlines(keepends=True)
    assert [watch("".join(lines[: i + 1])) for i in range(len(lines) - 1)] == [None] * (len(lines) - 1)
    assert watch(good) == "every window answered" and watch.complete
    short = ReplyWatch([5, 3])
    assert "ended after 2 token lines of 5" in short("<start>\ndef\t0\n area\t0\n<end>\n")


def test_the_real_replies_are_there():
    """The parametrized tests below run once per recorded reply: with none of a kind they would skip, not fail."""
    purposes = [r["purpose"] for r in DATA["replies"]]
    assert purposes.count("simulate") >= 1 and purposes.count("explain") >= 1


@pytest.mark.parametrize("reply", [r for r in DATA["replies"] if r["purpose"] == "simulate"],
                         ids=lambda r: r["text"][:30])
def test_real_weak_model_simulator_replies_are_stopped_early(reply):
    """What SmolLM2-135M-Instruct answered to the simulator's prompt (benchmarks/collect_weak_replies.py)."""
    watch = ReplyWatch([9, 9])
    text, stopped_at = reply["text"], None
    for end in range(len(text)):
        if text[end] == "\n" and watch(text[: end + 1]):
            stopped_at = end + 1
            break
    assert stopped_at is not None and stopped_at < len(text), "the watch let an off-format reply run to its end"


def test_no_revision_without_windows_and_the_outcomes_stay_apart():
    """The simulator goes off format, so validation simulates no window: the agent does not ask for a revision
    (which could show none), the unit ends gave_up with that reason, and the failed test simulation is the scoring's
    outcome, kept apart from the explainer's. Every call is on the unit and counted on its explanation."""
    from autointerp.agent.graph import AgentLimits
    from autointerp.agent.llm_explainer import LLMExplainer
    from autointerp.pipeline.components import make_scoring
    from autointerp.pipeline.stages import Stages
    from fakes import SELF, SELF_TEXT, Sink, planted_record

    def handler(request):
        prompt = request["messages"][-1]["content"]
        return RAMBLE[:2000] if "Predict the activation" in prompt else Reply(text=f"Because.\n{SELF}")

    sink = Sink()
    with FakeOpenAIServer(handler) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=False, max_retries=0)

        async def go():
            async with LLMClient(profile, "local", sink) as client:
                explainer = LLMExplainer(client, profile, limits=AgentLimits(revise_rounds=2, max_tool_calls=0))
                stages = Stages(explainer, make_scoring(None, LLMSimulator(client, profile, 10)))
                return await stages.unit(planted_record())

        scored = asyncio.run(go())
        prompts = [r["messages"][-1]["content"] for r in srv.requests]
    assert [r.purpose for r in sink.records] == ["explain", "simulate", "simulate"]  # draft, validation, test
    assert not any("Revise your explanation" in p for p in prompts)
    e = scored.explanation
    assert (e.text, e.status, e.details["stop"]) == (SELF_TEXT, "gave_up", "no_evidence")
    assert "validation could not simulate any valid window" in e.reason and "off format" in e.reason
    assert scored.scoring == "failed" and scored.status == "failed"
    assert scored.scoring_reason.startswith("scoring failed: no test window could be simulated")
    assert scored.diagnostics["stopped_replies"] == 1
    assert scored.llm_calls == 3 == len(sink.records) and all(r.unit == "1/5" for r in sink.records)
    assert scored.tokens_in == sum(r.tokens_in for r in sink.records) > 0


@pytest.mark.parametrize("reply", [r for r in DATA["replies"] if r["purpose"] == "explain"],
                         ids=lambda r: r["text"][:30])
def test_real_weak_model_explanations_are_rejected(reply):
    """What small real models answered to the explainer's prompt: none is one sentence about the unit."""
    from autointerp.agent.prompting import read_explanation

    sentence, problem = read_explanation(reply["text"])
    assert sentence is None and problem, reply["text"]


@pytest.mark.parametrize("sentence, problem", [
    ("The code snippet demonstrates a Python function that uses the `functools.reduce` function to combine values.",
     "describes the text shown"),
    ("This function takes a list and returns its sum.", "describes the text shown"),
    ("The neuron fires on self. It also fires on dots.", "more than one sentence"),
    ("- self\n- dots", "list"),
    ("self, dot, def, class", "list"),
    ("Sure, the token self.", "chat filler"),
    ("Is it the token self?", "question"),
    ("self", "word"),
    ("the " * 45, "too long"),
])
def test_the_judge_rejects_what_is_not_one_sentence_about_the_unit(sentence, problem):
    from autointerp.agent.prompting import explanation_problem

    assert problem in (explanation_problem(sentence) or "")


@pytest.mark.parametrize("sentence", [
    'The token " self" when it reaches an attribute.',
    'The name of a Python function right after "def".',
    'Closing brackets ")" and "]" at the end of a call, e.g. after arguments.',
    "commas, periods and semicolons",
    'Fires on the token "." in "self.x".',
    "the keyword def",
])
def test_the_judge_accepts_explanations(sentence):
    from autointerp.agent.prompting import explanation_problem

    assert explanation_problem(sentence) is None


def test_an_off_topic_explanation_is_re_asked_with_the_reason_then_rejected():
    from autointerp.agent.graph import AgentLimits
    from autointerp.agent.llm_explainer import LLMExplainer
    from fakes import planted_record

    off_topic = "EXPLANATION: " + DATA["replies"][0]["text"]  # the code snippet demonstrates ...
    with FakeOpenAIServer(lambda request: off_topic) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, max_retries=0)

        async def go():
            async with LLMClient(profile, "local") as client:
                explainer = LLMExplainer(client, profile, limits=AgentLimits(revise_rounds=0, max_tool_calls=0))
                return await explainer.explain(planted_record().for_explainer())

        out = asyncio.run(go())
        reask = srv.requests[1]["messages"][-1]["content"]
    assert len(srv.requests) == 2 and "it describes the text shown, not the neuron" in reask
    assert (out.text, out.status, out.details["stop"]) == ("", "gave_up", "unparseable")
    assert "describes the text shown" in out.reason


def test_best_of_at_temperature_0_is_refused_before_any_call(cli, isolated):
    (isolated / "autointerp.toml").write_text('[models.local]\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n')
    code, _, err = cli("run", "--layer", "1", "--explainer", "local", "--best-of", "3")
    assert code == 2 and "would write the same draft 3 times" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("dialect", ["json_schema", "json_object"])
def test_a_constrained_answer_is_asked_for_in_the_profile_s_dialect_and_read(dialect):
    """A model that does not keep the EXPLANATION line (SmolLM2-135M rambles about neuroscience): with
    ``response_format`` the server is asked to constrain the answer to the JSON schema, and its ``explanation`` is
    the candidate. Without it, the same server's rambling gives no candidate."""
    from autointerp.agent.graph import AgentLimits
    from autointerp.agent.llm_explainer import LLMExplainer
    from autointerp.agent.prompting import ANSWER_SCHEMA, read_explanation
    from fakes import planted_record

    ramble = "The neuron is a highly dynamic entity.\n\nIt responds to stimuli in many ways.\n" * 3
    sentence = 'The token "def" at the start of a function definition.'

    def handler(request):  # the text a constrained server turns into the schema's fields
        return f"{ramble}EXPLANATION: {sentence}" if request.get("response_format") else ramble

    async def explain(profile):
        async with LLMClient(profile, "local") as client:
            explainer = LLMExplainer(client, profile, limits=AgentLimits(revise_rounds=0, max_tool_calls=0))
            return await explainer.explain(planted_record().for_explainer())

    with FakeOpenAIServer(handler, traits=Traits(response_formats=(dialect,))) as srv:
        out = asyncio.run(explain(ModelProfile(model="m", base_url=srv.base_url, response_format=dialect)))
        sent = srv.requests[0]["response_format"]
        plain = asyncio.run(explain(ModelProfile(model="m", base_url=srv.base_url)))
    schema = sent["schema"] if dialect == "json_object" else sent["json_schema"]["schema"]
    assert sent["type"] == dialect and schema == ANSWER_SCHEMA
    assert (out.text, out.status) == (sentence, "done")
    assert (plain.text, plain.status, plain.details["stop"]) == ("", "gave_up", "unparseable")
    assert read_explanation(json.dumps({"reasoning": "x", "explanation": f"`{sentence}`"})) == (sentence, None)
    assert read_explanation('{"reasoning": "x", "explanation": " "}') == (None, 'the JSON answer\'s "explanation" '
                                                                            'holds no sentence')
    for cut in ('{"reasoning": "the neuron is a highly dynamic', '{ "reasoning": "it fires on def" ,"explanation" : "x'):
        assert read_explanation(cut)[0] is None and "cut off" in read_explanation(cut)[1]
