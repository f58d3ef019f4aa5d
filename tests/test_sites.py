"""Hook sites (``autointerp.subject.sites``) in every supported family and on the bundled model: resid_pre of block
L+1 is resid_post of block L; what a block adds to the stream is its attn_out plus its mlp_out; ``mlp`` is what
capture has always read; replacing a site changes the model's output and replacing it by itself does not; the
splice and the FVU guard read the same tensors."""

from __future__ import annotations

import pytest
import torch

from autointerp.corpus import iter_token_windows, open_corpus
from autointerp.errors import UsageError
from autointerp.subject.hooks import mlp_hooks
from autointerp.subject.model import load_subject
from autointerp.subject.sae import spliced_loss
from autointerp.subject.sites import SITES, replace_site, site_hooks, site_width
from autointerp.subject.units import UnitSpace, check_reconstruction, collect_activations
from conftest import ARCHS
from fakes import identity_sae

pytestmark = pytest.mark.usefixtures("one_thread")


def every_site(subject, ids: torch.Tensor, layers) -> tuple[torch.Tensor, dict[str, dict[int, torch.Tensor]]]:
    got = {}
    for site in SITES:
        with site_hooks(subject, site, layers, stop_after_last=False) as store, torch.no_grad():
            logits = subject.model(input_ids=ids).logits
        got[site] = {k: v.reshape(*ids.shape, -1) for k, v in store.items()}
    return logits, got


def check_sites(subject, layers=(0, 1)):
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    logits, got = every_site(subject, ids, layers)
    lo, hi = layers
    assert torch.equal(got["resid_pre"][hi], got["resid_post"][lo])  # one tensor, two names
    for layer in layers:
        added = got["resid_post"][layer] - got["resid_pre"][layer]
        torch.testing.assert_close(added, got["attn_out"][layer] + got["mlp_out"][layer], atol=1e-5, rtol=1e-4)
        for site in SITES:
            assert got[site][layer].shape[-1] == site_width(subject, site)
    with mlp_hooks(subject, [hi], stop_after_last=False) as store, torch.no_grad():
        subject.model(input_ids=ids)
    assert torch.equal(store[hi].reshape(*ids.shape, -1), got["mlp"][hi])  # the units capture has always read
    for site in SITES:
        with replace_site(subject, site, lo, lambda x: x.clone()), torch.no_grad():
            same = subject.model(input_ids=ids).logits
        with replace_site(subject, site, lo, lambda x: x * 0 + 1), torch.no_grad():
            other = subject.model(input_ids=ids).logits
        assert torch.equal(same, logits) and not torch.allclose(other, logits), site


@pytest.mark.parametrize("arch", ARCHS)
def test_every_site_in_every_family(arch, tiny_checkpoints):
    check_sites(load_subject(str(tiny_checkpoints[arch]), device="cpu"))


def test_every_site_on_the_bundled_model():
    subject = load_subject("bundled", device="cpu")
    assert subject.model_type == "opt"  # the bundled model is an OPT-family decoder
    check_sites(subject, layers=(7, 8))
    with pytest.raises(UsageError, match="out of range"):
        with site_hooks(subject, "resid_pre", [16]):
            pass


@pytest.mark.parametrize("site", SITES)
def test_splice_and_guard_read_each_site(site, tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    windows = list(iter_token_windows(open_corpus(str(text_corpus)), subject.tokenizer, 12, 8))
    d = site_width(subject, site)
    clean, spliced = spliced_loss(subject, identity_sae(d), windows, 1, site=site)
    assert spliced == pytest.approx(clean, abs=1e-5)
    zero = identity_sae(d)
    zero.W_dec.data.zero_()
    assert spliced_loss(subject, zero, windows, 1, site=site)[1] != pytest.approx(clean, abs=1e-6)
    space = check_reconstruction(subject, UnitSpace("sae:x", site, identity_sae(d)), 1, windows)
    assert space.check["fvu"] == pytest.approx(0, abs=1e-9) and space.check["tokens"] == 96
    # a dictionary reading the wrong tensor: its decoder points anywhere but the data
    wrong = identity_sae(d)
    wrong.W_dec.data = -3 * wrong.W_dec.data
    with pytest.raises(UsageError, match=f"reconstructs {site} of layer 1 worse than its mean .FVU .*--force-sae"):
        check_reconstruction(subject, UnitSpace("sae:x", site, wrong), 1, windows)
    forced = check_reconstruction(subject, UnitSpace("sae:x", site, wrong), 1, windows, force=True)
    assert forced.check["fvu"] > 1 and forced.check["forced"]
    acts = collect_activations(subject, windows, 1, site, max_tokens=30)
    assert acts.shape == (30, d)
