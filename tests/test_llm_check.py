"""``models --check``: every profile probed for chat, tools, logprobs, echo, prompt escaping, latency, parallelism."""

from __future__ import annotations

import asyncio
import json

from autointerp.llm import LLMClient, ModelProfile
from autointerp.llm.check import check_profile, echo_shift, probing, summary
from autointerp.testing.echo_model import EchoModel
from autointerp.testing.server import FakeOpenAIServer, HTTPFailure, Reply, Traits, default_handler


def calls_tools(request):
    if request.get("tools"):
        return Reply(tool_calls=[("record_number", {"n": 7})])
    return default_handler(request)


def check(srv: FakeOpenAIServer, **fields) -> dict:
    async def go():
        profile = probing(ModelProfile(model="m", base_url=srv.base_url, **fields))
        async with LLMClient(profile, "p") as client:
            return await check_profile(client)
    return asyncio.run(go())


def test_a_full_server_reports_every_capability():
    with FakeOpenAIServer(calls_tools, traits=Traits(parallel=3),
                          completion_handler=EchoModel(split_digits=True, shift=1)) as srv:
        result = check(srv, supports_logprobs=False, supports_tools=False)  # checked whatever the profile claims
    assert result["reachable"] and result["chat"] and result["tools"] and result["logprobs"] and result["echo"]
    assert result["echo_shift"] == 1 and result["escapes_html"] is False and result["parallel"] == 3
    assert result["simulator_methods"] == ["all_at_once", "generate"] and result["errors"] == {}
    assert result["latency_s"] >= 0
    assert "echo=True" in summary(result) and "parallel 3" in summary(result)


def test_escaping_chat_template_no_tools_no_completions():
    missing = lambda request: HTTPFailure(404, message="not found")  # noqa: E731
    with FakeOpenAIServer(traits=Traits(escape_html=True), completion_handler=missing) as srv:
        result = check(srv)
    assert result["reachable"] and result["chat"] and result["escapes_html"] is True
    assert result["tools"] is False and result["echo"] is None and "echo" in result["errors"]
    assert "no /v1/completions endpoint" in result["errors"]["echo"]
    assert result["simulator_methods"] == ["generate"] and result["parallel"] == 1


def test_unreachable_profile_is_reported_not_raised():
    async def go():
        profile = probing(ModelProfile(model="m", base_url="http://127.0.0.1:9/v1", timeout_s=1))
        async with LLMClient(profile, "gone") as client:
            return await check_profile(client)
    result = asyncio.run(go())
    assert result["reachable"] is False and summary(result).startswith("unreachable: ")


def test_echo_shift_reads_which_alignment_fits_the_echoed_tokens():
    tokens = ["1", ",", " 2", ",", " 3"]
    aligned = [None, {",": -0.1}, {" 2": -0.2}, {",": -0.1}, {" 3": -0.2}]
    shifted = [None, {" 2": -0.2, ",": -5.0}, {",": -0.1, " 2": -6.0}, {" 3": -0.2, ",": -4.0}, {"\n": -1.0}]
    assert echo_shift(tokens, aligned) == 0 and echo_shift(tokens, shifted) == 1


def test_models_check_command_checks_every_profile(cli, isolated):
    with FakeOpenAIServer(calls_tools) as srv:
        (isolated / "autointerp.toml").write_text(
            f'[models.smol]\nmodel = "m"\nbase_url = "{srv.base_url}"\nsupports_logprobs = false\n'
            f'simulator_method = "all_at_once"\n'
        )
        code, out, err = cli("models", "--check", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["simulator_method"] == "all_at_once" and row["check"]["echo"] is True
    assert row["check"]["logprobs"] is True and row["check"]["tools"] is True


def test_response_formats_are_reported_by_dialect():
    """A server that constrains answers in llama-cpp-python's dialect only: the check lists that one; a server that
    ignores the field lists none."""
    with FakeOpenAIServer(traits=Traits(response_formats=("json_object",))) as srv:
        result = check(srv)
    assert result["response_formats"] == ["json_object"] and "response_format: json_object" in summary(result)
    with FakeOpenAIServer() as srv:
        assert check(srv)["response_formats"] == []
