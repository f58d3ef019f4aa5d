"""FakeOpenAIServer: the wire format, the default handler, scripted and injected faults, localhost only."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from autointerp.llm import LLMClient, ModelProfile
from autointerp.testing.server import (
    FakeOpenAIServer,
    FaultInjector,
    HTTPFailure,
    Reply,
    completion_dict,
    completion_json,
    default_handler,
    scripted,
)


def post(srv: FakeOpenAIServer, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        srv.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_listens_on_localhost_and_lists_its_model():
    with FakeOpenAIServer(model="tiny") as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(srv.base_url + "/models", timeout=5) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == ["tiny"]


def test_completion_json_has_current_logprobs_layout():
    reply = Reply(tokens=[("a", {"a": -0.1, "b": -2.0, "c": -3.0}), ("\t", {})])
    body = completion_dict(reply, {"model": "m", "messages": [], "logprobs": True, "top_logprobs": 2})
    choice = body["choices"][0]
    assert choice["message"]["content"] == "a\t" and choice["finish_reason"] == "stop"
    first = choice["logprobs"]["content"][0]
    assert first["token"] == "a" and first["bytes"] == [97]
    assert [(t["token"], t["logprob"]) for t in first["top_logprobs"]] == [("a", -0.1), ("b", -2.0)]
    assert completion_dict(reply, {"messages": []})["choices"][0]["logprobs"] is None
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_failures_carry_status_and_retry_after_and_headers_are_never_kept():
    with FakeOpenAIServer(scripted(HTTPFailure(429, retry_after_s=0.5))) as srv:
        status, headers, body = post(srv, {"model": "m", "messages": []}, {"Authorization": "Bearer sk-secret-hdr"})
        assert (status, headers["Retry-After"], body["error"]["code"]) == (429, "0.5", "rate_limit_exceeded")
        status, _, body = post(srv, {"model": "m", "messages": []}, {"Authorization": "Bearer sk-secret-hdr"})
        assert status == 200 and "sk-secret-hdr" not in json.dumps(body)
        assert "sk-secret-hdr" not in repr(srv.__dict__)


def test_a_broken_handler_answers_500_naming_the_error():
    def broken(request):
        raise RuntimeError("handler bug")

    with FakeOpenAIServer(broken) as srv:
        status, _, body = post(srv, {"model": "m", "messages": []})
    assert status == 500 and "handler bug" in body["error"]["message"]


def test_default_handler_simulates_and_explains():
    simulate = {"role": "user", "content": "Explanation: the token 'def'\n<start>\ndef\t\n f\t\n<end>\n"}
    text = "".join(token for token, _ in default_handler({"messages": [simulate]}).tokens)
    assert text == "<start>\ndef\t10\n f\t0\n<end>\n"
    explain = {"role": "user", "content": "<start>\nimport\t0\n numpy\t10\n<end>\n"}
    assert default_handler({"messages": [explain]}).text == 'Fires on the token "numpy".'


def test_fault_injector_is_seeded_and_the_client_rides_through_it():
    def draws(seed: int) -> list[str]:
        injector = FaultInjector(lambda request: "ok", rate_429=0.3, rate_500=0.2, rate_garbage=0.1, seed=seed)
        return [repr(injector({})) for _ in range(50)]

    assert draws(1) == draws(1) != draws(2)

    injector = FaultInjector(rate_429=0.3, rate_500=0.2, rate_garbage=0.1, retry_after_s=0.01, seed=0)

    async def calls(profile: ModelProfile) -> list[str]:
        async with LLMClient(profile, "flaky", backoff_base_s=0.001) as client:
            results = await asyncio.gather(
                *(client.chat([{"role": "user", "content": f"x\t{i}"}], purpose="t") for i in range(20))
            )
        return [r.text for r in results]

    with FakeOpenAIServer(injector) as srv:
        texts = asyncio.run(calls(ModelProfile(model="m", base_url=srv.base_url, max_retries=20)))
        assert len(srv.requests) == 20 + sum(injector.injected.values())
    assert texts == ['Fires on the token "x".'] * 20
    assert all(injector.injected.values())


def test_completion_json_is_the_completion_dict_encoded():
    request = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2}
    tokens = [("7", {"7": -0.1, "3": -2.4, "1": -3.0}), ("\n", {}), ("7", {"7": -0.1, "3": -2.4, "1": -3.0})]
    for reply, req in ((Reply(tokens=tokens), request), (Reply(text="plain"), request),
                       (Reply(tokens=tokens), {"messages": []})):
        expected = completion_dict(reply, req)
        got = json.loads(completion_json(reply, req))
        assert {**got, "created": 0} == {**expected, "created": 0}
