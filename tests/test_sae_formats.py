"""Dictionary folders as researchers have them (``autointerp.subject.sae_formats``, ``sae_export``): each layout is
written here from the same weights and read back to the same feature activations; where a dictionary belongs is read
from the folder and a disagreeing layer or site is refused; encoding options are honoured or refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from autointerp.config import Config, load_config
from autointerp.errors import UsageError
from autointerp.subject.sae import SparseAutoencoder
from autointerp.subject.sae_export import export
from autointerp.subject.sae_formats import load_dictionary, load_sae, read_placement
from autointerp.subject.sites import canonical_site


def random_sae(activation="relu", tied=False, pre_bias=True, d=8, n=20, seed=0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(d, n, tied=tied, activation=activation, k=4 if activation == "topk" else None,
                            pre_bias=pre_bias and not tied, normalize_decoder=tied, metadata={"model": "m"})
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        if not tied:
            sae.W_dec.normal_()
            sae.b_dec.normal_(0, 0.3)
        if activation == "jumprelu":
            sae.threshold.uniform_(0, 0.5)
    return sae


def test_sites_have_one_name_each():
    assert canonical_site("resid") == "resid_post" and canonical_site("mlp_post") == "mlp"
    with pytest.raises(UsageError, match="--site 'hook_z' is not a hook site; use one of resid_pre, resid_post"):
        canonical_site("hook_z")


LAYOUTS = [("autointerp", "resid_post", 3), ("saelens", "resid_post", 3), ("saelens", "resid_pre", 4),
           ("saelens", "mlp_out", 2), ("saelens", "attn_out", 1), ("saelens", "mlp", 0),
           ("gemma-scope", "resid_post", 3), ("gemma-scope", "mlp_out", 5), ("gemma-scope", "resid_pre", 2)]


@pytest.mark.parametrize("activation,tied", [("relu", True), ("relu", False), ("jumprelu", False)])
@pytest.mark.parametrize("fmt,site,layer", LAYOUTS)
def test_every_layout_gives_the_same_features(tmp_path, fmt, site, layer, activation, tied):
    sae = random_sae(activation, tied, pre_bias=fmt != "gemma-scope")
    folder = export(sae, tmp_path / "out", fmt, site, layer)
    placement = read_placement(tmp_path / "out" if fmt != "sparsify" else folder)
    assert (placement.format, placement.site, placement.layer) == (fmt, site, layer)
    loaded = load_sae(placement.folder)
    x = torch.randn(50, 8) * 2
    assert torch.equal(loaded.encode(x), sae.encode(x))  # bit for bit: explanations and scores follow
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])


def test_sparsify_layouts_and_multi_layer_checkpoints(tmp_path):
    sae = random_sae("topk")
    (tmp_path / "ckpt").mkdir()
    for layer in (0, 1, 2):  # a checkpoint as sparsify writes it: one sub-folder per hookpoint
        folder = export(sae, tmp_path / f"tmp{layer}", "sparsify", "resid_post", layer)
        folder.rename(tmp_path / "ckpt" / folder.name)
    with pytest.raises(UsageError, match="holds dictionaries for layers 0, 1, 2; choose one with --layer N"):
        read_placement(tmp_path / "ckpt")
    p = read_placement(tmp_path / "ckpt", layer=1)
    assert (p.format, p.site, p.layer, p.folder.name) == ("sparsify", "resid_post", 1, "layers.1")
    x = torch.randn(20, 8)
    assert torch.equal(load_dictionary(tmp_path / "ckpt", layer=2).encode(x), sae.encode(x))
    with pytest.raises(UsageError, match="holds no single dictionary for layer 7"):
        read_placement(tmp_path / "ckpt", layer=7)
    assert read_placement(export(sae, tmp_path / "m", "sparsify", "mlp_out", 4)).site == "mlp_out"
    assert read_placement(export(sae, tmp_path / "pre", "sparsify", "resid_pre", 4)).resolve(None, "resid_pre") \
        == (4, "resid_pre")  # written as the same tensor, resid_post of layer 3
    with pytest.raises(UsageError, match="sparsify reads TopK SAEs"):
        export(random_sae("relu"), tmp_path / "relu", "sparsify", "resid_post", 0)


def test_a_layer_or_site_that_disagrees_is_refused(tmp_path):
    p = read_placement(export(random_sae(), tmp_path / "s", "saelens", "resid_post", 3))
    assert p.source == "blocks.3.hook_resid_post"
    assert p.resolve(None, None) == (3, "resid_post") and p.resolve(3, "resid") == (3, "resid_post")
    assert p.resolve(4, "resid_pre") == (4, "resid_pre") and p.resolve(None, "resid_pre") == (4, "resid_pre")
    with pytest.raises(UsageError, match=r"reads resid_post of layer 3 \(blocks.3.hook_resid_post\), not "
                                         r"resid_post of layer 5; drop --layer and --site to use its own or "
                                         r"--layer 4 --site resid_pre"):
        p.resolve(5, None)
    with pytest.raises(UsageError, match="not resid_post of layer 4"):
        p.resolve(4, None)  # the same tensor as resid_pre of 4, but only when the site says so
    with pytest.raises(UsageError, match="not mlp_out of layer 3"):
        p.resolve(3, "mlp_out")


def test_saelens_placement_from_every_spelling(tmp_path):
    save_file({"W_enc": torch.zeros(8, 4), "W_dec": torch.zeros(4, 8), "b_enc": torch.zeros(4),
               "b_dec": torch.zeros(8)}, str(tmp_path / "sae_weights.safetensors"))
    cases = [({"hook_name": "blocks.7.hook_mlp_out"}, ("mlp_out", 7)),
             ({"metadata": {"hook_name": "blocks.2.hook_attn_out"}}, ("attn_out", 2)),  # SAELens 6
             ({"hook_name": "blocks.1.mlp.hook_post"}, ("mlp", 1)),
             ({"hook_name": "blocks.1.attn.hook_z", "hook_layer": 1}, (None, 1)),
             ({"hook_layer": 4}, (None, 4)),
             ({"hook_point": "blocks.8.hook_resid_pre", "hook_point_layer": 8}, ("resid_pre", 8))]  # before 1.0
    for cfg, want in cases:
        (tmp_path / "cfg.json").write_text(json.dumps(cfg))
        p = read_placement(tmp_path / "cfg.json")
        assert (p.format, (p.site, p.layer)) == ("saelens", want)


def test_saelens_options_are_honoured_or_refused_by_name(tmp_path):
    gen = torch.Generator().manual_seed(0)
    W, b_dec = torch.randn(8, 20, generator=gen), torch.randn(8, generator=gen)
    W_dec, b_gate = torch.randn(20, 8, generator=gen), torch.randn(20, generator=gen)
    r_mag, b_mag = torch.randn(20, generator=gen) * 0.3, torch.randn(20, generator=gen)
    scale = torch.rand(20, generator=gen) + 0.5

    def write(cfg, **extra):
        save_file({"W_enc": W, "W_dec": W_dec, "b_enc": b_mag, "b_dec": b_dec, **extra},
                  str(tmp_path / "sae_weights.safetensors"))
        (tmp_path / "cfg.json").write_text(json.dumps({"hook_name": "blocks.0.hook_resid_post", **cfg}))
        return load_sae(tmp_path)

    x = torch.randn(40, 8, generator=gen)
    plain = write({"apply_b_dec_to_input": False})
    torch.testing.assert_close(plain.encode(x), (x @ W + b_mag).relu())  # b_dec not subtracted: as asked
    scaled = write({}, scaling_factor=scale)  # features unchanged, decoded with the fine-tuned scale
    f = ((x - b_dec) @ W + b_mag).relu()
    torch.testing.assert_close(scaled.encode(x), f)
    torch.testing.assert_close(scaled.decode(f), (f * scale) @ W_dec + b_dec)
    gated = write({"architecture": "gated"}, b_gate=b_gate, r_mag=r_mag, b_mag=b_mag.clone())
    xc = x - b_dec
    want = (xc @ W + b_gate > 0) * (xc @ (W * r_mag.exp()) + b_mag).relu()  # SAELens' gated encoder
    torch.testing.assert_close(gated.encode(x), want, atol=1e-5, rtol=1e-5)
    log_t = torch.randn(20, generator=gen) * 0.2
    jump = write({"architecture": "jumprelu"}, log_threshold=log_t)
    pre = (x - b_dec) @ W + b_mag
    torch.testing.assert_close(jump.encode(x), pre.relu() * (pre > log_t.exp()))
    with pytest.raises(UsageError, match="normalize_activations 'expected_average_only_in' is not supported"):
        write({"normalize_activations": "expected_average_only_in"})
    with pytest.raises(UsageError, match="hook_head_index"):
        write({"hook_head_index": 3})
    with pytest.raises(UsageError, match="architecture 'transcoder' is not supported"):
        write({"architecture": "transcoder"})


def test_gemma_scope_params_npz(tmp_path):
    gen = np.random.default_rng(0)
    w = {"W_enc": gen.normal(size=(8, 20)), "W_dec": gen.normal(size=(20, 8)), "b_enc": gen.normal(size=20),
         "b_dec": gen.normal(size=8), "threshold": gen.uniform(0, 0.5, size=20)}
    folder = tmp_path / "models--google--gemma-scope-2b-pt-mlp-canonical" / "layer_12" / "width_16k" / "canonical"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **w)
    p = read_placement(folder / "params.npz")
    assert (p.format, p.site, p.layer) == ("gemma-scope", "mlp_out", 12)
    x = np.random.default_rng(1).normal(size=(30, 8))
    pre = x @ w["W_enc"] + w["b_enc"]  # no b_dec subtracted: Gemma Scope's encoder
    want = np.maximum(pre, 0) * (pre > w["threshold"])
    sae = load_sae(folder)
    np.testing.assert_allclose(sae.encode(torch.tensor(x, dtype=torch.float32)).detach().numpy(), want, atol=1e-4)
    att = tmp_path / "gemma-scope-2b-pt-att" / "layer_3" / "w"
    att.mkdir(parents=True)
    np.savez(att / "params.npz", **w)
    with pytest.raises(UsageError, match="Gemma Scope att dictionaries are not supported"):
        read_placement(att)
    np.savez(folder / "params.npz", **{k: v for k, v in w.items() if k != "threshold"})
    with pytest.raises(UsageError, match="lacks threshold"):
        load_sae(folder)


def test_config_reads_the_layer_from_the_dictionary(tmp_path):
    export(random_sae(), tmp_path / "s", "saelens", "resid_post", 3)
    cfg = load_config(overrides={"units": f"sae:{tmp_path / 's'}"})
    assert (cfg.dictionary, cfg.units, cfg.layer) == (str(tmp_path / "s"), None, 3)
    assert load_config(overrides={"units": f"sae:{tmp_path / 's'}", "layer": 4, "site": "resid_pre"}).layer == 4
    with pytest.raises(UsageError, match="reads resid_post of layer 3 .blocks.3.hook_resid_post., not resid_post of "
                                         "layer 5"):
        load_config(overrides={"dictionary": str(tmp_path / "s"), "layer": 5})
    with pytest.raises(UsageError, match="--site names where a dictionary reads"):
        load_config(overrides={"site": "mlp_out", "layer": 1})
    (tmp_path / "plan.toml").write_text(f'units = "sae:{tmp_path / "s"}"\n')  # a TOML file can name it too
    assert load_config(tmp_path / "plan.toml").layer == 3
    assert Config(units="sae:x").dictionary == "x"


def test_sae_inspect_prints_what_it_understood(cli, tmp_path):
    folder = export(random_sae("jumprelu", pre_bias=False), tmp_path / "gs", "gemma-scope", "resid_post", 6)
    code, out, err = cli("sae", "inspect", str(folder), "--format", "json")
    assert code == 0, err
    row = json.loads(out)
    assert {k: row[k] for k in ("format", "site", "layer", "d_in", "features", "activation")} == {
        "format": "gemma-scope", "site": "resid_post", "layer": 6, "d_in": 8, "features": 20,
        "activation": "jumprelu"}
    assert row["options"]["subtract b_dec from input"] is False
    code, out, err = cli("sae", "inspect", str(export(random_sae("topk"), tmp_path / "s", "saelens", "mlp", 2)))
    assert code == 0, err
    assert "saelens" in out and "blocks.2.mlp.hook_post" in out and "topk (k=4)" in out
    code, _, err = cli("sae", "inspect", str(tmp_path / "nowhere"))
    assert code == 2 and "is not a folder" in err
    code, out, err = cli("sae", "export", str(folder), "--to", "saelens", "--out", str(tmp_path / "pre"),
                         "--site", "resid_pre")
    assert code == 0, err
    assert json.loads((tmp_path / "pre" / "cfg.json").read_text())["hook_name"] == "blocks.7.hook_resid_pre"
    assert load_file(str(tmp_path / "pre" / "sae_weights.safetensors"))["W_enc"].shape == (8, 20)
