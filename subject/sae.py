"""Sparse autoencoders and baseline dictionaries over one layer's activations (docs/methods.md §7, Cunningham et al.).

    >>> from autointerp.subject.sae import train_sae, SAETrainConfig, evaluate, spliced_loss
    >>> from autointerp.subject.units import collect_activations
    >>> acts = collect_activations(subject, windows, layer=3, site="resid_post")        # [N, d_model], BOS excluded
    >>> sae = train_sae(acts, SAETrainConfig(ratio=4, alpha=1e-3))
    >>> evaluate(sae, acts)                                                        # FVU, mean L0, dead features
    >>> spliced_loss(subject, sae, windows, layer=3, site="resid_post")              # (clean loss, loss with x_hat)
    >>> sae.save("runs/sae-l3"); sae_formats.load_sae("runs/sae-l3")              # also SAELens, sparsify, Gemma Scope
    >>> features = sae.encode(acts)                                                # [N, d_hidden]: usable as units

**Model.** ``f = act(W_enc (x - b_dec * pre_bias) + b_enc)``, ``x_hat = f W_dec + b_dec`` with ``W_enc``, ``W_dec``
[d_hidden, d_in]. *Tied* (the paper's SAE): ``W_dec`` is ``W_enc`` with every row renormalised to unit norm in
every forward pass (the encoder uses the renormalised rows too: ``c = ReLU(M x + b)``, ``x_hat = M^T c``), and there
is no decoder bias. *Untied* (for MLP activations): its own ``W_dec`` (rows renormalised in every forward pass when
``normalize_decoder``) and a decoder bias ``b_dec`` that is also subtracted from the input (``pre_bias``).
Activations: ``relu``; ``topk`` (keep the k largest pre-activations, then ReLU); ``jumprelu`` (ReLU(pre) where
pre > threshold).

**Loss** (``train_sae``): ``mean over tokens of sum over dimensions of (x - x_hat)^2 + alpha * mean over tokens of
||f||_1``, Adam. alpha depends on this normalisation and on the scale of x. Dictionary ratio R = d_hidden / d_in.

**Sites** (``autointerp.subject.sites``): ``resid_pre`` / ``resid_post`` (the residual stream entering / leaving
decoder block ``layer``), ``attn_out`` / ``mlp_out`` (what the attention / MLP adds to the stream) and ``mlp`` (the MLP
activations: the input of the down projection, the units of capture). Only content positions are collected,
replaced and scored (never the BOS).

**Metrics.** FVU = sum ||x - x_hat||^2 / sum ||x - mean x||^2; mean L0 = mean number of features > 0 per token; dead
features = never > 0 on the evaluation tokens. ``spliced_loss``: mean next-token cross-entropy of the predictions
made at content positions (the BOS position's prediction excluded), clean and with the site's content positions
replaced by the reconstruction (``sites.replace_site``: the same hook that capture reads).

**On disk** (``save`` / ``sae_formats.load_sae``): a folder with ``cfg.json`` (``"format": "autointerp-sae"`` and the
constructor arguments: d_in, d_hidden, tied, activation, k, pre_bias, normalize_decoder, plus free ``metadata``) and
``sae.safetensors`` with ``W_enc`` [d_hidden, d_in], ``b_enc`` [d_hidden], ``b_dec`` [d_in], and ``W_dec``
[d_hidden, d_in] (untied only) / ``threshold`` [d_hidden] (jumprelu only). ``sae_formats.load_sae`` also reads
SAELens, sparsify and Gemma Scope folders.

**Baselines** (``LinearDictionary``): the default basis (identity), random unit directions, PCA and FastICA fitted on
the same activations; ``encode(x) = (x - center) @ directions.T``. With ``split_signs`` each direction gives two
features, ReLU(p) and ReLU(-p), so that every feature is a non-negative "unit" that fires (> 0) like a neuron.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from autointerp.errors import UsageError
from autointerp.subject.hooks import batches
from autointerp.subject.model import Subject
from autointerp.subject.sites import Site, replace_site

Activation = Literal["relu", "topk", "jumprelu"]
FORMAT = "autointerp-sae"
DICTIONARY_FORMAT = "autointerp-dictionary"


class SparseAutoencoder(nn.Module):
    """One dictionary layer; see the module docstring for the equations."""

    def __init__(self, d_in: int, d_hidden: int, tied: bool = True, activation: Activation = "relu",
                 k: int | None = None, pre_bias: bool = False, normalize_decoder: bool = True,
                 metadata: dict[str, Any] | None = None):
        super().__init__()
        if activation == "topk" and not k:
            raise UsageError("a topk SAE needs k (the number of active features per token)")
        self.d_in, self.d_hidden, self.tied, self.activation, self.k = d_in, d_hidden, tied, activation, k
        self.pre_bias, self.normalize_decoder = pre_bias, normalize_decoder
        self.metadata = dict(metadata or {})
        self.W_enc = nn.Parameter(F.normalize(torch.randn(d_hidden, d_in), dim=1))
        self.b_enc = nn.Parameter(torch.zeros(d_hidden))
        self.b_dec = nn.Parameter(torch.zeros(d_in), requires_grad=not tied)
        self.W_dec = None if tied else nn.Parameter(self.W_enc.detach().clone())
        if activation == "jumprelu":
            self.register_buffer("threshold", torch.zeros(d_hidden))

    @property
    def n_features(self) -> int:
        return self.d_hidden

    def decoder_weight(self) -> torch.Tensor:
        """[d_hidden, d_in] rows = the features' directions in activation space."""
        w = self.W_enc if self.tied else self.W_dec
        return F.normalize(w, dim=1) if self.normalize_decoder else w

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_hidden] non-negative feature activations."""
        w = self.decoder_weight() if self.tied else self.W_enc
        x = x.to(w.dtype)
        pre = F.linear(x - self.b_dec if self.pre_bias else x, w, self.b_enc)
        if self.activation == "topk":
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        if self.activation == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        return pre.relu()

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.decoder_weight() + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, f)."""
        f = self.encode(x)
        return self.decode(f), f

    def config(self) -> dict[str, Any]:
        return {"format": FORMAT, "d_in": self.d_in, "d_hidden": self.d_hidden, "tied": self.tied,
                "activation": self.activation, "k": self.k, "pre_bias": self.pre_bias,
                "normalize_decoder": self.normalize_decoder, "metadata": self.metadata}

    def save(self, folder: str | Path) -> Path:
        """Write ``cfg.json`` and ``sae.safetensors`` (layout in the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cfg.json").write_text(json.dumps(self.config(), indent=2))
        save_file({name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()},
                  str(folder / "sae.safetensors"))
        return folder


# -- loading ---------------------------------------------------------------------------------------------------------
def _from_weights(weights: dict[str, torch.Tensor], **kw) -> SparseAutoencoder:
    sae = SparseAutoencoder(**kw)
    sae.load_state_dict(weights)
    return sae.eval()


# -- training and metrics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SAETrainConfig:
    ratio: float = 4.0  # R = d_hidden / d_in
    alpha: float = 1e-3  # L1 coefficient (see the loss normalisation in the module docstring)
    tied: bool = True  # the paper's tied SAE; False for the untied variant (MLP activations)
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 10
    seed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)  # saved with the SAE (site, layer, model, ...)


def sae_loss(sae: SparseAutoencoder, x: torch.Tensor, alpha: float) -> torch.Tensor:
    x_hat, f = sae(x)
    return (x - x_hat).pow(2).sum(-1).mean() + alpha * f.abs().sum(-1).mean()


def train_sae(acts: torch.Tensor, cfg: SAETrainConfig = SAETrainConfig()) -> SparseAutoencoder:
    """Fit an SAE to ``acts`` [N, d_in] with Adam (the untied one starts with b_dec at the data mean)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    acts = acts.float()
    d_in = acts.shape[1]
    sae = SparseAutoencoder(d_in, max(1, round(cfg.ratio * d_in)), tied=cfg.tied, pre_bias=not cfg.tied,
                            metadata={**cfg.metadata, "alpha": cfg.alpha, "ratio": cfg.ratio})
    if not cfg.tied:
        with torch.no_grad():
            sae.b_dec.copy_(acts.mean(0))
    opt = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=cfg.lr)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(acts), generator=gen).split(cfg.batch_size):
            loss = sae_loss(sae, acts[idx], cfg.alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return sae.eval()


@dataclass(frozen=True)
class SAEMetrics:
    n_tokens: int
    n_features: int
    fvu: float | None  # fraction of variance unexplained (None: the dictionary has no decoder)
    mean_l0: float  # features > 0 per token
    dead_features: int  # never > 0 on these tokens


@torch.no_grad()
def evaluate(sae: SparseAutoencoder, acts: torch.Tensor, batch_size: int = 4096) -> SAEMetrics:
    acts = acts.float()
    err, l0 = 0.0, 0
    alive = torch.zeros(sae.d_hidden, dtype=torch.bool)
    for x in acts.split(batch_size):
        x_hat, f = sae(x)
        err += float((x - x_hat).pow(2).sum())
        active = f > 0
        l0 += int(active.sum())
        alive |= active.any(0)
    var = float((acts - acts.mean(0)).pow(2).sum())
    return SAEMetrics(n_tokens=len(acts), n_features=sae.d_hidden, fvu=err / var if var > 0 else float("nan"),
                      mean_l0=l0 / max(len(acts), 1), dead_features=int((~alive).sum()))


@torch.no_grad()
def dictionary_metrics(dictionary: SparseAutoencoder | LinearDictionary, acts: torch.Tensor,
                       batch_size: int = 4096) -> SAEMetrics:
    """``evaluate`` for an SAE; for a baseline (no decoder) the same mean L0 and dead features, and FVU None."""
    if isinstance(dictionary, SparseAutoencoder):
        return evaluate(dictionary, acts, batch_size)
    l0, alive = 0, torch.zeros(dictionary.n_features, dtype=torch.bool)
    for x in acts.float().split(batch_size):
        active = dictionary.encode(x) > 0
        l0 += int(active.sum())
        alive |= active.any(0)
    return SAEMetrics(n_tokens=len(acts), n_features=dictionary.n_features, fvu=None,
                      mean_l0=l0 / max(len(acts), 1), dead_features=int((~alive).sum()))


# -- activations and splicing ----------------------------------------------------------------------------------------
@torch.no_grad()
@contextmanager
def splice(subject: Subject, sae: SparseAutoencoder, layer: int, site: Site, seq_len: int, n_content: int
           ) -> Iterator[None]:
    """While open, ``site`` at ``layer`` is replaced by its reconstruction on the last ``n_content`` of the
    ``seq_len`` positions of every sequence (the content positions; the BOS is left alone)."""

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(-1, seq_len, x.shape[-1]).clone()  # OPT's MLP sees [B*T, D]
        y[:, seq_len - n_content :] = sae(y[:, seq_len - n_content :].float())[0].to(y.dtype)
        return y.reshape(x.shape)

    with replace_site(subject, site, layer, reconstruct):
        yield


@torch.no_grad()
def spliced_loss(subject: Subject, sae: SparseAutoencoder, windows: Iterable[list[int]], layer: int,
                 site: Site = "resid_post", batch_size: int = 32) -> tuple[float, float]:
    """(clean loss, loss with the site replaced by the SAE's reconstruction), nats per predicted token."""
    clean, spliced, count = 0.0, 0.0, 0
    for ids, inputs in batches(subject, windows, batch_size):
        T, W = inputs.shape[1], ids.shape[1]
        targets = inputs[:, T - W + 1 :].reshape(-1)

        def loss() -> float:
            logits = subject.model(input_ids=inputs, use_cache=False).logits[:, T - W : T - 1].float()
            return float(F.cross_entropy(logits.reshape(len(targets), -1), targets, reduction="sum"))

        clean += loss()
        with splice(subject, sae, layer, site, T, W):
            spliced += loss()
        count += len(targets)
    return clean / max(count, 1), spliced / max(count, 1)


# -- baselines -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearDictionary:
    """A fixed linear dictionary: ``encode(x) = (x - center) @ directions.T``, sign-split when ``split_signs``."""

    name: str  # "default", "random", "pca" or "ica"
    directions: torch.Tensor  # [F, d]
    center: torch.Tensor  # [d]
    split_signs: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)  # saved with it (site, layer, model, ...)

    @property
    def n_features(self) -> int:
        return len(self.directions) * (2 if self.split_signs else 1)

    @property
    def d_in(self) -> int:
        return self.directions.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        p = (x.float() - self.center) @ self.directions.T
        return torch.cat([p.relu(), (-p).relu()], dim=-1) if self.split_signs else p

    def save(self, folder: str | Path) -> Path:
        """Write ``cfg.json`` (``"format": "autointerp-dictionary"``) and ``dictionary.safetensors``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"format": DICTIONARY_FORMAT, "name": self.name, "split_signs": self.split_signs,
               "metadata": self.metadata}
        (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
        save_file({"directions": self.directions.contiguous(), "center": self.center.contiguous()},
                  str(folder / "dictionary.safetensors"))
        return folder


def default_basis(d: int, split_signs: bool = False) -> LinearDictionary:
    """The activations' own coordinates (for MLP activations: the units themselves)."""
    return LinearDictionary("default", torch.eye(d), torch.zeros(d), split_signs)


