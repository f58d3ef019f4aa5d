"""Record the cases tests/test_echo_simulator.py checks the all-at-once simulator against: what OpenAI's reference
code (neuron-explainer's ``format_sequences_for_simulation`` and ``parse_simulation_response``) returns for given
windows and completions responses. Not run by the test suite; needs a checkout of openai/automated-interpretability:

    python tests/golden/record_echo_reference.py /path/to/automated-interpretability/neuron-explainer

Each case: the subject tokens, the reference's prompt (``ExplanationNeuronSimulator.make_simulation_prompt`` in the
plain-text format, few-shot set TEST) and its window block, a legacy ``/v1/completions`` response to that prompt
(echo, logprobs 15; tokens cut by a word/digit/space/punctuation tokenizer, seeded random top logprobs mixing the
numbers "0".."10" with words, some positions without any number), and the expected values the reference reads from
it. Also the reference's block layout for several windows at once. Written to echo_reference_cases.json beside this
file.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import types
from pathlib import Path

OUT = Path(__file__).with_name("echo_reference_cases.json")
TOKEN_RE = re.compile(r"\d+|[^\W\d]+|\s|[^\w\s]+")
WORDS = ["the", " of", "unknown", "\n", "<", " and", ".", "ing", " a", "\t"]


def stub_modules() -> None:
    """The reference's imports that are not needed for these two functions (file access, its HTTP client; the
    latter asserts that OPENAI_API_KEY is set, so it is replaced by an empty module)."""
    client = sys.modules.setdefault("neuron_explainer.api_client", types.ModuleType("neuron_explainer.api_client"))
    client.ApiClient = lambda *args, **kwargs: None
    for name in ("blobfile", "orjson", "tiktoken", "boostedblob"):
        module = sys.modules.setdefault(name, types.ModuleType(name))
        module.ensure_session = lambda f: f  # boostedblob's decorator, on functions not called here


def response(prompt: str, rng: random.Random, no_number_rate: float) -> dict:
    tokens = TOKEN_RE.findall(prompt)
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    top = [None]
    for _ in tokens[1:]:
        entries = {}
        if rng.random() >= no_number_rate:
            for value in rng.sample(range(11), rng.randint(1, 6)):
                entries[str(value)] = math.log(rng.uniform(0.001, 0.6))
        for word in rng.sample(WORDS, rng.randint(1, 5)):
            entries[word] = math.log(rng.uniform(0.001, 0.6))
        top.append(dict(sorted(entries.items(), key=lambda kv: -kv[1])[:15]))
    logprobs = {"tokens": tokens, "text_offset": offsets, "token_logprobs": [None] + [-1.0] * (len(tokens) - 1),
                "top_logprobs": top}
    return {"choices": [{"text": prompt, "index": 0, "logprobs": logprobs, "finish_reason": "length"}]}


def main(reference: str) -> None:
    stub_modules()
    sys.path.insert(0, reference)
    from neuron_explainer.activations.activation_records import format_sequences_for_simulation
    from neuron_explainer.explanations.few_shot_examples import FewShotExampleSet
    from neuron_explainer.explanations.prompt_builder import PromptFormat
    from neuron_explainer.explanations.simulator import ExplanationNeuronSimulator, parse_simulation_response

    rng = random.Random(14)
    windows = [
        ["def", " f", "(", "x", "):", " return", " x"],
        ["The", " cat", " sat", " on", " the", " mat", "."],
        ["import", " os", ",", " sys", " as", " s", " 42", " 7"],
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"],
    ]
    cases = []
    for i, tokens in enumerate(windows):
        simulator = ExplanationNeuronSimulator(None, f"the token {tokens[i % len(tokens)]!r}",
                                               few_shot_example_set=FewShotExampleSet.TEST,
                                               prompt_format=PromptFormat.NONE)
        prompt = simulator.make_simulation_prompt(tokens)
        body = response(prompt, rng, no_number_rate=0.25 if i % 2 else 0.0)
        sim = parse_simulation_response(body, PromptFormat.NONE, tokens)
        cases.append({"tokens": tokens, "prompt": prompt, "block": format_sequences_for_simulation([tokens]),
                      "response": body, "expected_values": [float(v) for v in sim.expected_activations]})
    record = {
        "source": "openai/automated-interpretability neuron-explainer (commit e4aa21b), functions "
                  "format_sequences_for_simulation, ExplanationNeuronSimulator.make_simulation_prompt and "
                  "parse_simulation_response",
        "cases": cases,
        "several_windows": {"windows": windows, "block": format_sequences_for_simulation(windows)},
    }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
