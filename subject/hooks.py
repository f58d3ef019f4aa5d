"""Forward hooks, built and removed in one place: the MLP units' activations, the residual stream, and the forward
pass that stops after the deepest hook it needs.

    >>> from autointerp.subject.hooks import mlp_hooks, residual_hooks, run_batch, batches
    >>> with mlp_hooks(subject, [3]) as store:                 # hooks removed when the block exits
    ...     for ids, inputs in batches(subject, windows):
    ...         run_batch(subject, inputs)                     # stops after layer 3's down-projection input
    ...         acts = content(store[3], inputs, ids.shape[1]) # [B, W, units], BOS dropped

Capture, the logit lens, dictionaries (SAEs), unit spaces, probes and the agent's tools all hook the model through
this module and ``autointerp.subject.sites`` (every hook site, defined once); where each architecture keeps its
blocks and projections is in ``autointerp.subject.model``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch

from autointerp.corpus import bos_id
from autointerp.subject.model import Subject
from autointerp.subject.sites import StopForward, _hidden, blocks, site_hooks

__all__ = ["StopForward", "batches", "blocks", "content", "mlp_hooks", "residual_hooks", "run_batch"]


@contextmanager
def mlp_hooks(subject: Subject, layers: Iterable[int], stop_after_last: bool = True) -> Iterator[dict[int, torch.Tensor]]:
    """Hook the input of each layer's down projection (site ``mlp``, ``autointerp.subject.sites``); yields
    {layer: last activations [B, T, units]}.

    The hooks are removed when the block exits, whatever happens inside it. With ``stop_after_last`` the deepest
    hook raises StopForward, which the caller catches (see ``run_batch``).
    """
    with site_hooks(subject, "mlp", layers, stop_after_last) as store:
        yield store


def run_batch(subject: Subject, input_ids: torch.Tensor) -> None:
    """Forward pass that tolerates the StopForward raised by the deepest hook."""
    try:
        with torch.inference_mode():
            subject.model(input_ids=input_ids, use_cache=False)
    except StopForward:
        pass


def batches(subject: Subject, windows: Iterable[list[int]], size: int = 32
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Group equal-length token windows into (ids [B, W] on CPU, model inputs [B, W(+1)] on the subject's device),
    prepending the BOS the model expects, as capture does."""
    bos = bos_id(subject.tokenizer)
    it = iter(windows)
    while batch := list(islice(it, size)):
        ids = torch.tensor(batch, dtype=torch.int64)
        inputs = ids if bos is None else torch.cat([torch.full((len(batch), 1), bos), ids], dim=1)
        yield ids, inputs.to(subject.device)


def content(acts: torch.Tensor, inputs: torch.Tensor, n_content: int) -> torch.Tensor:
    """Hooked activations [B, T, D] (or OPT's flattened [B*T, D]) of ``inputs`` [B, T] -> float32 CPU
    [B, n_content, D], the last ``n_content`` positions (the window's, without the BOS or any context before it)."""
    return acts.reshape(*inputs.shape, -1)[:, inputs.shape[1] - n_content :].float().cpu()


@contextmanager
def residual_hooks(subject: Subject, layers: Iterable[int] | None = None, stop_after_last: bool = False
                   ) -> Iterator[dict[int, torch.Tensor]]:
    """Yields {index: residual stream [B, T, d]} filled by the next forward pass; index 0 is the input of block 0,
    index l+1 the output of block l (``layers`` restricts which are kept, all when None). With ``stop_after_last``
    the deepest kept index raises StopForward (run the pass with ``run_batch``). Hooks always removed."""
    mods = blocks(subject)
    wanted = set(range(len(mods) + 1)) if layers is None else set(layers)
    last = max(wanted) if stop_after_last else None
    store: dict[int, torch.Tensor] = {}
    handles = []

    def keep(index: int, value: torch.Tensor) -> None:
        store[index] = value.detach()
        if index == last:
            raise StopForward

    try:
        if 0 in wanted:
            handles.append(mods[0].register_forward_pre_hook(
                lambda module, args, kwargs: keep(0, args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
        for i, block in enumerate(mods):
            if i + 1 in wanted:
                handles.append(block.register_forward_hook(lambda module, args, out, i=i: keep(i + 1, _hidden(out))))
        yield store
    finally:
        for h in handles:
            h.remove()
