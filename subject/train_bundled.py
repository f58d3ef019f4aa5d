"""Train the bundled subject model: a byte-level BPE tokenizer and a small OPT, on the stdlib "fit" part.

    python -m autointerp.subject.train_bundled --out subject/bundled --minutes 40

Everything is seeded and the schedule depends on the step count only, so the same command gives the same weights
on the same software (CPU float32 kernels). The default 3,000 steps (12.3M tokens) take about 25-45 minutes on a
2-core CPU. ``--minutes`` is an optional safety cap: a run stopped by it says so in the model card and is not
reproducible. The result loads with ``AutoModelForCausalLM.from_pretrained(out)`` and
``AutoTokenizer.from_pretrained(out)``, exactly like a hub id or any other checkpoint.

Shape (the setting of Voita et al.'s dead / n-gram / positional study): OPT, pre-LayerNorm, ReLU FFN, learned
absolute position embeddings, 16 layers, d_model 64, FFN 256, 4 heads, vocabulary 4096, context 128 (BOS + 127).
Training sequences are ``[BOS] + 127`` tokens cut at random offsets of the concatenated fit documents, matching how
``autointerp`` feeds windows (BOS, then text that starts anywhere).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autointerp.corpus import open_corpus

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, OPT's convention; BOS = EOS = "</s>" = 2


def train_tokenizer(texts, vocab_size: int, out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(out)
    return fast


def token_stream(corpus, tokenizer) -> np.ndarray:
    """All documents of the corpus as one int16 array, each document preceded by BOS."""
    parts = []
    for doc in corpus.documents():
        ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        parts.append(np.asarray([2] + ids, dtype=np.int16))
    return np.concatenate(parts)


def batches(stream: np.ndarray, batch: int, ctx: int, gen: torch.Generator):
    n = len(stream) - ctx
    while True:
        starts = torch.randint(0, n, (batch,), generator=gen).numpy()
        x = np.stack([stream[s : s + ctx - 1] for s in starts]).astype(np.int64)
        x = np.concatenate([np.full((batch, 1), 2, dtype=np.int64), x], axis=1)
        yield torch.from_numpy(x)


@torch.no_grad()
def evaluate(model, stream: np.ndarray, ctx: int, n_seq: int = 256) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    it = batches(stream, 32, ctx, gen)
    losses = [model(input_ids=(x := next(it)), labels=x).loss.item() for _ in range(n_seq // 32)]
    model.train()
    return float(np.mean(losses))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "bundled"))
    ap.add_argument("--minutes", type=float, default=None, help="safety cap on training time (default: none)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--card-only", action="store_true", help="only rewrite README.md from training.json")
    args = ap.parse_args(argv)
    if args.card_only:
        return write_model_card(Path(args.out))

    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fit, held = open_corpus("stdlib:fit", seed=args.seed), open_corpus("stdlib", seed=args.seed)
    tokenizer = train_tokenizer((d.text for d in fit.documents()), args.vocab, out)
    fit_ids, held_ids = token_stream(fit, tokenizer), token_stream(held, tokenizer)
    print(f"tokenizer done in {time.time() - t0:.0f}s: fit {len(fit_ids):,} tokens, held-out {len(held_ids):,}")

    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.d_model,
        word_embed_proj_dim=args.d_model,
        ffn_dim=4 * args.d_model,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        max_position_embeddings=args.ctx,
        do_layer_norm_before=True,
        activation_function="relu",
        dropout=0.0,
        attention_dropout=0.0,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    model = OPTForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = 300
    budget_s = args.minutes * 60 if args.minutes else math.inf
    gen = torch.Generator().manual_seed(args.seed)
    it = batches(fit_ids, args.batch, args.ctx, gen)
    t_train, step, log = time.time(), 0, []
    while step < args.steps:
        elapsed = time.time() - t_train
        if elapsed > budget_s:
            break
        frac = step / args.steps  # cosine decay to 10% over the steps
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(it)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 250 == 0:
            tps = step * args.batch * args.ctx / (time.time() - t_train)
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {tps:,.0f} tok/s", flush=True)
            log.append({"step": step, "loss": round(loss.item(), 4)})
    held_loss = evaluate(model, held_ids, args.ctx)
    fit_loss = evaluate(model, fit_ids, args.ctx)
    model.save_pretrained(out, safe_serialization=True)
    stats = {
        "steps": step,
        "steps_planned": args.steps,
        "stopped_by_time_cap": step < args.steps,
        "batch": args.batch,
        "ctx": args.ctx,
        "tokens_seen": step * args.batch * args.ctx,
        "train_minutes": round((time.time() - t_train) / 60, 1),
        "fit_tokens": int(len(fit_ids)),
        "heldout_tokens": int(len(held_ids)),
        "fit_loss": round(fit_loss, 4),
        "heldout_loss": round(held_loss, 4),
        "seed": args.seed,
        "lr": args.lr,
        "params": sum(p.numel() for p in model.parameters()),
        "command": "python -m autointerp.subject.train_bundled " + " ".join(argv or __import__("sys").argv[1:]),
        "loss_log": log,
    }
    (out / "training.json").write_text(json.dumps(stats, indent=1))
    write_model_card(out)
    print(json.dumps({k: v for k, v in stats.items() if k != "loss_log"}, indent=1))


def write_model_card(out: Path) -> None:
    """README.md (the model card) from config.json and training.json, written by the training run itself."""
    cfg = json.loads((out / "config.json").read_text())
    st = json.loads((out / "training.json").read_text())
    weights = (out / "model.safetensors").stat().st_size
    card = f"""# autointerp bundled subject model

