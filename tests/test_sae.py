"""SAEs: recovery of a planted dictionary, metrics, the on-disk layouts (ours, SAELens, sparsify), splicing into
tiny models, and the baseline dictionaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from autointerp.corpus import bos_id, iter_token_windows, open_corpus
from autointerp.errors import UsageError
from autointerp.subject.hooks import mlp_hooks, residual_hooks
from autointerp.subject.model import load_subject
from autointerp.subject.sae import (
    SAETrainConfig,
    SparseAutoencoder,
    default_basis,
    evaluate,
    ica_dictionary,
    pca_dictionary,
    random_dictionary,
    spliced_loss,
    train_sae,
)
from autointerp.subject.sae_formats import load_sae
from autointerp.subject.units import collect_activations
from fakes import identity_sae

pytestmark = pytest.mark.usefixtures("one_thread")


def planted_data(d=32, n_features=32, active=3, n=8000, seed=0):
    """x = sum of ~``active`` unit directions per sample, with magnitudes in [0.5, 1.5)."""
    gen = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(n_features, d, generator=gen), dim=1)
    codes = (torch.rand(n, n_features, generator=gen) < active / n_features) * (0.5 + torch.rand(n, n_features,
                                                                                               generator=gen))
    return codes @ directions, directions


@pytest.mark.parametrize("cfg", [
    SAETrainConfig(ratio=2, alpha=0.4, lr=3e-3, epochs=25, batch_size=128, tied=True),
    SAETrainConfig(ratio=2, alpha=0.3, lr=1e-2, epochs=30, batch_size=512, tied=False),
], ids=["tied", "untied"])
def test_sae_recovers_planted_directions(cfg):
    x, directions = planted_data()
    sae = train_sae(x, cfg)
    best_cos = (directions @ sae.decoder_weight().detach().T).max(1).values
    assert (best_cos > 0.9).all(), best_cos.min()  # (about 0.96 for tied, 0.99 for untied, across seeds)
    m = evaluate(sae, x)
    assert m.n_features == 64 and m.n_tokens == 8000
    assert 0 < m.fvu < 0.2 and 3 < m.mean_l0 < 6
    assert torch.allclose(sae.decoder_weight().norm(dim=1), torch.ones(64))


def test_metrics_by_hand():
    sae = SparseAutoencoder(2, 3, tied=False, normalize_decoder=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [-1.0, -1.0]])
    m = evaluate(sae, x)
    # x_hat = [[1, 1], [3, 0], [0, 0]]: errors 1 + 0 + 2 = 3; variance about the mean [1, 1/3]
    var = float(((x - x.mean(0)) ** 2).sum())
    assert m.fvu == pytest.approx(3 / var) and m.mean_l0 == pytest.approx(4 / 3) and m.dead_features == 0
    sae.b_enc.data.fill_(-10.0)
    assert evaluate(sae, x).dead_features == 3


@pytest.mark.parametrize("activation", ["relu", "topk", "jumprelu"])
def test_save_and_load_round_trip(tmp_path, activation):
    torch.manual_seed(0)
    sae = SparseAutoencoder(8, 16, tied=activation == "relu", activation=activation, k=3,
                            metadata={"site": "resid", "layer": 2})
    if activation == "jumprelu":
        sae.threshold.fill_(0.1)
    loaded = load_sae(sae.save(tmp_path / "sae"))
    x = torch.randn(50, 8)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])
    assert loaded.metadata == {"site": "resid", "layer": 2} and json.loads((tmp_path / "sae/cfg.json").read_text())


def known_weights(d_in=8, d_sae=20, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {"W": torch.randn(d_sae, d_in, generator=gen), "b_enc": torch.randn(d_sae, generator=gen) * 0.1,
            "W_dec": torch.randn(d_sae, d_in, generator=gen), "b_dec": torch.randn(d_in, generator=gen) * 0.1,
            "threshold": torch.rand(d_sae, generator=gen) * 0.5}


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "legacy_topk"])
def test_load_saelens_folder(tmp_path, arch):
    w = known_weights()
    tensors = {"W_enc": w["W"].T.contiguous(), "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]}
    cfg = {"d_in": 8, "d_sae": 20, "architecture": arch, "apply_b_dec_to_input": True, "hook_name": "blocks.2.x",
           "normalize_activations": "none", "k": 4}
    if arch == "jumprelu":
        tensors["threshold"] = w["threshold"]
    if arch == "legacy_topk":
        cfg = {**cfg, "architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}}
        del cfg["k"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(tmp_path / "sae_weights.safetensors"))
    sae = load_sae(tmp_path)
    x = torch.randn(30, 8)
    pre = (x - w["b_dec"]) @ w["W"].T + w["b_enc"]
    if arch == "standard":
        want = pre.relu()
    elif arch == "jumprelu":
        want = pre.relu() * (pre > w["threshold"])
    else:
        top = pre.topk(4, dim=1)
        want = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    torch.testing.assert_close(sae.encode(x), want)
    torch.testing.assert_close(sae.decode(want), want @ w["W_dec"] + w["b_dec"])
    assert sae.metadata["hook_name"] == "blocks.2.x"


def test_load_sparsify_folder(tmp_path):
    w = known_weights()
    cfg = {"expansion_factor": 32, "normalize_decoder": True, "num_latents": 20, "k": 5, "multi_topk": False,
           "skip_connection": False, "transcode": False, "activation": "topk", "d_in": 8}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    save_file({"encoder.weight": w["W"], "encoder.bias": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]},
              str(tmp_path / "sae.safetensors"))
    sae = load_sae(tmp_path)
    x = torch.randn(30, 8)
    pre = F.relu((x - w["b_dec"]) @ w["W"].T + w["b_enc"])
    top = pre.topk(5, dim=1)
    torch.testing.assert_close(sae.encode(x), torch.zeros_like(pre).scatter(1, top.indices, top.values))
    assert (sae.encode(x) > 0).sum(1).max() <= 5
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "transcode": True}))
    with pytest.raises(UsageError, match="transcoder"):
        load_sae(tmp_path)
    with pytest.raises(UsageError, match="cfg.json"):
        load_sae(tmp_path / "nowhere")


@pytest.mark.parametrize("arch", ["opt", "gpt2", "llama"])
@pytest.mark.parametrize("site", ["resid", "mlp"])
def test_collect_and_splice(arch, site, tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints[arch]), device="cpu")
    windows = list(iter_token_windows(open_corpus(str(text_corpus)), subject.tokenizer, 12, 10))
    acts = collect_activations(subject, windows, 1, site=site, max_tokens=100)
    d = subject.model.config.hidden_size if site == "resid" else subject.n_units
    assert acts.shape == (100, d)
    # the same numbers as a plain hooked forward pass, BOS dropped
    inputs = torch.cat([torch.full((10, 1), bos_id(subject.tokenizer)), torch.tensor(windows)], 1)
    hooks = residual_hooks(subject, [2]) if site == "resid" else mlp_hooks(subject, [1], stop_after_last=False)
    with hooks as store, torch.no_grad():
        subject.model(input_ids=inputs)
    full = store[2 if site == "resid" else 1].reshape(10, inputs.shape[1], -1)[:, -12:].reshape(-1, d)
    torch.testing.assert_close(acts, full[:100])
    clean, spliced = spliced_loss(subject, identity_sae(d), windows, 1, site=site)
    assert spliced == pytest.approx(clean, abs=1e-5) and clean > 0
    zero = identity_sae(d)
    zero.W_dec.data.zero_()
    clean2, ablated = spliced_loss(subject, zero, windows, 1, site=site)
    assert clean2 == clean and ablated != clean  # the hook acts (a random MLP writes little: tiny change)


def test_baseline_dictionaries():
    x, _ = planted_data(d=8, n_features=6, active=2, n=600)
    default = default_basis(8)
    assert torch.equal(default.encode(x), x) and default.n_features == 8
    split = default_basis(8, split_signs=True).encode(x - 0.5)
    assert split.shape == (600, 16) and (split >= 0).all()
    torch.testing.assert_close(split[:, :8] - split[:, 8:], x - 0.5)
    rnd = random_dictionary(x, 5, seed=1)
    assert rnd.n_features == 10 and torch.allclose(rnd.directions.norm(dim=1), torch.ones(5))
    from sklearn.decomposition import PCA

    pca = pca_dictionary(x, 4, split_signs=False)
    want = PCA(n_components=4).fit(x.numpy()).transform(x.numpy())
    np.testing.assert_allclose(pca.encode(x).numpy(), want, atol=1e-4)
    ica = ica_dictionary(x, 4, split_signs=False)
    sources = ica.encode(x)
    assert sources.shape == (600, 4)
    np.testing.assert_allclose(np.corrcoef(sources.T.numpy()), np.eye(4), atol=1e-3)  # unit-variance, decorrelated
