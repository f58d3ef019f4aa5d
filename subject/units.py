"""What a layer's units are: its MLP neurons (the default), or the features of a dictionary over the layer's MLP
activations or residual stream: a sparse autoencoder, or a baseline (default basis, random directions, PCA, ICA).

    >>> space = load_unit_space("runs/l3-sae", layer=3, subject=subject)   # `autointerp sae train`, SAELens, sparsify
    >>> space.kind, space.site, space.n_units(subject)                      # ("sae:1f2e3d4c", "resid", 256)
    >>> with space.hooks(subject, [3]) as store:
    ...     run_batch(subject, inputs)
    ...     acts = space.content(store, 3, inputs, n_content=64)           # [B, 64, 256] feature activations

Capture, the agent's tools (``run_text``, quantile windows) and the pipeline all read activations through a
``UnitSpace``, so a dictionary's features are explained, simulated and scored exactly like neurons.

**Kinds.** A unit's kind (``UnitId.kind``, the ``units.kind`` column) is ``"neuron"`` or ``"<family>:<hash>"``:
the family is ``sae``, ``pca``, ``ica``, ``random`` or ``default`` (the leaderboard groups by it) and the hash is
the first 8 hex digits of the SHA-256 of the dictionary's weights file, so two dictionaries never share unit ids.

**Site.** ``"mlp"``: the input of the layer's down projection (the neurons' activations); ``"resid"``: the
residual stream after decoder block ``layer``. A dictionary's site is read from its ``metadata["site"]``
(``autointerp sae train`` writes it), from a SAELens ``hook_name`` (``...hook_resid_post`` or ``...mlp.hook_post``),
else from its input width (the model's hidden size or its MLP width); when none decides, loading fails and says to
add ``"site"`` to the cfg.json metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autointerp.errors import UsageError
from autointerp.subject.hooks import batches, content, mlp_hooks, residual_hooks, run_batch
from autointerp.subject.model import Subject
from autointerp.subject.sae import LinearDictionary, Site, SparseAutoencoder, load_dictionary

Dictionary = SparseAutoencoder | LinearDictionary
SITES = ("mlp", "resid")


@dataclass(frozen=True, eq=False)
class UnitSpace:
    """The units of a layer: neurons (``dictionary`` None, site ``mlp``), a dictionary's features at ``site``, or
    the coordinates of the residual stream itself (``RESIDUAL``: no dictionary, site ``resid``; probes read it as the
    dense ceiling of what any units of the layer can carry)."""

    kind: str = "neuron"
    site: Site = "mlp"
    dictionary: Dictionary | None = None

    @property
    def family(self) -> str:
        """"neuron", "resid", "sae", "pca", "ica", "random" or "default"."""
        return self.kind.split(":", 1)[0]

    def n_units(self, subject: Subject) -> int:
        if self.dictionary is not None:
            return self.dictionary.n_features
        return subject.d_model if self.site == "resid" else subject.n_units

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
        return None if self.dictionary is None else {"kind": self.kind, "site": self.site}

    @contextlib.contextmanager
    def hooks(self, subject: Subject, layers: Iterable[int], stop_after_last: bool = True
              ) -> Iterator[dict[int, torch.Tensor]]:
        """Yields the raw site activations filled by each forward pass; read them with ``content``."""
        layers = sorted(set(layers))
        if self.site == "mlp":
            with mlp_hooks(subject, layers, stop_after_last) as store:
                yield store
            return
        for layer in layers:
            subject.check_layer(layer)
        with residual_hooks(subject, [layer + 1 for layer in layers], stop_after_last) as store:
            yield store  # keyed by residual index: the output of block ``layer`` is ``layer + 1``

    def key(self, layer: int) -> int:
        """The ``hooks`` store index of ``layer``: residual_hooks index the stream after block l as l + 1."""
        return layer if self.site == "mlp" else layer + 1

    def content(self, store: dict[int, torch.Tensor], layer: int, inputs: torch.Tensor, n_content: int
                ) -> torch.Tensor:
        """[B, n_content, units] float32 CPU activations of the last ``n_content`` positions of ``inputs`` [B, T]
        (``hooks.content``), encoded by the dictionary when there is one."""
        acts = content(store[self.key(layer)], inputs, n_content)
        if self.dictionary is not None:
            with torch.no_grad():
                acts = self.dictionary.encode(acts).float()
        return acts


NEURONS = UnitSpace()
RESIDUAL = UnitSpace(kind="resid", site="resid")


def collect_activations(subject: Subject, windows: Iterable[list[int]], layer: int, site: Site = "resid",
                        max_tokens: int | None = None, batch_size: int = 32) -> torch.Tensor:
    """[N, d] float32 raw activations of ``site`` at ``layer`` on the content positions of ``windows`` (what a
    dictionary is fitted on and evaluated against)."""
    subject.check_layer(layer)
    space = UnitSpace(kind="raw", site=site)
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


def load_unit_space(path: str | Path, layer: int, subject: Subject) -> UnitSpace:
    """The features of the dictionary folder ``path`` as the units of ``layer`` of ``subject``; UsageError when
    the folder is not a dictionary, was fitted on another layer, or does not fit the subject's widths."""
    folder = Path(path)
    dictionary = load_dictionary(folder)
    weights = next((folder / n for n in ("dictionary.safetensors", "sae.safetensors", "sae_weights.safetensors")
                    if (folder / n).exists()))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    family = "sae" if isinstance(dictionary, SparseAutoencoder) else dictionary.name
    metadata = dictionary.metadata
    fitted_layer = metadata.get("layer")
    if fitted_layer is not None and int(fitted_layer) != layer:
        raise UsageError(f"{folder} was fitted on layer {fitted_layer}, not {layer}; use --layer {fitted_layer}")
    site = _site(folder, dictionary, subject)
    width = subject.n_units if site == "mlp" else subject.d_model
    if dictionary.d_in != width:
        raise UsageError(f"{folder} takes {dictionary.d_in}-wide input, but the {site} activations of "
                         f"{subject.name} are {width} wide; use a dictionary fitted on this model")
    return UnitSpace(kind=f"{family}:{digest}", site=site, dictionary=dictionary)


def _site(folder: Path, dictionary: Dictionary, subject: Subject) -> Site:
    metadata = dictionary.metadata
    site = metadata.get("site")
    hook = str(metadata.get("hook_name") or "")
    if site is None and hook:
        site = "resid" if hook.endswith("hook_resid_post") else "mlp" if hook.endswith("mlp.hook_post") else None
        if site is None:
            raise UsageError(f"{folder}: SAELens hook {hook!r} is not supported; use an SAE on hook_resid_post or "
                             "mlp.hook_post")
    if site is None:
        fits = [s for s, width in (("mlp", subject.n_units), ("resid", subject.d_model)) if width == dictionary.d_in]
        if len(fits) != 1:
            raise UsageError(f"{folder}: cannot tell whether it reads the MLP activations or the residual stream; "
                             'add "site": "mlp" or "resid" to the metadata in its cfg.json')
        site = fits[0]
    if site not in SITES:
        raise UsageError(f"{folder}: site {site!r} is not one of {', '.join(SITES)}")
    return site


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
