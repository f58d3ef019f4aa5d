"""Write one SAE in another tool's layout (``autointerp sae export``): SAELens, sparsify, Gemma Scope, or ours. The
encoder is written exactly as ``SparseAutoencoder.encode`` uses it (a tied SAE's renormalised rows), so the folder,
read back by ``sae_formats``, gives the same feature activations; the site and layer go where that tool keeps them.

    >>> export(sae, "l4-pre", "saelens", site="resid_pre", layer=4)     # cfg.json hook_name blocks.4.hook_resid_pre
    >>> export(sae, "gs", "gemma-scope", site="resid_post", layer=3)   # gs/gemma-scope-res/layer_3/width_256/
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from autointerp.errors import UsageError
from autointerp.subject.sae import SparseAutoencoder
from autointerp.subject.sae_formats import GEMMA_SCOPE_KINDS, SAELENS_HOOKS
from autointerp.subject.sites import canonical_site

FORMATS = ("autointerp", "saelens", "sparsify", "gemma-scope")
SPARSIFY_NAMES = {"resid_post": "layers.{layer}", "mlp_out": "layers.{layer}.mlp",
                  "attn_out": "layers.{layer}.self_attn", "mlp": "layers.{layer}.mlp.act_fn"}


@torch.no_grad()
def _tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """The weights as ``encode`` / ``decode`` use them: W_enc and W_dec [d_hidden, d_in], biases, threshold."""
    out = {"W_enc": (sae.decoder_weight() if sae.tied else sae.W_enc).detach().float().clone(),
           "W_dec": sae.decoder_weight().detach().float().clone(), "b_enc": sae.b_enc.detach().float().clone(),
           "b_dec": sae.b_dec.detach().float().clone()}
    if sae.activation == "jumprelu":
        out["threshold"] = sae.threshold.detach().float().clone()
    return out


def export(sae: SparseAutoencoder, out: str | Path, fmt: str, site: str, layer: int) -> Path:
    """Write ``sae`` (reading ``site`` at ``layer``) to the new folder ``out`` in layout ``fmt``; returns the folder
    that holds the weights (Gemma Scope and sparsify nest it as those tools do)."""
    site = canonical_site(site)
    if fmt not in FORMATS:
        raise UsageError(f"--to {fmt!r} is not a layout; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty folder; choose another --out")
    w = _tensors(sae)
    if fmt == "autointerp":
        clone = SparseAutoencoder(sae.d_in, sae.d_hidden, tied=sae.tied, activation=sae.activation, k=sae.k,
                                  pre_bias=sae.pre_bias, normalize_decoder=sae.normalize_decoder,
                                  metadata={**sae.metadata, "site": site, "layer": layer})
        clone.load_state_dict(sae.state_dict())
        return clone.save(out)
    if fmt == "saelens":
        return _saelens(w, sae, out, site, layer)
    if fmt == "sparsify":
        return _sparsify(w, sae, out, site, layer)
    return _gemma_scope(w, sae, out, site, layer)


def _saelens(w, sae: SparseAutoencoder, out: Path, site: str, layer: int) -> Path:
    hook = {v: k for k, v in SAELENS_HOOKS.items()}[site]
    arch = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}[sae.activation]
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_hidden, "hook_name": f"blocks.{layer}.{hook}",
           "hook_layer": layer, "hook_head_index": None, "apply_b_dec_to_input": sae.pre_bias,
           "normalize_activations": "none", "dtype": "float32", "model_name": sae.metadata.get("model")}
    if sae.k:
        cfg["k"] = sae.k
    tensors = {"W_enc": w["W_enc"].T.contiguous(), "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]}
    if "threshold" in w:
        tensors["threshold"] = w["threshold"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2))
    save_file(tensors, str(out / "sae_weights.safetensors"))
    return out


def _sparsify(w, sae: SparseAutoencoder, out: Path, site: str, layer: int) -> Path:
    if sae.activation != "topk" or not sae.pre_bias:
        raise UsageError("sparsify reads TopK SAEs that subtract b_dec from their input; this one is "
                         f"{sae.activation} (pre_bias {sae.pre_bias}): export it as saelens or gemma-scope")
    if site == "resid_pre":
        if layer == 0:
            raise UsageError("sparsify names no hookpoint for resid_pre of layer 0; export it as saelens")
        site, layer = "resid_post", layer - 1
    folder = out / SPARSIFY_NAMES[site].format(layer=layer)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"activation": "topk", "k": sae.k, "num_latents": sae.d_hidden, "expansion_factor": 0,
           "normalize_decoder": True, "multi_topk": False, "skip_connection": False, "transcode": False,
           "d_in": sae.d_in}
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    save_file({"encoder.weight": w["W_enc"], "encoder.bias": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]},
              str(folder / "sae.safetensors"))
    return folder


def _gemma_scope(w, sae: SparseAutoencoder, out: Path, site: str, layer: int) -> Path:
    if sae.activation == "topk" or sae.pre_bias and bool(w["b_dec"].any()):
        raise UsageError("Gemma Scope's params.npz holds JumpReLU SAEs that do not subtract b_dec from their input; "
                         "this one cannot be written exactly that way: export it as saelens")
    kind = {v: k for k, v in GEMMA_SCOPE_KINDS.items()}.get(site)
    release = f"gemma-scope-{kind}" if kind else site  # the site's own name where Gemma Scope has no release
    folder = out / release / f"layer_{layer}" / f"width_{sae.d_hidden}"
    folder.mkdir(parents=True, exist_ok=True)
    threshold = w.get("threshold", torch.zeros(sae.d_hidden))  # ReLU(pre) * (pre > 0) is ReLU(pre)
    np.savez(folder / "params.npz", W_enc=w["W_enc"].T.contiguous().numpy(), W_dec=w["W_dec"].numpy(),
             b_enc=w["b_enc"].numpy(), b_dec=w["b_dec"].numpy(), threshold=threshold.numpy())
    return folder
