"""Reading units and residual vectors in vocabulary space: promotion/suppression and the logit lens (docs/methods.md
§4).

    >>> from autointerp.subject.lens import vocab_projection, logit_lens, trigger_suppression
    >>> s = vocab_projection(subject, layer=3, units=[17])[0]      # s = W_U^T w_out, one score per vocabulary token
    >>> trigger_suppression(s, [tok_id])                           # (mean of s over triggers < 0, best rank)
    >>> logit_lens(subject, "def f(x):").top[2][-1]                # what the residual after block 1 "says" at the end

**w_out.** When unit u fires with activation a it adds ``a * w_out[u]`` to the residual stream; ``w_out[u]`` is the
u-th input column of the down projection (``weight[:, u]`` of an ``nn.Linear``, ``weight[u, :]`` of GPT-2's Conv1D).

**Vocabulary projection.** ``s = W_U w_out`` with ``W_U`` the unembedding matrix [V, d] (the output embedding's
weight; its bias, if any, is not added). Default: **raw** (as Voita et al. project). With ``through_ln=True`` the
model's final norm module is applied to ``w_out`` first, exactly as it is applied to a hidden state (LayerNorm:
centre, divide by the standard deviation, multiply by the weight, add the bias; RMSNorm: divide by the RMS, multiply
by the weight): the logit lens of the update vector on its own. Both are invariant to a positive activation scale.
OPT checkpoints with ``project_out`` (word_embed_proj_dim != hidden_size) get it applied before ``W_U`` in both modes.

**Logit lens.** ``softmax(W_U ln_f(h) + b_U)`` of the residual stream h, read with hooks: index 0 is the input of
block 0 (embeddings), index l+1 the output of block l; the last one reproduces the model's own next-token
distribution. Where the blocks and the final norm live is in ``autointerp.subject.model.ARCHITECTURES``, with
every other module path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autointerp.corpus import bos_id
from autointerp.errors import UsageError
from autointerp.subject.hooks import batches, content, mlp_hooks, residual_hooks, run_batch
from autointerp.subject.model import ARCHITECTURES, Subject

def final_norm(subject: Subject) -> nn.Module:
    """The norm applied before the unembedding (identity for post-LN OPT variants that have none)."""
    parent, _, name = ARCHITECTURES[subject.model_type].final_norm.rpartition(".")
    return getattr(subject.model.get_submodule(parent), name, None) or nn.Identity()


def _project_out(subject: Subject, h: torch.Tensor) -> torch.Tensor:
    """OPT checkpoints whose word_embed_proj_dim differs from hidden_size project h before the unembedding."""
    proj = subject.model.model.decoder.project_out if subject.model_type == "opt" else None
    return proj(h) if proj is not None else h


def w_out(subject: Subject, layer: int) -> torch.Tensor:
    """[units, d_model]: row u is the residual-stream direction unit u writes (see the module docstring)."""
    down = subject.down_proj(layer)
    weight = down.weight.detach().float()
    return weight.T if isinstance(down, nn.Linear) else weight  # Conv1D stores [in, out]


@torch.no_grad()
def vocab_projection(subject: Subject, layer: int, units: Sequence[int] | None = None,
                     through_ln: bool = False) -> torch.Tensor:
    """[len(units), V] scores ``s = W_U w_out`` (raw by default; see the module docstring)."""
    vectors = w_out(subject, layer)
    if units is not None:
        vectors = vectors[list(units)]
    vectors = vectors.to(subject.device, subject.dtype)
    if through_ln:
        vectors = final_norm(subject)(vectors)
    unembed = subject.model.get_output_embeddings().weight
    return (_project_out(subject, vectors) @ unembed.T).float().cpu()


def promoted_suppressed(subject: Subject, layer: int, top: int = 10, through_ln: bool = False,
                        chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """([U, top] ids of the most promoted tokens, highest first; [U, top] most suppressed, lowest first)."""
    ups, downs = [], []
    for start in range(0, subject.n_units, chunk):
        s = vocab_projection(subject, layer, range(start, min(start + chunk, subject.n_units)), through_ln)
        ups.append(s.topk(top, dim=1).indices)
        downs.append(s.topk(top, dim=1, largest=False).indices)
    return torch.cat(ups), torch.cat(downs)


def trigger_suppression(s: torch.Tensor, triggers: Sequence[int]) -> tuple[bool, int]:
    """(mean of ``s`` over the trigger tokens < 0, best rank of a trigger among the most suppressed tokens).

    Rank 1 is the most suppressed token of the whole vocabulary: a token's rank is 1 + the number of tokens with a
    strictly lower score.
    """
    idx = torch.tensor(list(triggers), dtype=torch.int64)
    ranks = 1 + (s.unsqueeze(0) < s[idx].unsqueeze(1)).sum(1)
    return bool(s[idx].mean() < 0), int(ranks.min())


@dataclass(frozen=True)
class LogitLens:
    """The logit lens of one text: ``top[i][p]`` = the ``top`` (token, probability) pairs of residual ``i`` at
    content position ``p`` (i = 0: embeddings; i = l+1: after block l). The BOS position, when the tokenizer adds
    one, is fed to the model but not reported."""

    tokens: tuple[str, ...]
    top: tuple[tuple[tuple[tuple[str, float], ...], ...], ...]


@torch.no_grad()
def logit_lens(subject: Subject, text: str, top: int = 5) -> LogitLens:
    tok = subject.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = bos_id(tok)
    vocab = subject.model.get_output_embeddings().weight.shape[0]
    if not 1 <= top <= vocab:
        raise UsageError(f"--top {top} is out of range: give 1 to {vocab} (the model's vocabulary)")
    needed = len(ids) + (bos is not None)
    if subject.max_positions is not None and needed > subject.max_positions:
        raise UsageError(f"the text is {len(ids)} tokens, more than {subject.name} reads at once "
                         f"({subject.max_positions - (bos is not None)}); give a shorter text")
    inputs = torch.tensor([([bos] if bos is not None else []) + ids], device=subject.device)
    with residual_hooks(subject) as store:
        subject.model(input_ids=inputs, use_cache=False)
    head, norm = subject.model.get_output_embeddings(), final_norm(subject)
    skip = 1 if bos is not None else 0
    layers = []
    for i in range(len(store)):
        probs = head(_project_out(subject, norm(store[i][0, skip:]))).float().softmax(-1)
        p, t = probs.topk(top, dim=-1)
        layers.append(tuple(tuple((tok.decode([int(a)]), float(b)) for a, b in zip(tr, pr)) for tr, pr in zip(t, p)))
    return LogitLens(tokens=tuple(tok.decode([i]) for i in ids), top=tuple(layers))


@torch.no_grad()
def regularization_units(subject: Subject, windows: Iterable[list[int]], layer: int, top: int = 100,
                         min_fraction: float = 0.85, threshold: float = 0.0, batch_size: int = 32
                         ) -> dict[int, float]:
    """VISIT's "regularization" units: {unit: share of tokens on which it is among the layer's ``top`` most
    activated units} for the units whose share exceeds ``min_fraction`` (content tokens only).

    A unit is among the top at a token when it fires (activation > ``threshold``) and fewer than ``top`` units have
    a strictly larger activation: ties are all in, and silent units never count (ReLU layers tie at 0).
    """
    k = min(top, subject.n_units)
    hits = torch.zeros(subject.n_units, dtype=torch.int64)
    n_tokens = 0
    with mlp_hooks(subject, [layer]) as store:
        for ids, inputs in batches(subject, windows, batch_size):
            run_batch(subject, inputs)
            flat = content(store[layer], inputs, ids.shape[1]).reshape(-1, subject.n_units)
            kth = flat.topk(k, dim=1).values[:, -1:]
            hits += ((flat >= kth) & (flat > threshold)).sum(0)
            n_tokens += len(flat)
    share = hits.double() / max(n_tokens, 1)
    return {int(u): float(share[u]) for u in (share > min_fraction).nonzero(as_tuple=True)[0]}
