"""What a layer's units are: its MLP neurons (the default), or the features of a dictionary over the layer's MLP
activations or residual stream: a sparse autoencoder, or a baseline (default basis, random directions, PCA, ICA).

    >>> space = load_unit_space("runs/l3-sae", layer=3, subject=subject)   # ours, SAELens, sparsify, Gemma Scope
    >>> space.kind, space.site, space.n_units(subject)                      # ("sae:1f2e3d4c", "resid_post", 256)
    >>> with space.hooks(subject, [3]) as store:
    ...     run_batch(subject, inputs)
    ...     acts = space.content(store, 3, inputs, n_content=64)           # [B, 64, 256] feature activations

Capture, the agent's tools (``run_text``, quantile windows) and the pipeline all read activations through a
``UnitSpace``, so a dictionary's features are explained, simulated and scored exactly like neurons.

**Kinds.** A unit's kind (``UnitId.kind``, the ``units.kind`` column) is ``"neuron"`` or ``"<family>:<hash>"``:
the family is ``sae``, ``pca``, ``ica``, ``random`` or ``default`` (the leaderboard groups by it) and the hash is
the first 8 hex digits of the SHA-256 of the dictionary's weights file, so two dictionaries never share unit ids.

**Site** (``autointerp.subject.sites``): ``mlp`` (the input of the layer's down projection: the neurons'
activations), ``resid_pre`` / ``resid_post`` (the residual stream entering / leaving block ``layer``), ``attn_out`` /
``mlp_out`` (what the attention / MLP adds to it). A dictionary's site and layer are its own (``sae_formats``: our
metadata, SAELens' ``hook_name``, sparsify's folder, Gemma Scope's path); a ``layer`` or ``site`` asked for that
disagrees is refused. When the folder names no site, an input as wide as the MLP (and not the residual stream) reads
``mlp``; any other is refused, saying to give the site.

**Guard** (``check_reconstruction``): before a run uses an SAE, it reconstructs a few thousand tokens of its site;
an FVU above 1 (worse than the mean) means the wrong layer, site or input normalisation, and is refused unless
forced.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autointerp.errors import UsageError
from autointerp.subject.hooks import batches, content, run_batch
from autointerp.subject.model import Subject
from autointerp.subject.sae import LinearDictionary, SparseAutoencoder, evaluate
from autointerp.subject.sae_formats import load_placement, read_placement
from autointerp.subject.sites import SITES, Site, canonical_site, site_hooks, site_width

Dictionary = SparseAutoencoder | LinearDictionary
GUARD_TOKENS = 2048  # tokens the guard reconstructs
LEGACY_SITE_NAMES = {"resid_post": "resid"}  # in run keys, so runs keyed before the five sites still resume


@dataclass(frozen=True, eq=False)
class UnitSpace:
    """The units of a layer: neurons (``dictionary`` None, site ``mlp``), a dictionary's features at ``site``, or
    the coordinates of the residual stream itself (``RESIDUAL``: no dictionary, site ``resid``; probes read it as the
    dense ceiling of what any units of the layer can carry)."""

    kind: str = "neuron"
    site: Site = "mlp"
    dictionary: Dictionary | None = None
    check: dict[str, Any] | None = None  # the guard's reconstruction of the site (fvu, mean_l0, tokens), if run

    @property
    def family(self) -> str:
        """"neuron", "resid", "sae", "pca", "ica", "random" or "default"."""
        return self.kind.split(":", 1)[0]

    def n_units(self, subject: Subject) -> int:
        if self.dictionary is not None:
            return self.dictionary.n_features
        return site_width(subject, self.site)

    def activation(self, subject: Subject) -> str:
        """The nonlinearity behind these units, for the firing rule (``autointerp.subject.firing``): the model's for
        its neurons (and for the default basis over them), "relu" for SAE features, "linear" for other directions."""
        if self.dictionary is None:
            return subject.activation if self.site == "mlp" else "linear"
        if isinstance(self.dictionary, SparseAutoencoder):
            return "relu"
        return subject.activation if self.family == "default" and self.site == "mlp" else "linear"

    def identity(self) -> dict[str, Any] | None:
        """What makes these units these units, for the run key (None for neurons: keys of neuron runs stay as they
        were). The kind holds the weights' hash, so a moved folder still resumes."""
        if self.dictionary is None:
            return None
        return {"kind": self.kind, "site": LEGACY_SITE_NAMES.get(self.site, self.site)}

    def hooks(self, subject: Subject, layers: Iterable[int], stop_after_last: bool = True
              ) -> contextlib.AbstractContextManager[dict[int, torch.Tensor]]:
        """Yields {layer: the raw site activations} filled by each forward pass; read them with ``content``."""
        return site_hooks(subject, self.site, layers, stop_after_last)

    def content(self, store: dict[int, torch.Tensor], layer: int, inputs: torch.Tensor, n_content: int
                ) -> torch.Tensor:
        """[B, n_content, units] float32 CPU activations of the last ``n_content`` positions of ``inputs`` [B, T]
        (``hooks.content``), encoded by the dictionary when there is one."""
        acts = content(store[layer], inputs, n_content)
        if self.dictionary is not None:
            with torch.no_grad():
                acts = self.dictionary.encode(acts).float()
        return acts


