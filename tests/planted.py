"""A one-layer OPT whose MLP units are set by hand, so every analysis has a known answer (docs/methods.md §8).

    >>> from planted import build_planted
    >>> subject, truth = build_planted(tokenizer, detected_tokens=(t0, t1, t2), window=16)
    >>> truth.dead, truth.token_detectors, truth.positional, truth.suppressing

Geometry (d_model = 128, pre-LayerNorm OPT, LayerNorm weight 1 and bias 0):

- attention writes nothing (out_proj weight and bias are 0), so the MLP of layer 0 sees LN(tok_emb + pos_emb);
- the detected tokens get private zero-mean directions (e_{2i} - e_{2i+1}) / sqrt(2) in dims 0..5; every other token
  a random zero-mean unit vector in dims 6..93; model position m the direction (e_{94+2m} - e_{95+2m}) / sqrt(2);
- so every input has mean 0 and squared norm 2, and LN(x) = x * sqrt(128 / 2) (up to LayerNorm's eps): the FFN reads
  token and position linearly, and the three subspaces are exactly orthogonal;
- a unit with fc1 row w and bias -SCALE / 2 fires iff <x, w> > 1/2, i.e. iff the token (or the position) is one
  the row sums; w_out of the detectors is -e_t (suppresses its trigger) or +e_t (promotes it), and the unembedding
  is tied to the token embeddings, so s = W_U w_out is exactly -1 or +1 on the trigger and 0 elsewhere.

Content positions c = 0..window-1 are model positions m = c + 1 (the bundled tokenizer's BOS sits at m = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from autointerp.corpus import open_corpus
from autointerp.subject.capture import CaptureConfig, capture
from autointerp.subject.model import Subject

D_MODEL = 128
TOKEN_DIMS = 94  # dims 0..93: 6 private detector dims + 88 for the other tokens; then 2 dims per position


@dataclass(frozen=True)
class PlantedTruth:
    dead: frozenset[int]
    token_detectors: dict[int, tuple[int, ...]]  # unit -> detected token ids
    suppressing: frozenset[int]  # token detectors whose w_out points away from their triggers
    positional: dict[int, frozenset[int]]  # unit -> content positions where it always fires
    positional_kinds: dict[int, str]  # unit -> "kind/strength" the analysis must report
    dense: frozenset[int]  # fires on every token


def _pair(dim: int) -> torch.Tensor:
    v = torch.zeros(D_MODEL)
    v[dim], v[dim + 1] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    return v


def build_planted(tokenizer, detected_tokens: tuple[int, int, int], window: int = 16, seed: int = 0
                  ) -> tuple[Subject, PlantedTruth]:
    """The planted subject (12 units) and what each unit is; ``detected_tokens`` should occur in the corpus."""
    from transformers import OPTConfig, OPTForCausalLM

    n_pos = window + 1
    assert TOKEN_DIMS + 2 * n_pos <= D_MODEL, "window too long for the position subspace"
    vocab = len(tokenizer)
    gen = torch.Generator().manual_seed(seed)
    t0, t1, t2 = detected_tokens

    emb = torch.zeros(vocab, D_MODEL)
    emb[:, 6:TOKEN_DIMS] = torch.randn(vocab, TOKEN_DIMS - 6, generator=gen)
    emb[:, 6:TOKEN_DIMS] -= emb[:, 6:TOKEN_DIMS].mean(1, keepdim=True)
    emb /= emb.norm(dim=1, keepdim=True)
    for i, t in enumerate(detected_tokens):
        emb[t] = _pair(2 * i)
    pos = torch.stack([_pair(TOKEN_DIMS + 2 * m) for m in range(n_pos)])  # [m, D]

    def positions(content: set[int]) -> torch.Tensor:
        return sum(pos[c + 1] for c in content)

    scale = math.sqrt(D_MODEL / 2)  # LN(x) = x * scale
    random_dir = torch.zeros(D_MODEL)
    random_dir[6:TOKEN_DIMS] = torch.randn(TOKEN_DIMS - 6, generator=gen)
    random_dir /= random_dir.norm()
    margin = scale / 100  # keeps float noise (~1e-10) on orthogonal inputs from counting as firing
    first4, evens, after10, band = set(range(4)), set(range(0, window, 2)), set(range(10, window)), set(range(5, 9))
    # unit: (fc1 row, bias, w_out)
    rows = [
        (torch.zeros(D_MODEL), -1.0, torch.zeros(D_MODEL)),  # 0 dead: constant -1
        (random_dir, -2.0 * scale, torch.zeros(D_MODEL)),  # 1 dead: |<LN x, w>| <= sqrt(2) * scale < 2 * scale
        (emb[t0], -scale / 2, -emb[t0]),  # 2 detects t0, suppresses it
        (emb[t1], -scale / 2, emb[t1]),  # 3 detects t1, promotes it
        (emb[t1] + emb[t2], -scale / 2, -(emb[t1] + emb[t2])),  # 4 detects {t1, t2}, suppresses both
        (positions(first4), -scale / 2, torch.zeros(D_MODEL)),  # 5 fires at content positions 0..3
        (positions(evens), -scale / 2, torch.zeros(D_MODEL)),  # 6 fires at even positions (oscillatory)
        (positions(after10), -scale / 2, torch.zeros(D_MODEL)),  # 7 fires from position 10 on
        (positions(band), -scale / 2, torch.zeros(D_MODEL)),  # 8 fires at positions 5..8
        (torch.zeros(D_MODEL), 3 * scale, torch.zeros(D_MODEL)),  # 9 dense: constant, the largest activation
        (random_dir, -margin, torch.zeros(D_MODEL)),  # 10 fires on about half of the tokens
        (random_dir + positions(first4), -margin, torch.zeros(D_MODEL)),  # 11 always at 0..3, then as unit 10
    ]
    config = OPTConfig(vocab_size=vocab, hidden_size=D_MODEL, word_embed_proj_dim=D_MODEL, ffn_dim=len(rows),
                       num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=n_pos,
                       activation_function="relu", do_layer_norm_before=True, bos_token_id=2, eos_token_id=2,
                       pad_token_id=1, tie_word_embeddings=True, dropout=0.0)
    torch.manual_seed(seed)
    model = OPTForCausalLM(config).eval()
    dec = model.model.decoder
    layer = dec.layers[0]
    with torch.no_grad():
        dec.embed_tokens.weight.copy_(emb)
        dec.embed_positions.weight.zero_()
        dec.embed_positions.weight[2 : 2 + n_pos] = pos  # OPT offsets learned positions by 2
        layer.self_attn.out_proj.weight.zero_()
        layer.self_attn.out_proj.bias.zero_()
        for ln in (layer.final_layer_norm, dec.final_layer_norm):
            ln.weight.fill_(1.0)
            ln.bias.zero_()
        layer.fc1.weight.copy_(torch.stack([r[0] for r in rows]))
        layer.fc1.bias.copy_(torch.tensor([r[1] for r in rows]))
        layer.fc2.weight.copy_(torch.stack([r[2] for r in rows], dim=1))
        layer.fc2.bias.zero_()
    assert model.get_output_embeddings().weight.data_ptr() == dec.embed_tokens.weight.data_ptr()
    subject = Subject(model=model, tokenizer=tokenizer, name="planted", model_type="opt", n_layers=1,
                      n_units=len(rows), activation="relu", device=torch.device("cpu"), dtype=torch.float32)
    truth = PlantedTruth(
        dead=frozenset({0, 1}),
        token_detectors={2: (t0,), 3: (t1,), 4: (t1, t2)},
        suppressing=frozenset({2, 4}),
        positional={5: frozenset(first4), 6: frozenset(evens), 7: frozenset(after10), 8: frozenset(band),
                    11: frozenset(first4)},
        # unit 11 fires everywhere at 0..3 and on unit 10's tokens elsewhere: it reaches 1 but never 0
        positional_kinds={5: "both_extremes/strong", 6: "oscillatory/strong", 7: "both_extremes/strong",
                          8: "both_extremes/strong", 11: "one_extreme/strong"},
        dense=frozenset({9}),
    )
    return subject, truth


def capture_with_ngrams(subject: Subject, corpus_path, window: int, max_windows: int | None = None):
    """The real capture of layer 0 with n-gram counting on (``CaptureConfig.ngrams``)."""
    cfg = CaptureConfig(layers=[0], window=window, top_k=3, n_random=2, batch_size=16, ngrams=True,
                        max_tokens=None if max_windows is None else max_windows * window)
    return capture(subject, open_corpus(str(corpus_path)), cfg)[0]


@dataclass(frozen=True)
class GatedTruth:
    dead_under_rule: frozenset[int]  # dead under max_fraction (silent or always off)
    dead_under_zero: frozenset[int]  # dead under "> 0"
    token_detectors: dict[int, tuple[int, ...]]  # under max_fraction
    dense: frozenset[int]  # fires on every token under max_fraction
    negative_on: dict[int, int]  # unit -> the token where its activation is most negative


def build_planted_gated(tokenizer, detected_tokens: tuple[int, int, int], seed: int = 0
                        ) -> tuple[Subject, GatedTruth]:
    """A one-layer Llama whose gated MLP units ``silu(g . x) * (u . x)`` are set by hand (the ``max_fraction`` firing
    rule's known answers). Attention writes nothing (o_proj 0) and Llama has no position embedding, so the MLP reads
    RMSNorm(token embedding) = sqrt(D) * embedding (every embedding has norm 1). Dim BIAS holds the constant C of every
    embedding, so a row's weight there acts as a bias; the detected tokens have private dims 0..5, every other token
    a random direction in dims 6..126."""
    from transformers import LlamaConfig, LlamaForCausalLM

    bias_dim, c = D_MODEL - 1, 0.5
    rest = math.sqrt(1 - c * c)
    vocab = len(tokenizer)
    gen = torch.Generator().manual_seed(seed)
    t0, t1, t2 = detected_tokens
    emb = torch.zeros(vocab, D_MODEL)
    emb[:, 6:bias_dim] = torch.randn(vocab, bias_dim - 6, generator=gen)
    emb[:, 6:bias_dim] *= rest / emb[:, 6:bias_dim].norm(dim=1, keepdim=True)
    for i, t in enumerate(detected_tokens):
        emb[t] = 0
        emb[t, 2 * i] = rest
    emb[:, bias_dim] = c
    s = math.sqrt(D_MODEL)  # RMSNorm(x) = s * x for |x| = 1

    def e(dim: int, value: float = 1.0) -> torch.Tensor:
        v = torch.zeros(D_MODEL)
        v[dim] = value
        return v

    def bias(b: float) -> torch.Tensor:  # a row term worth b (after the norm) on every token
        return e(bias_dim, b / (c * s))

    def on(i: int, value: float) -> torch.Tensor:  # a row term worth value (after the norm) on detected token i only
        return e(2 * i, value / (rest * s))

    r = torch.zeros(D_MODEL)
    r[6:bias_dim] = torch.randn(bias_dim - 6, generator=gen)
    r *= 1 / (rest * s * r.norm())  # r . RMSNorm(x) has a spread of ~1/sqrt(120) around 0 on the other tokens
    # unit: (gate row, up row)
    rows = [
        (bias(-12.0), bias(1.0)),  # 0 always off: silu(-12) * 1 < 0 everywhere (dead under both rules)
        (r * 0.05, bias(0.01)),  # 1 silent: tiny activations of both signs (live under "> 0", dead under the rule)
        (on(0, 12.0) + bias(-4.0), bias(1.0)),  # 2 detects t0 (~8 on it, ~ -0.07 elsewhere)
        (on(1, 13.0) + bias(-1.0), on(1, 5.0) + bias(-1.0)),  # 3 detects t1 (~48) over a positive background 0.27
        (bias(3.0), bias(3.0)),  # 4 dense: 8.57 on every token
        (on(0, 12.0) + on(2, 12.0) + bias(-4.0), on(0, 4.0) + on(2, -4.0)),  # 5 +32 on t0, -32 on t2, 0 elsewhere
        (r * 60.0, bias(2.0)),  # 6 a gated unit with a spread-out gate: > 0 on about half the tokens
    ]
    config = LlamaConfig(vocab_size=vocab, hidden_size=D_MODEL, intermediate_size=len(rows), num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         rms_norm_eps=1e-12, hidden_act="silu", tie_word_embeddings=True, bos_token_id=2,
                         eos_token_id=2, pad_token_id=1)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    layer = model.model.layers[0]
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(emb)
        layer.self_attn.o_proj.weight.zero_()
        layer.post_attention_layernorm.weight.fill_(1.0)
        layer.mlp.gate_proj.weight.copy_(torch.stack([g for g, _ in rows]))
        layer.mlp.up_proj.weight.copy_(torch.stack([u for _, u in rows]))
        layer.mlp.down_proj.weight.zero_()
    subject = Subject(model=model, tokenizer=tokenizer, name="planted-gated", model_type="llama", n_layers=1,
                      n_units=len(rows), activation="silu", device=torch.device("cpu"), dtype=torch.float32)
    truth = GatedTruth(dead_under_rule=frozenset({0, 1}), dead_under_zero=frozenset({0}),
                       token_detectors={2: (t0,), 3: (t1,), 5: (t0,)}, dense=frozenset({4}), negative_on={5: t2})
    return subject, truth
