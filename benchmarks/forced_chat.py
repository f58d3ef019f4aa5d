"""A chat handler for the test server backed by a real model (transformers), whose simulation replies are forced into
the format asked for, as a llama.cpp grammar forces them: for ``bench_sim_format.py --hf-gguf``.

    handler = ForcedSimulator("/models/SmolLM2-135M-Instruct.Q4_1.gguf")     # dequantized once, on the CPU
    with FakeOpenAIServer(handler) as srv: ...

Only the numbers are the model's. Everything else in the reply (the copied token lines of the full format, the
window labels of the compact one) is fed to the model as written; at each number the model's most likely allowed
token is taken ("0".."9" in the full format, then "0" or not after a "1"; "0".."9" or "X" in the compact one), and
the top logprobs returned there are the model's own over its whole vocabulary, as an OpenAI-compatible server
returns them. So both formats are read by the simulator's own code, and neither can fail on the format: what differs
is what the model predicts when asked each way.
"""

from __future__ import annotations

import math
import os
import re
import threading
from typing import Any

from autointerp.llm.tokens import message_text
from autointerp.testing.compact_answer import compact_windows
from autointerp.testing.outcomes import Reply

_BLOCK_RE = re.compile(r"<start>\n(.*?)\n?<end>", re.S)


class ForcedSimulator:
    def __init__(self, gguf: str, top_logprobs: int = 15):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
        self.top = top_logprobs
        self.lock = threading.Lock()
        self.ids = {c: self._one_id(c) for c in [*"0123456789", "X", "\n"]}

    def _one_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == 1, f"{text!r} is not one token of this tokenizer"
        return ids[0]

    def __call__(self, request: dict[str, Any]) -> Reply:
        messages = request.get("messages", [])
        users = [m for m in messages if m.get("role") == "user"]
        prompt = message_text(users[-1]) if users else ""
        compact = compact_windows(prompt)
        if compact is not None:
            plan = [step for i, window in enumerate(compact[1], 1)
                    for step in [("force", f"{i}:"), *[("choose", "compact")] * len(window), ("force", "\n")]]
        else:
            blocks = [block.split("\n") for block in _BLOCK_RE.findall(prompt)]
            if not blocks:
                return Reply(text="This handler answers simulation prompts only.")
            plan = []
            for block in blocks:
                plan.append(("force", "<start>\n"))
                for line in block:
                    plan += [("force", line), ("choose", "full")]  # the number and its newline
                plan.append(("force", "<end>\n"))
        chat = [{"role": m["role"], "content": message_text(m)} for m in messages]
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True)
        ids = ids["input_ids"] if not isinstance(ids, list) else ids
        with self.lock, self.torch.inference_mode():
            return Reply(tokens=self._decode(list(ids), plan))

    def _decode(self, prompt_ids: list[int], plan: list[tuple[str, str]]) -> list[tuple[str, dict[str, float]]]:
        tokens: list[tuple[str, dict[str, float]]] = []
        pending = list(prompt_ids)  # fed at the next forward pass
        state: dict[str, Any] = {"past": None}

        def logprobs() -> Any:
            out = self.model(input_ids=self.torch.tensor([pending]), past_key_values=state["past"], use_cache=True)
            state["past"] = out.past_key_values
            pending.clear()
            return self.torch.log_softmax(out.logits[0, -1].float(), dim=-1)

        def alternatives(lp: Any) -> dict[str, float]:
            top = self.torch.topk(lp, self.top)
            found: dict[str, float] = {}
            for value, index in zip(top.values.tolist(), top.indices.tolist()):
                text = self.tokenizer.decode([index])
                found[text] = math.log(math.exp(found.get(text, -math.inf)) + math.exp(value))
            return found

        def chosen(lp: Any, allowed: str) -> str:
            best = max(allowed, key=lambda c: float(lp[self.ids[c]]))
            tokens.append((best, alternatives(lp)))
            pending.append(self.ids[best])
            return best

        for kind, arg in plan:
            if kind == "force":
                ids = self.tokenizer.encode(arg, add_special_tokens=False)
                tokens += [(self.tokenizer.decode([i]), {}) for i in ids]
                pending += ids
            elif arg == "compact":
                chosen(logprobs(), "0123456789X")
            else:  # full: a digit; after "1", "0" (ten) or the newline, whichever the model prefers
                if chosen(logprobs(), "0123456789") != "1":
                    tokens.append(("\n", {}))
                    pending.append(self.ids["\n"])
                    continue
                lp = logprobs()  # the simulator reads p("0") here: the chance that "1" goes on to "10"
                if chosen(lp, "0\n") == "0":
                    tokens.append(("\n", {}))
                    pending.append(self.ids["\n"])
        return tokens
