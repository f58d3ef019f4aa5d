"""Model profiles: which model, where, at what price and with what limits; never the key itself.

    >>> from autointerp.llm.profiles import ModelProfile, resolve_profile
    >>> profiles = {"mini": ModelProfile(model="gpt-4o-mini", price_in_per_mtok=0.15, price_out_per_mtok=0.6)}
    >>> resolve_profile("mini", profiles).model
    'gpt-4o-mini'
    >>> resolve_profile("openai:gpt-4o", profiles).model      # shorthand: OPENAI_BASE_URL / OPENAI_API_KEY
    'gpt-4o'

A profile names the environment variable that holds the API key (``api_key_env``); ``api_key()`` reads it at call
time, so ``model_dump()`` of a profile (saved with every run) never contains a key.

Timeouts scale with the work a request asks for (``request_timeout_s``): ``timeout_s`` plus the prompt tokens at
``prompt_tokens_per_s`` plus the generated tokens at ``tokens_per_s`` plus, with ``echo``, the echoed prompt tokens
with their logprobs at ``echoed_tokens_per_s``. The throughputs are floors: a local CPU server (llama.cpp with a 135M model on two
cores) stays above them; a faster endpoint only ever answers sooner.

``concurrency``: requests in flight at once. ``None`` (default) means 8 for a remote endpoint and, for one on this
machine, what ``autointerp.llm.parallelism.detect_parallelism`` finds (llama.cpp's ``/props`` slots, vLLM: 8, else 1:
llama-cpp-python's server answers one request at a time).

**What a run's identity holds** (``identity()``, part of the run key that resume matches on): the fields that decide
what the model answers: ``kind``, ``model``, ``base_url`` (the same model name behind another URL may be another
model or another quantization), ``temperature``, ``max_tokens`` (a reply cut at the cap is another reply),
``supports_logprobs``, ``supports_tools``, ``simulator_method``, ``simulator_format``, ``simulator_grammar``,
``response_format``, and ``judge_grammar`` when set. The ``OPERATIONAL`` fields only say how and when requests are
sent (timeouts and throughputs, ``concurrency``, retries, prices, ``api_key_env``, ``stream``, ``stream_trust``):
changing one resumes the same run. The whole profile is still saved with the run's config snapshot. A field added
later is part of the identity unless it is listed in ``OPERATIONAL``; listed in ``ADDED_LATER`` with its default, it
joins only when set, so earlier runs keep their keys.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autointerp.errors import UsageError
from autointerp.llm.secrets import register_secret, url_credentials

DEFAULT_CONCURRENCY = 8  # requests in flight for a remote endpoint whose profile sets no ``concurrency``
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_PLACEHOLDER_KEY = "not-needed"  # sent to local servers that need no key (the SDK insists on some key)
SHORTHAND_PREFIX = "openai:"
# Fields that change how and when a request is sent, or what it costs, but not what the model answers: left out of the
# profile's identity (the run key), so that changing one resumes the interrupted run.
OPERATIONAL = frozenset({"api_key_env", "concurrency", "timeout_s", "prompt_tokens_per_s", "tokens_per_s",
                         "echoed_tokens_per_s", "max_retries", "retry_timeouts", "price_in_per_mtok",
                         "price_out_per_mtok", "stream", "stream_trust"})
# fields added after runs were keyed, with their defaults: part of the identity only when set, so that the key of a
# run that never set one stays what it was
ADDED_LATER: dict[str, Any] = {"judge_grammar": False}
CREDENTIALS_IN_URL = ("{where} holds a user name or password (scheme://user:KEY@host); remove them from the URL and "
                      "put the key in the environment variable named by the profile's api_key_env (default "
                      "OPENAI_API_KEY)")


class ModelProfile(BaseModel):
    """One chat model endpoint with its limits and prices. Saved with every run; holds no secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["openai"] = Field("openai", description="API family; only the OpenAI chat-completions API.")
    model: str = Field("gpt-4o-mini", description="Model name sent to the API.")
    base_url: str | None = Field(
        None, description="API base URL, e.g. http://127.0.0.1:8000/v1; None: OPENAI_BASE_URL or the SDK default."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the environment variable holding the API key.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(512, ge=1, description="Default cap on generated tokens per call.")
    concurrency: int | None = Field(
        None, ge=1, description="Most requests in flight at once; None: 8 remote, detected for a local server."
    )
    timeout_s: float = Field(60.0, gt=0.0, description="Per-request timeout, seconds, before the work it asks for.")
    prompt_tokens_per_s: float = Field(
        50.0, gt=0.0, description="Slowest prompt reading expected; adds tokens_in / this to a request's timeout."
    )
    tokens_per_s: float = Field(
        4.0, gt=0.0, description="Slowest generation expected; adds tokens out / this to a request's timeout."
    )
    echoed_tokens_per_s: float = Field(
        0.5, gt=0.0, description="Slowest echo with logprobs expected (llama-cpp-python builds each echoed token's "
        "alternatives in Python, far slower than a plain read: BENCHMARKS.md; slower still when other jobs hold the "
        "cores); adds echoed tokens / this to the timeout."
    )
    max_retries: int = Field(6, ge=0, description="Retries after the first try (429, 5xx, connection errors).")
    retry_timeouts: bool = Field(
        False, description="Retry a request that timed out (only at temperature > 0: at 0 a retry repeats the same "
        "output). Off by default: the server may still be generating the abandoned request.")
    stream: bool = Field(
        True, description="Stream the replies a caller may stop early (the simulator's), closing one as soon as it "
        "goes off format. false: plain requests, cut where a stream would have stopped (an endpoint seen answering "
        "a streamed request with one JSON body is treated so for the rest of the process, and told once).")
    stream_trust: int = Field(
        8, ge=0, description="Replies in a row that kept the format (each read whole by its caller's check) after "
        "which the rest are asked for as plain requests, cut where a stream would have stopped: a streamed reply "
        "with logprobs costs the client about 1.6 times the CPU of a plain one (BENCHMARKS.md). Such a request keeps a "
        "stream's time allowance (timeout_s to start, timeout_s to generate). The first reply that goes off format "
        "turns streaming back on. 0: always stream.")
    price_in_per_mtok: float = Field(0.0, ge=0.0, description="USD per million prompt tokens.")
    price_out_per_mtok: float = Field(0.0, ge=0.0, description="USD per million generated tokens.")
    supports_logprobs: bool = Field(True, description="The endpoint returns logprobs with top_logprobs.")
    supports_tools: bool = Field(True, description="The endpoint accepts tools and returns tool_calls.")
    simulator_method: Literal["generate", "all_at_once"] = Field(
        "generate",
        description="LLM simulator: 'generate' (the model writes a number after every token line; chat) or "
        "'all_at_once' (one /v1/completions request with echo and logprobs reads every position of the prompt, "
        "nothing generated; needs an endpoint that serves echo, e.g. llama.cpp or vLLM).",
    )
    simulator_format: Literal["full", "compact"] = Field(
        "full",
        description="Reply of the 'generate' simulator: 'full' (every token line copied back with its number) or "
        "'compact' (one line per window, one character per token: 0-9, X for 10; a quarter of the output "
        "tokens, same expected values: docs/scoring.md).",
    )

    simulator_grammar: bool = Field(
        False,
        description="Send the 'generate' simulator's reply format as a llama.cpp grammar (GBNF: one line per window, "
        "one number per token), so that a small model cannot break it. llama.cpp's servers only (llama-server, "
        "llama-cpp-python); other endpoints reject or ignore it.",
    )

    judge_grammar: bool = Field(
        False,
        description="Send the detection and fuzzing judge's reply format as a llama.cpp grammar (GBNF: a JSON list "
        "of exactly one 0 or 1 per example), so that a small model's answers always parse. llama.cpp's servers only.",
    )

    response_format: Literal["none", "json_schema", "json_object"] = Field(
        "none",
        description="Explainer answers constrained to JSON {reasoning, explanation} by the server: 'json_schema' "
        "(OpenAI, vLLM, llama.cpp's llama-server), 'json_object' (llama-cpp-python's server, which takes the "
        "schema beside the type); 'none': free text ending with an EXPLANATION line. For small models that do not "
        "keep the format; models --check says which the endpoint honours.",
    )

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url_credentials(url):  # the message never repeats the URL: it holds the secret
            raise ValueError(CREDENTIALS_IN_URL.format(where="base_url"))
        return url

    def identity(self) -> dict[str, Any]:
        """The fields that decide what the model answers (all but ``OPERATIONAL``; an ``ADDED_LATER`` field only when
        it differs from its default): what a run's key holds."""
        out = self.model_dump(exclude=OPERATIONAL)
        for name, default in ADDED_LATER.items():
            if out[name] == default:
                del out[name]
        return out

    def resolved_base_url(self) -> str | None:
        """The base URL in force: the profile's, else OPENAI_BASE_URL, else None (the SDK's default)."""
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        if url_credentials(url):
            raise UsageError(CREDENTIALS_IN_URL.format(where="OPENAI_BASE_URL"))
        return url

    def is_local(self) -> bool:
        """True when the endpoint is on this machine (127.0.0.1 / localhost), where no key is needed."""
        url = self.resolved_base_url()
        return url is not None and urlparse(url).hostname in LOCAL_HOSTS

    def api_key(self) -> str:
        """The key from ``api_key_env``, read now; a placeholder for local endpoints; UsageError when missing."""
        key = os.environ.get(self.api_key_env, "")
        if key:
            register_secret(key)  # scrubbed from every log record too (HTTP libraries log response headers)
            return key
        if self.is_local():
            return LOCAL_PLACEHOLDER_KEY
        raise UsageError(
            f"set the environment variable {self.api_key_env} to your API key for model {self.model!r} "
            f"(or point base_url at a local server)"
        )

    def request_timeout_s(self, tokens_in: int, tokens_out: int, echoed: int = 0) -> float:
        """Seconds to wait for one request that reads ``tokens_in`` prompt tokens and produces ``tokens_out``
        tokens (``echoed``: prompt tokens returned with their logprobs, work a server does per token)."""
        return (self.timeout_s + tokens_in / self.prompt_tokens_per_s + tokens_out / self.tokens_per_s
                + echoed / self.echoed_tokens_per_s)

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        """Price of one call: tokens times the price per million tokens."""
        return (tokens_in * self.price_in_per_mtok + tokens_out * self.price_out_per_mtok) / 1_000_000


def resolve_profile(name: str, profiles: dict[str, ModelProfile]) -> ModelProfile:
    """The profile called ``name``, or for ``openai:MODEL`` a default profile of that model; else UsageError."""
    if name in profiles:
        return profiles[name]
    if name.startswith(SHORTHAND_PREFIX) and name[len(SHORTHAND_PREFIX) :].strip():
        return ModelProfile(model=name[len(SHORTHAND_PREFIX) :].strip())
    known = ", ".join(sorted(profiles)) or "(none configured)"
    raise UsageError(f"unknown model profile {name!r}; known profiles: {known}; or use openai:MODEL")
