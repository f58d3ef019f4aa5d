"""Dictionary folders as researchers have them: what a folder is (format), where it belongs (site and layer), and its
weights as a ``SparseAutoencoder`` (or a baseline ``LinearDictionary``).

    >>> p = read_placement("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82")
    >>> p.format, p.site, p.layer                    # ("gemma-scope", "resid_post", 12)
    >>> p.resolve(layer=None, site=None)             # (12, "resid_post"): the layer defaults to the SAE's own
    >>> sae = load_placement(p)                      # weights read only now; load_sae(path) does both

==============  ========================================================  ======================================
format          files                                                     site and layer read from
==============  ========================================================  ======================================
``autointerp``  ``cfg.json`` (``format: autointerp-sae`` or a baseline's  ``metadata.site`` / ``metadata.layer``
                ``autointerp-dictionary``) + ``sae.safetensors`` /
                ``dictionary.safetensors``
``saelens``     ``cfg.json`` + ``sae_weights.safetensors``                ``hook_name`` (``blocks.L.hook_X``, top
                                                                          level or in ``metadata``), ``hook_layer``
``sparsify``    ``cfg.json`` + ``sae.safetensors``, one folder per        the folder's name (hookpoint):
                hookpoint; a checkpoint holds several (``layers.N/``)     ``layers.N`` resid_post, ``layers.N.mlp``
                                                                          mlp_out, ``layers.N.self_attn`` attn_out
``gemma-scope`` ``params.npz`` (W_enc, W_dec, b_enc, b_dec, threshold)    the path: ``layer_N``, the release's
                                                                          ``-res`` / ``-mlp`` (or a site name)
==============  ========================================================  ======================================

A layer or site given by the user must agree with the dictionary's own (``Placement.resolve``); ``resid_pre`` of
L+1 and ``resid_post`` of L are one tensor, so either spelling of it is accepted when the site is given too.
Encoding options are honoured or refused by name, never ignored: SAELens ``apply_b_dec_to_input`` (honoured), a
``scaling_factor`` tensor (folded into the decoder: feature activations are unchanged), ``normalize_activations``
other than none (refused), heads (``hook_head_index``, refused); gated SAELens SAEs load as the equivalent JumpReLU
(gate open exactly when the magnitude pre-activation passes ``b_mag - b_gate * exp(r_mag)``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autointerp.errors import UsageError
from autointerp.subject.sae import LinearDictionary, SparseAutoencoder, _from_weights
from autointerp.subject.sites import SITES, canonical_site

SAELENS_HOOKS = {"hook_resid_pre": "resid_pre", "hook_resid_post": "resid_post", "hook_attn_out": "attn_out",
                 "hook_mlp_out": "mlp_out", "mlp.hook_post": "mlp"}
SPARSIFY_SUFFIX = {"": "resid_post", "mlp": "mlp_out", "self_attn": "attn_out", "attention": "attn_out",
                   "attn": "attn_out", "mlp.act_fn": "mlp", "mlp.down_proj": None}
GEMMA_SCOPE_KINDS = {"res": "resid_post", "mlp": "mlp_out"}


@dataclass(frozen=True)
class Placement:
    """What a dictionary folder is and where it belongs; weights are not read (``load_placement`` does)."""

    format: str  # autointerp, autointerp-dictionary, saelens, sparsify, gemma-scope
    folder: Path  # the folder holding the weights (for a multi-layer sparsify checkpoint: the chosen layer's)
    weights: Path  # the weights file, hashed into the units' kind
    site: str | None  # canonical site, None when the folder does not say
    layer: int | None
    source: str = ""  # what the site and layer were read from (a hook name, a folder name), for messages
    cfg: dict[str, Any] = field(default_factory=dict, repr=False)

    def resolve(self, layer: int | None, site: str | None, flag: str = "--layer") -> tuple[int | None, str | None]:
        """The (layer, site) to hook: the dictionary's own where the user gave none; UsageError when the user's
        disagree. ``resid_pre`` of L+1 is ``resid_post`` of L: asking for either is agreeing."""
        site = canonical_site(site) if site else None
        if self.layer is None or self.site is None:  # the folder does not say all: the user fills in the rest
            fits = (self.layer is None or layer in (None, self.layer)) and (
                self.site is None or site in (None, self.site))
            if fits:
                return (self.layer if layer is None else layer), (self.site if site is None else site)
        else:
            same = self.same_tensor()
            fits = [(lay, s) for lay, s in same if layer in (None, lay) and site in (None, s)]
            if fits and (site is not None or fits[0] == (self.layer, self.site)):  # another spelling needs --site
                return fits[0]
        own = f"{self.site or 'an unknown site'} of layer {'?' if self.layer is None else self.layer}"
        asked = f"{site or self.site or '?'} of layer {layer if layer is not None else self.layer}"
        also = "".join(f" or --layer {lay} --site {s}" for lay, s in self.same_tensor()[1:])
        raise UsageError(f"{self.folder} reads {own} ({self.source or self.format}), not {asked}; drop {flag} "
                         f"and --site to use its own{also}, or give a dictionary fitted there")

    def same_tensor(self) -> list[tuple[int, str]]:
        """Every (layer, site) naming the tensor this dictionary reads: its own first."""
        if self.layer is None or self.site is None:
            return []
        same = [(self.layer, self.site)]
        if self.site == "resid_post":
            same.append((self.layer + 1, "resid_pre"))
        if self.site == "resid_pre" and self.layer > 0:
            same.append((self.layer - 1, "resid_post"))
        return same


def _read_cfg(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "cfg.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{folder} has no readable cfg.json ({e}); give an SAE folder (cfg.json + safetensors, or "
                         "Gemma Scope's params.npz)")


def _saelens_place(cfg: dict[str, Any]) -> tuple[str | None, int | None, str]:
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = str(cfg.get("hook_name") or meta.get("hook_name") or cfg.get("hook_point") or "")  # hook_point: before 1.0
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", hook)
    layer = int(m.group(1)) if m else cfg.get("hook_layer", meta.get("hook_layer", cfg.get("hook_point_layer")))
    site = SAELENS_HOOKS.get(m.group(2)) if m else None
    return site, None if layer is None else int(layer), hook


def _sparsify_place(name: str) -> tuple[str | None, int | None]:
    m = re.fullmatch(r"(?:.*\.)?(?:layers|h)\.(\d+)(?:\.(.+))?", name)
    if not m:
        return None, None
    return SPARSIFY_SUFFIX.get(m.group(2) or ""), int(m.group(1))


def _gemma_scope_place(path: Path) -> tuple[str | None, int | None]:
    site = layer = None
    for part in path.absolute().parts:  # not resolved: a Hugging Face cache links its files elsewhere
        if m := re.fullmatch(r"layer_(\d+)", part):
            layer = int(m.group(1))
        if m := re.search(r"gemma-scope.*-(res|mlp|att|transcoders)(?:-canonical)?$", part):  # models--google--...
            if m.group(1) not in GEMMA_SCOPE_KINDS:
                raise UsageError(f"{path}: Gemma Scope {m.group(1)} dictionaries are not supported (attention SAEs "
                                 "read the heads before the output projection); use a -res or -mlp release")
            site = GEMMA_SCOPE_KINDS[m.group(1)]
        if part in SITES:
            site = part
    return site, layer


def read_placement(path: str | Path, layer: int | None = None) -> Placement:
    """Detect the format of ``path`` (a folder, or a ``params.npz`` / ``cfg.json`` inside one) and read where the
    dictionary belongs. ``layer`` picks the layer of a multi-layer sparsify checkpoint."""
    path = Path(path)
    if path.is_file() and path.name in ("params.npz", "cfg.json"):
        path = path.parent
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder; give a dictionary folder (cfg.json + safetensors, or Gemma "
                         "Scope's params.npz), e.g. one written by `autointerp sae train`")
    if (path / "params.npz").exists():
        site, at = _gemma_scope_place(path)
        return Placement("gemma-scope", path, path / "params.npz", site, at, "its path")
    if not (path / "cfg.json").exists():
        return _sparsify_checkpoint(path, layer)
    cfg = _read_cfg(path)
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    if cfg.get("format") in ("autointerp-sae", "autointerp-dictionary") or (path / "dictionary.safetensors").exists():
        own = "autointerp-dictionary" if (path / "dictionary.safetensors").exists() else "autointerp"
        site = meta.get("site")
        site = canonical_site(site, f"{path}: metadata site") if site else None
        at = meta.get("layer")
        return Placement(own, path, path / ("dictionary.safetensors" if own != "autointerp" else "sae.safetensors"),
                         site, None if at is None else int(at), "its metadata", cfg)
    if (path / "sae_weights.safetensors").exists():
        site, at, hook = _saelens_place(cfg)
        return Placement("saelens", path, path / "sae_weights.safetensors", site, at, hook or "no hook_name", cfg)
    if (path / "sae.safetensors").exists():
        site, at = _sparsify_place(path.name)
        return Placement("sparsify", path, path / "sae.safetensors", site, at, f"folder {path.name}", cfg)
    raise UsageError(f"{path}: no sae.safetensors, sae_weights.safetensors or params.npz next to cfg.json")


def _sparsify_checkpoint(path: Path, layer: int | None) -> Placement:
    """A folder of dictionaries: a sparsify checkpoint (one sub-folder per hookpoint) or a Gemma Scope release
    (``params.npz`` files below it): the one at ``layer`` (needed when there are several)."""
    subs = [p for p in sorted(path.iterdir()) if (p / "cfg.json").exists() and (p / "sae.safetensors").exists()]
    subs = subs or sorted(p.parent for p in path.rglob("params.npz"))
    if not subs:
        raise UsageError(f"{path} has no cfg.json; give a dictionary folder (cfg.json + safetensors, or Gemma "
                         "Scope's params.npz)")
    placed = [read_placement(p) for p in subs]
    layers = sorted({p.layer for p in placed if p.layer is not None})
    if layer is None and len(placed) > 1:
        raise UsageError(f"{path} holds dictionaries for layers {', '.join(map(str, layers))}; choose one with "
                         "--layer N")
    chosen = placed if layer is None else [p for p in placed if p.layer == layer]
    if len(chosen) != 1:
        names = ", ".join(str(p.folder.relative_to(path)) for p in (chosen or placed))
        raise UsageError(f"{path} holds no single dictionary for layer {layer} (it holds {names}); give its "
                         "sub-folder or another --layer")
    return chosen[0]


# -- weights -------------------------------------------------------------------------------------------------------
def load_dictionary(folder: str | Path, layer: int | None = None) -> SparseAutoencoder | LinearDictionary:
    """A dictionary folder in any format read here: an SAE, or a baseline written by ``LinearDictionary.save``.
    ``layer`` picks the layer of a multi-layer checkpoint."""
    return load_placement(read_placement(folder, layer))


def load_sae(folder: str | Path, layer: int | None = None) -> SparseAutoencoder:
    """``load_dictionary`` for an SAE; UsageError for a baseline."""
    dictionary = load_dictionary(folder, layer)
    if not isinstance(dictionary, SparseAutoencoder):
        raise UsageError(f"{folder} holds a {dictionary.name} baseline, not an SAE")
    return dictionary


def load_placement(p: Placement) -> SparseAutoencoder | LinearDictionary:
    """The dictionary's weights as a ``SparseAutoencoder`` (or an autointerp baseline ``LinearDictionary``), its
    metadata holding the format, site and layer."""
    place = {"format": p.format, "site": p.site, "layer": p.layer}
    if p.format == "autointerp-dictionary":
        from safetensors.torch import load_file

        w = load_file(str(p.weights))
        return LinearDictionary(p.cfg["name"], w["directions"], w["center"], p.cfg["split_signs"],
                                       p.cfg.get("metadata", {}))
    if p.format == "autointerp":
        from safetensors.torch import load_file

        kw = {k: v for k, v in p.cfg.items() if k != "format"}
        return _from_weights(load_file(str(p.weights)), **kw)
    loader = {"saelens": _saelens, "sparsify": _sparsify, "gemma-scope": _gemma_scope}[p.format]
    weights, kw = loader(p)
    kw["metadata"] = {**place, **kw.get("metadata", {})}
    return _from_weights({k: v.float().contiguous() for k, v in weights.items()}, tied=False,
                                normalize_decoder=False, **kw)


def _saelens(p: Placement):
    import torch
    from safetensors.torch import load_file

    cfg, folder = p.cfg, p.folder
    w = load_file(str(p.weights))
    arch = cfg.get("architecture", "standard")
    act_kwargs = cfg.get("activation_fn_kwargs") or {}
    act_fn = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    if arch == "standard" and act_fn == "topk":
        arch = "topk"  # older SAELens wrote topk SAEs as standard with a topk activation function
    elif act_fn not in ("relu", "topk", None):
        raise UsageError(f"{folder}: SAELens activation {act_fn!r} is not supported; use relu or topk")
    if arch not in ("standard", "topk", "jumprelu", "gated"):
        raise UsageError(f"{folder}: SAELens architecture {arch!r} is not supported; use standard, topk, "
                         "jumprelu or gated")
    if cfg.get("normalize_activations") not in (None, "none"):
        raise UsageError(f"{folder}: normalize_activations {cfg['normalize_activations']!r} is not supported "
                         "(inputs would be rescaled); fold the normalisation into the weights or use one with none")
    if cfg.get("hook_head_index") is not None:
        raise UsageError(f"{folder}: SAEs on one attention head (hook_head_index) are not supported")
    W_dec, W_enc, b_enc = w["W_dec"].float(), w["W_enc"].float().T, w["b_enc"].float()
    if "scaling_factor" in w:  # fine-tuned per-feature scale, applied to the features before decoding: fold it in
        W_dec = W_dec * w["scaling_factor"].float()[:, None]
    weights = {"W_dec": W_dec, "b_dec": w["b_dec"]}
    activation = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "jumprelu"}[arch]
    if arch == "gated":
        scale = w["r_mag"].float().exp()
        W_enc, b_enc = W_enc * scale[:, None], w["b_mag"].float()
        weights["threshold"] = w["b_mag"].float() - w["b_gate"].float() * scale
    elif arch == "jumprelu":
        weights["threshold"] = w["threshold"] if "threshold" in w else torch.exp(w["log_threshold"].float())
    weights.update(W_enc=W_enc, b_enc=b_enc)
    k = cfg.get("k", act_kwargs.get("k"))
    return weights, dict(d_in=W_enc.shape[1], d_hidden=W_enc.shape[0], activation=activation, k=k,
                         pre_bias=bool(cfg.get("apply_b_dec_to_input", True)),
                         metadata={"hook_name": p.source if p.source != "no hook_name" else None})


def _sparsify(p: Placement):
    from safetensors.torch import load_file

    cfg, folder = p.cfg, p.folder
    w = load_file(str(p.weights))
    if cfg.get("transcode") or cfg.get("skip_connection") or "W_skip" in w:
        raise UsageError(f"{folder}: sparsify transcoders and skip connections are not supported; use a plain SAE")
    if cfg.get("activation", "topk") != "topk":
        raise UsageError(f"{folder}: sparsify activation {cfg['activation']!r} is not supported; use topk")
    d_hidden, d_in = w["encoder.weight"].shape
    return ({"W_enc": w["encoder.weight"], "b_enc": w["encoder.bias"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]},
            dict(d_in=d_in, d_hidden=d_hidden, activation="topk", k=cfg["k"], pre_bias=True))


def _gemma_scope(p: Placement):
    import numpy as np
    import torch

    try:
        with np.load(p.weights) as npz:
            w = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in npz.files}
    except (OSError, ValueError) as e:
        raise UsageError(f"{p.weights} is not a readable .npz file ({e})")
    missing = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"} - set(w)
    if missing:
        raise UsageError(f"{p.weights} lacks {', '.join(sorted(missing))}; a Gemma Scope params.npz holds W_enc, "
                         "W_dec, b_enc, b_dec and threshold")
    W_enc = w["W_enc"].T
    return ({"W_enc": W_enc, "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
             "threshold": w["threshold"]},
            dict(d_in=W_enc.shape[1], d_hidden=W_enc.shape[0], activation="jumprelu", pre_bias=False))


def describe(p: Placement, dictionary) -> dict[str, Any]:
    """What ``autointerp sae inspect`` prints: format, site, layer, widths, activation and encoding options."""
    row: dict[str, Any] = {"path": str(p.folder), "format": p.format, "site": p.site, "layer": p.layer,
                           "from": p.source, "d_in": dictionary.d_in, "features": dictionary.n_features}
    if p.format == "autointerp-dictionary":
        row.update(activation="linear", options={"baseline": dictionary.name, "split_signs": dictionary.split_signs})
        return row
    options = {"subtract b_dec from input": dictionary.pre_bias, "tied": dictionary.tied}
    if p.format == "saelens":
        options.update(architecture=p.cfg.get("architecture", "standard"),
                       normalize_activations=p.cfg.get("normalize_activations", "none"))
    row.update(activation=dictionary.activation + (f" (k={dictionary.k})" if dictionary.k else ""), options=options)
    return row
