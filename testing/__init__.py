"""Test doubles that plug into the LLM seam from outside it: nothing in the product imports this room.

- ``autointerp.testing.server``: ``FakeOpenAIServer``, a local OpenAI-compatible HTTP server (chat completions,
  streamed or not, ``/v1/completions`` with ``echo``) with fault injection; ``python -m autointerp.testing.server
  --port P --latency S`` serves it in the foreground for benchmarks and manual checks.
- ``autointerp.testing.fake``: ``FakeLLM``, the same replies in-process, through the real client's base class (so
  the real retry, budget and logging code runs under test).
- ``autointerp.testing.outcomes``: what a fake model does with a request (``Reply``, ``HTTPFailure``, ``Hang``,
  ``Garbage``) and ``scripted`` sequences of them.
- ``autointerp.testing.echo_model``: the fake server's legacy ``/v1/completions`` endpoint (``EchoModel``), as
  llama.cpp and vLLM serve ``echo`` with ``logprobs``.
"""
