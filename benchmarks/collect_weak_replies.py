"""Collect what a weak real model answers to the explainer's and the simulator's prompts: the test data of
``tests/data/weak_model_replies.json`` (the explanation judge and the simulator's reply watch are tested on it).

    python benchmarks/collect_weak_replies.py /work/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > replies.jsonl

Loads the GGUF file with transformers (the ``gguf`` package dequantises it; CPU), renders the real prompts
(``draft_messages`` for a small record of windows from the bundled tokenizer's test text; ``simulation_messages``
for two windows) with the model's own chat template, and generates greedily and with sampling; prints one JSON
line per reply.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from autointerp.agent.prompting import draft_messages, record_statistics
from autointerp.scoring.llm_simulator import simulation_messages
from autointerp.subject.records import UnitId, UnitRecord, UnitStats, Window, deal_splits


def record() -> UnitRecord:
    top, rand = deal_splits(9, 4)
    windows = []
    for rank, split in enumerate(top):
        tokens = ("def", " area", "(", "self", "):", " return", " self", ".", "width")
        acts = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 5.0 - 0.4 * rank, 0.0, 0.0)
        windows.append(Window(rank, tokens, tuple(range(9)), acts, "top", rank, split))
    for i, split in enumerate(rand):
        windows.append(Window(100 + i, ("x", " =", " 1", "\n"), (0, 1, 2, 3), (0.0,) * 4, "random", i, split))
    stats = UnitStats(n_tokens=5000, fire_count=250, threshold=0.0, mean=0.1, std=0.5, max=5.0, min=0.0,
                      quantiles={"q50": 0.0, "q99": 3.0})
    return UnitRecord(UnitId(13, 0), tuple(windows), stats, top_tokens=((" self", 200, 210), ("self", 50, 300)))


def main() -> None:
    path = Path(sys.argv[1])
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    rec = record()
    train = rec.split("train")
    prompts = {
        "explain": draft_messages(rec, record_statistics(rec), train, tool_calls_left=0),
        "simulate": simulation_messages('The token " self" inside a method body.',
                                        [list(w.tokens) for w in rec.split("test")[:2]]),
    }
    for sample in (False, True):  # greedy, then sampled at temperature 0.7; one JSON line per reply, as it comes
        for purpose, messages in prompts.items():
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            with torch.no_grad():
                gen = model.generate(**ids, max_new_tokens=120, do_sample=sample,
                                     temperature=0.7 if sample else None, top_p=None, top_k=None)
            text = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            print(json.dumps({"model": path.name, "purpose": purpose, "sampled": sample, "text": text}), flush=True)


if __name__ == "__main__":
    main()