A small OPT-architecture causal language model of Python source code, shipped with autointerp so that
`autointerp run --layer 13` gives real results on an offline machine. It is the default `--model` ("bundled") and
loads like any checkpoint: `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` on this folder.

## Shape
- OPT, pre-LayerNorm (`do_layer_norm_before`), ReLU FFN, learned absolute position embeddings, tied input/output
  embeddings: the setting of Voita et al. (2023), "Neurons in Large Language Models: Dead, N-gram, Positional".
- {cfg["num_hidden_layers"]} layers, d_model {cfg["hidden_size"]}, FFN {cfg["ffn_dim"]} (the units autointerp
  explains: {cfg["ffn_dim"]} per layer), {cfg["num_attention_heads"]} heads, context {cfg["max_position_embeddings"]}
  positions (BOS + {cfg["max_position_embeddings"] - 1} tokens), vocabulary {cfg["vocab_size"]}.
- {st["params"]:,} parameters; `model.safetensors` is {weights / 1e6:.1f} MB (float32).
- Tokenizer: byte-level BPE trained on the same data; `</s>` (id 2) is BOS and EOS, `<pad>` is id 1, and the
  tokenizer prepends BOS to every text (as OPT's does).

## Data
The `stdlib:fit` part of the CPython {sys.version_info.major}.{sys.version_info.minor} standard library (`*.py`
files, `site-packages` excluded): every file whose relative path's SHA-256 starts with a byte >= 52, about 80% of
the files ({st["fit_tokens"]:,} tokens). The other part, `stdlib` (held-out, {st["heldout_tokens"]:,} tokens), is
autointerp's default corpus and was never trained on. See `autointerp/corpus.py` for the exact rule.

## Training
- Trained by: `{st["command"]}` (seed {st["seed"]}). To rebuild in place: `python -m
  autointerp.subject.train_bundled` (its defaults are this model's settings; it writes into subject/bundled).
- {st["steps"]:,} AdamW steps (lr {st["lr"]}, betas 0.9/0.98, weight decay 0.01, warmup 300 steps, cosine decay to
  10% over the steps){" - STOPPED EARLY by the --minutes cap: not reproducible" if st.get("stopped_by_time_cap") else ""}, batch {st["batch"]} sequences of {st["ctx"]} tokens (BOS + {st["ctx"] - 1} tokens
  cut at random offsets of the concatenated documents): {st["tokens_seen"]:,} tokens seen, in
  {st["train_minutes"]} minutes on a 2-core CPU.
- Loss (mean next-token cross-entropy in nats, 256 sequences of {st["ctx"]} tokens): held-out
  **{st["heldout_loss"]}**, fit {st["fit_loss"]}.

## Intended use
A subject for interpretability tooling and tests. It is not a useful code model.
"""
    (out / "README.md").write_text(card)


if __name__ == "__main__":
    main()
