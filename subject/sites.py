"""Hook sites: where in a block a dictionary (an SAE) reads its input. One definition per site for every supported
family, used alike by capture, the agent's tools, the review pages (through ``UnitSpace.hooks``), by
``units.collect_activations`` (what a dictionary is fitted and checked on) and by ``sae.spliced_loss`` (which
replaces the site by a reconstruction).

    >>> from autointerp.subject.sites import site_hooks, replace_site
    >>> with site_hooks(subject, "resid_pre", [3]) as store:     # {3: [B, T, d_model]} after the next forward pass
    ...     run_batch(subject, inputs)
    >>> with replace_site(subject, "mlp_out", 3, lambda x: x * 0):  # the block's MLP contributes nothing
    ...     subject.model(input_ids=inputs)

=============  ================================================================  =============================
site           the tensor, at block ``layer``                                    SAELens / TransformerLens hook
=============  ================================================================  =============================
``resid_pre``  the residual stream entering the block (its input hidden state)   ``blocks.L.hook_resid_pre``
``resid_post`` the residual stream leaving the block (its output hidden state)   ``blocks.L.hook_resid_post``
``attn_out``   what the attention adds to the residual stream                    ``blocks.L.hook_attn_out``
``mlp_out``    what the MLP adds to the residual stream                          ``blocks.L.hook_mlp_out``
``mlp``        the MLP activations: the input of the down projection (the units) ``blocks.L.mlp.hook_post``
=============  ================================================================  =============================

``resid_pre`` of block L+1 is the same tensor as ``resid_post`` of block L. ``attn_out`` / ``mlp_out`` are the
outputs of the modules named in ``ARCHITECTURES`` (for Gemma 2 and 3 the sublayer's post-norm, whose output is what
the stream receives; for OPT the fc2 projection). Old names are still read: ``resid`` is ``resid_post``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from autointerp.errors import UsageError
from autointerp.subject.model import ARCHITECTURES, Subject

Site = Literal["resid_pre", "resid_post", "attn_out", "mlp_out", "mlp"]
SITES: tuple[str, ...] = ("resid_pre", "resid_post", "attn_out", "mlp_out", "mlp")
ALIASES = {"resid": "resid_post", "mlp_post": "mlp", "mlp_act": "mlp", "attn": "attn_out"}
# how a site's tensor reaches its module: the input of a block (pre, keyword or first argument), the first input of
# a module (arg), or a module's output (out)
_CALL = {"resid_pre": "pre", "resid_post": "out", "attn_out": "out", "mlp_out": "out", "mlp": "arg"}


class StopForward(Exception):
    """Raised by the last needed hook to skip the rest of the model (``hooks.run_batch`` catches it)."""


def blocks(subject: Subject) -> nn.ModuleList:
    return subject.model.get_submodule(ARCHITECTURES[subject.model_type].blocks)


def _hidden(output) -> torch.Tensor:
    """A module's output hidden state (transformers 5 returns a tensor, 4.x and attention modules a tuple whose
    first item it is)."""
    return output[0] if isinstance(output, tuple) else output


def canonical_site(site: str, flag: str = "--site") -> str:
    """The site's canonical name (aliases such as ``resid`` read as ``resid_post``); UsageError when unknown."""
    name = ALIASES.get(site, site)
    if name not in SITES:
        raise UsageError(f"{flag} {site!r} is not a hook site; use one of {', '.join(SITES)}")
    return name


def site_width(subject: Subject, site: str) -> int:
    """Width of the site's vectors: the MLP width for ``mlp``, the residual width for every other site."""
    return subject.n_units if canonical_site(site) == "mlp" else subject.d_model


def site_module(subject: Subject, site: str, layer: int) -> nn.Module:
    """The module whose input or output is ``site`` at ``layer``."""
    site = canonical_site(site)
    subject.check_layer(layer)
    arch = ARCHITECTURES[subject.model_type]
    if site in ("resid_pre", "resid_post"):
        return blocks(subject)[layer]
    path = {"mlp": arch.down_proj, "attn_out": arch.attn_out, "mlp_out": arch.mlp_out}[site]
    return subject.model.get_submodule(path.format(layer=layer))


def _register(subject: Subject, site: str, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    """Register ``fn`` on the site's tensor; when ``fn`` returns a tensor, the model goes on with it instead.
    Returns the hook handle."""
    module = site_module(subject, site, layer)
    call = _CALL[canonical_site(site)]
    if call == "pre":
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            y = fn(x)
            if y is None:
                return None
            return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})

        return module.register_forward_pre_hook(hook, with_kwargs=True)
    if call == "arg":
        def hook(module, args):
            y = fn(args[0])
            return None if y is None else (y, *args[1:])

        return module.register_forward_pre_hook(hook)

    def hook(module, args, out):
        y = fn(_hidden(out))
        if y is None:
            return None
        return (y, *out[1:]) if isinstance(out, tuple) else y

    return module.register_forward_hook(hook)


@contextmanager
def site_hooks(subject: Subject, site: str, layers: Iterable[int], stop_after_last: bool = True
               ) -> Iterator[dict[int, torch.Tensor]]:
    """Yields {layer: the site's tensor [B, T, D] (OPT's fc2 sees [B*T, D])} filled by each forward pass. With
    ``stop_after_last`` the deepest layer's hook raises StopForward (run the pass with ``hooks.run_batch``). The
    hooks are removed when the block exits, whatever happens inside it."""
    layers = sorted(set(layers))
    for layer in layers:
        subject.check_layer(layer)
    store: dict[int, torch.Tensor] = {}
    handles = []

    def keeper(layer: int, last: bool):
        def keep(x: torch.Tensor) -> None:
            store[layer] = x.detach()
            if last:
                raise StopForward

        return keep

    try:
        for layer in layers:
            handles.append(_register(subject, site, layer, keeper(layer, stop_after_last and layer == layers[-1])))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replace_site(subject: Subject, site: str, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]
                 ) -> Iterator[None]:
    """While open, the model goes on with ``fn(x)`` wherever it computed ``site`` at ``layer`` as ``x``."""
    handle = _register(subject, site, layer, fn)
    try:
        yield
    finally:
        handle.remove()
