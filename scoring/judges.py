"""The judges of the classification scorers (``autointerp.scoring.classify``): the non-LLM floor and an LLM.

    QuotedJudge()                                            # offline: quoted tokens of the explanation
    LLMJudge(client, profile, examples_per_request=8)        # any model profile, through the LLM client

**QuotedJudge** (the offline floor, docs/methods.md §2b). The explanation's *quoted tokens* are the strings between
double quotes (``"..."``, read as JSON strings, as the baseline explainer writes them: ``"\\n"`` is a newline) or
typographic quotes (``\u201c...\u201d``, ``\u2018...\u2019``); plain apostrophes are not quotes. A token *matches* a
quoted token when they are equal after removing leading spaces from both (``" class"`` matches ``"class"``); a quoted
token made only of whitespace matches a token exactly. Detection: an example is 1 when any of its tokens matches a quoted
token. Fuzzing: 1 when at least half of its marked tokens match one. An explanation that quotes nothing answers 0
everywhere (balanced accuracy 0.5: chance).

**LLMJudge**. The examples go ``examples_per_request`` at a time (in the shuffled order the scorer gives), all the
requests at once; each request shows the explanation and the numbered examples (``prompts/classify_system.j2``,
``prompts/classify_user.j2``; the text of each example on one line, control characters escaped as in the simulator
prompt, fuzzing's marks as ``<<token>>``) and asks for a JSON list of 0/1, one per example. The reply is parsed
strictly: the whole reply (surrounding whitespace aside) must be a JSON list of exactly as many integers 0 or 1 as
the request has examples; anything else is an error recorded on every example of that request, never a guess. With
``profile.supports_logprobs`` the request asks for top logprobs and each answer's probability of "1" is
``p(1) / (p(0) + p(1))`` at the generated token that holds that answer (the i-th token that reads 0 or 1); None when
the endpoint gives no logprobs there. With ``judge_grammar`` in the profile, llama.cpp is sent a grammar that holds
the reply to such a list (``autointerp.scoring.grammar.answers_grammar``). The calls are counted by the enclosing
``autointerp.llm.scope.call_scope``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from autointerp.llm.client import ChatModel, ChatResult, LLMError, MalformedLogprobs
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.prompts.render import render, show_token, templates_sha256
from autointerp.scoring.classify import Example, Task
from autointerp.scoring.grammar import answers_grammar

SYSTEM_TEMPLATE = "classify_system.j2"
USER_TEMPLATE = "classify_user.j2"
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TYPOGRAPHIC = re.compile(r"\u201c([^\u201d]*)\u201d|\u2018([^\u2019]*)\u2019")
Answer = tuple[int | None, float | None, str | None]


def quoted_tokens(explanation: str) -> set[str]:
    """The explanation's quoted tokens, normalised (leading spaces removed unless only whitespace is left)."""
    found = []
    for m in _DOUBLE.finditer(explanation):
        try:
            found.append(json.loads(f'"{m.group(1)}"'))
        except json.JSONDecodeError:
            found.append(m.group(1))
    found += [a or b for a, b in _TYPOGRAPHIC.findall(explanation)]
    return {normalise(q) for q in found if q}


def normalise(token: str) -> str:
    """A token with its leading spaces removed; a token of whitespace only is kept as it is."""
    return token.lstrip(" ") or token


class QuotedJudge:
    """The non-LLM judge: quoted tokens of the explanation (see the module docstring)."""

    name = "quoted"
    uses_llm = False
    profile = None  # no LLM: nothing to pay for

    def config(self) -> dict[str, Any]:
        return {"judge": "quoted"}

    def estimate(self, task: Task, explanation: str, examples: list[Example], counter: TokenCounter) -> None:
        return None

    def decide(self, task: Task, explanation: str, example: Example, quoted: set[str] | None = None) -> int:
        """1 when ``example`` holds (detection) or has marked (fuzzing) the explanation's quoted tokens (``quoted``:
        ``quoted_tokens(explanation)`` when the caller has them)."""
        quoted = quoted_tokens(explanation) if quoted is None else quoted
        if task == "detection":
            return int(any(normalise(t) in quoted for t in example.tokens))
        marked = [normalise(example.tokens[i]) in quoted for i in example.marked]
        return int(bool(marked) and 2 * sum(marked) >= len(marked))

    async def answer(self, task: Task, explanation: str, examples: list[Example]
                     ) -> tuple[list[Answer], dict[str, Any]]:
        quoted = quoted_tokens(explanation)
        return [(self.decide(task, explanation, ex, quoted), None, None) for ex in examples], {}


def example_text(example: Example) -> str:
    """One example on one line: its tokens joined, control characters escaped, marked tokens as ``<<token>>``."""
    marked = set(example.marked)
    return "".join(f"<<{show_token(t)}>>" if i in marked else show_token(t) for i, t in enumerate(example.tokens))


def classify_messages(task: Task, explanation: str, examples: list[Example]) -> list[dict[str, str]]:
    """The chat messages of one request (pinned by tests/test_prompts_golden.py)."""
    return [
        {"role": "system", "content": render(SYSTEM_TEMPLATE, task=task)},
        {"role": "user", "content": render(USER_TEMPLATE, task=task, explanation=explanation,
                                           examples=[example_text(ex) for ex in examples])},
    ]