NEURONS = UnitSpace()
RESIDUAL = UnitSpace(kind="resid", site="resid_post")


def collect_activations(subject: Subject, windows: Iterable[list[int]], layer: int, site: str = "resid_post",
                        max_tokens: int | None = None, batch_size: int = 32) -> torch.Tensor:
    """[N, d] float32 raw activations of ``site`` at ``layer`` on the content positions of ``windows`` (what a
    dictionary is fitted on and evaluated against)."""
    subject.check_layer(layer)
    space = UnitSpace(kind="raw", site=canonical_site(site))
    out, n = [], 0
    with space.hooks(subject, [layer]) as store:
        for ids, inputs in batches(subject, windows, batch_size):
            run_batch(subject, inputs)
            acts = space.content(store, layer, inputs, ids.shape[1])
            out.append(acts.reshape(-1, acts.shape[-1]))
            n += len(out[-1])
            if max_tokens is not None and n >= max_tokens:
                break
    if not out:
        raise UsageError("no window to collect activations from; use a larger corpus")
    every = torch.cat(out)
    return every if max_tokens is None else every[:max_tokens]


def load_unit_space(path: str | Path, layer: int | None, subject: Subject, site: str | None = None) -> UnitSpace:
    """The features of the dictionary folder ``path`` (any format ``sae_formats`` reads) as the units of ``layer``
    of ``subject`` at ``site`` (None: the dictionary's own); UsageError when the folder is not a dictionary, belongs
    to another layer or site, or does not fit the subject's widths."""
    placement = read_placement(path, layer)
    layer, site = placement.resolve(layer, site)
    dictionary = load_placement(placement)
    folder = placement.folder
    if layer is None:
        raise UsageError(f"{folder} does not say which layer it reads; give --layer N")
    subject.check_layer(layer)
    if site is None:
        fits = [s for s in ("mlp", "resid_post") if site_width(subject, s) == dictionary.d_in]
        if fits != ["mlp"]:
            raise UsageError(f"{folder}: cannot tell which site it reads ({', '.join(SITES)}); give --site, or add "
                             '"site" to the metadata in its cfg.json')
        site = "mlp"
    width = site_width(subject, site)
    if dictionary.d_in != width:
        raise UsageError(f"{folder} takes {dictionary.d_in}-wide input, but the {site} activations of "
                         f"{subject.name} are {width} wide; use a dictionary fitted on this model")
    with placement.weights.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:8]
    family = "sae" if isinstance(dictionary, SparseAutoencoder) else dictionary.name
    return UnitSpace(kind=f"{family}:{digest}", site=site, dictionary=dictionary)


def check_reconstruction(subject: Subject, space: UnitSpace, layer: int, windows: Iterable[list[int]],
                         force: bool = False, tokens: int = GUARD_TOKENS, batch_size: int = 32) -> UnitSpace:
    """The guard: the SAE of ``space`` reconstructs ``tokens`` tokens of its site at ``layer``; returns the space
    with ``check`` = {fvu, mean_l0, tokens}. FVU above 1 (worse than the activations' mean) raises UsageError
    unless ``force``. Baselines (no decoder) and neurons pass unchecked."""
    if not isinstance(space.dictionary, SparseAutoencoder):
        return space
    acts = collect_activations(subject, windows, layer, space.site, max_tokens=tokens, batch_size=batch_size)
    m = evaluate(space.dictionary, acts)
    check = {"fvu": m.fvu, "mean_l0": m.mean_l0, "tokens": m.n_tokens, "forced": bool(force and not m.fvu <= 1)}
    if not m.fvu <= 1 and not force:
        raise UsageError(f"the dictionary reconstructs {space.site} of layer {layer} worse than its mean (FVU "
                         f"{m.fvu:.3g}, mean L0 {m.mean_l0:.1f}, {m.n_tokens} tokens): it likely reads another layer "
                         "or site, or inputs normalised differently; check `autointerp sae inspect PATH`, or pass "
                         "--force-sae to use it anyway")
    return replace(space, check=check)


def parse_units(spec: str | None, n_units: int) -> list[int]:
    """``None``/``all`` -> every unit; ``a:b`` -> range(a, b); ``3,17,42`` -> those. Out of range -> UsageError."""
    if spec is None or spec == "all":
        return list(range(n_units))
    try:
        if ":" in spec:
            a, _, b = spec.partition(":")
            units = list(range(int(a or 0), int(b) if b else n_units))
        else:
            units = sorted({int(u) for u in spec.split(",") if u.strip()})
    except ValueError:
        raise UsageError(f"--units {spec!r} is not understood; use a range like 0:32 or a list like 3,17,42")
    bad = [u for u in units if not 0 <= u < n_units]
    if bad or not units:
        raise UsageError(f"--units {spec!r} is out of range: this layer has units 0..{n_units - 1}")
    return units


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all`` -> every layer; ``13`` or ``3,7`` or ``0:4`` -> those (0-based). Out of range -> UsageError."""
    if spec == "all":
        return list(range(n_layers))
    try:
        layers = parse_units(spec, n_layers)
    except UsageError:
        raise UsageError(f"--layer {spec!r} is not valid: use all, N, N:M or N,M with layers 0..{n_layers - 1}")
    return layers