def random_dictionary(acts: torch.Tensor, n: int, seed: int = 0, split_signs: bool = True) -> LinearDictionary:
    """``n`` random unit directions, centred on the activations' mean."""
    directions = F.normalize(torch.randn(n, acts.shape[1], generator=torch.Generator().manual_seed(seed)), dim=1)
    return LinearDictionary("random", directions, acts.float().mean(0), split_signs)


def pca_dictionary(acts: torch.Tensor, n: int, split_signs: bool = True) -> LinearDictionary:
    """The top-``n`` principal directions (scikit-learn PCA, unwhitened)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n).fit(acts.float().numpy())
    return LinearDictionary("pca", torch.tensor(pca.components_, dtype=torch.float32),
                            torch.tensor(pca.mean_, dtype=torch.float32), split_signs)


def ica_dictionary(acts: torch.Tensor, n: int, seed: int = 0, split_signs: bool = True) -> LinearDictionary:
    """``n`` independent components (scikit-learn FastICA, unit-variance sources): encode = the sources."""
    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=n, whiten="unit-variance", random_state=seed, max_iter=500).fit(acts.float().numpy())
    return LinearDictionary("ica", torch.tensor(ica.components_, dtype=torch.float32),
                            torch.tensor(ica.mean_, dtype=torch.float32), split_signs)