def parse_answers(text: str, size: int) -> list[int] | str:
    """The reply's answers, or the reason it is not a JSON list of exactly ``size`` integers 0 or 1."""
    try:
        value = json.loads(text.strip())
    except json.JSONDecodeError:
        return f"the reply is not a JSON list: {text.strip()[:80]!r}"
    if not isinstance(value, list) or not all(type(v) is int and v in (0, 1) for v in value):
        return f"the reply is not a list of 0s and 1s: {text.strip()[:80]!r}"
    if len(value) != size:
        return f"the reply has {len(value)} answers for {size} examples"
    return value


def answer_probabilities(result: ChatResult, size: int) -> list[float | None]:
    """p(1) / (p(0) + p(1)) at the generated tokens that read 0 or 1, in order (None where there is none)."""
    out: list[float | None] = []
    for token in result.logprobs or []:
        if token.token.strip(" [],") not in ("0", "1"):
            continue
        p = {"0": 0.0, "1": 0.0}
        for alt, logprob in token.top_logprobs.items():
            key = alt.strip(" [],")
            if key in p:
                p[key] += math.exp(logprob)
        out.append(p["1"] / (p["0"] + p["1"]) if p["0"] + p["1"] > 0 else None)
    return out if len(out) == size else [None] * size


class LLMJudge:
    """A judge backed by any ``ChatModel`` (see the module docstring)."""

    uses_llm = True

    def __init__(self, client: ChatModel, profile: ModelProfile, examples_per_request: int = 8,
                 top_logprobs: int = 5):
        assert examples_per_request >= 1 and 1 <= top_logprobs <= 20
        self.client, self.profile, self.name = client, profile, client.name
        self.examples_per_request, self.top_logprobs = examples_per_request, top_logprobs
        self.method = "logprobs" if profile.supports_logprobs else "parse"

    def config(self) -> dict[str, Any]:
        """What determines the answers: the profile's identity, the method, batching and the prompt files."""
        return {"judge": "llm", "name": self.name, "profile": self.profile.identity(), "method": self.method,
                "examples_per_request": self.examples_per_request,
                "top_logprobs": self.top_logprobs if self.method == "logprobs" else None,
                "prompt_sha256": templates_sha256(SYSTEM_TEMPLATE, USER_TEMPLATE)}

    def estimate(self, task: Task, explanation: str, examples: list[Example], counter: TokenCounter) -> Estimate:
        """Calls and tokens that judging ``examples`` takes: the prompts as rendered, and replies that are a JSON
        list of one answer per example."""
        groups = [examples[i : i + self.examples_per_request] for i in range(0, len(examples),
                                                                              self.examples_per_request)]
        tokens_in = sum(counter.count_messages(classify_messages(task, explanation, g)) for g in groups)
        tokens_out = sum(counter.count(json.dumps([1] * len(g))) for g in groups)
        return Estimate(len(groups), tokens_in, tokens_out, counter.method)

    async def answer(self, task: Task, explanation: str, examples: list[Example]
                     ) -> tuple[list[Answer], dict[str, Any]]:
        step = self.examples_per_request
        groups = [examples[i : i + step] for i in range(0, len(examples), step)]
        outcomes = await asyncio.gather(*(self._request(task, explanation, g) for g in groups),
                                        return_exceptions=True)
        for outcome in outcomes:  # BudgetExceeded, a bug: raised after every request has finished
            if isinstance(outcome, BaseException):
                raise outcome
        answers: list[Answer] = []
        details: dict[str, Any] = dict.fromkeys(("failed_requests", "unparsed_replies", "tokens_in", "tokens_out",
                                                 "cost_usd"), 0)
        for group_answers, group_details in outcomes:  # type: ignore[misc]
            answers += group_answers
            for key, value in group_details.items():
                details[key] += value
        details.update(requests=len(groups), method=self.method)
        return answers, details

    async def _request(self, task: Task, explanation: str, examples: list[Example]
                       ) -> tuple[list[Answer], dict[str, Any]]:
        logprobs = self.method == "logprobs"
        extra: dict[str, Any] = {}
        if self.profile.judge_grammar:  # llama.cpp: the reply held to the list (autointerp.scoring.grammar)
            extra["extra_body"] = {"grammar": answers_grammar(len(examples))}
        try:
            result = await self.client.chat(
                classify_messages(task, explanation, examples), purpose=task, logprobs=logprobs,
                top_logprobs=self.top_logprobs if logprobs else None, max_tokens=3 * len(examples) + 16, **extra)
        except LLMError as exc:
            return [(None, None, f"request failed: {exc}")] * len(examples), {"failed_requests": 1}
        details = {"tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "cost_usd": result.cost_usd}
        parsed = parse_answers(result.text, len(examples))
        if isinstance(parsed, str):
            cut = " (the reply was cut off at max_tokens)" if result.finish_reason == "length" else ""
            return [(None, None, parsed + cut)] * len(examples), {**details, "unparsed_replies": 1}
        try:
            probs = answer_probabilities(result, len(examples)) if logprobs else [None] * len(examples)
        except MalformedLogprobs:  # the answers stand; only AUROC is lost
            probs = [None] * len(examples)
        return [(a, p, None) for a, p in zip(parsed, probs)], details
