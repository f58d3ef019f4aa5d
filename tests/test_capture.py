"""The streaming capture against brute force, on tiny random models of every supported architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ARCHS

from autointerp.corpus import bos_id, iter_token_windows, open_corpus
from autointerp.errors import UsageError
from autointerp.subject.capture import CaptureConfig, capture, reservoir_slot
from autointerp.subject.firing import BOTTOM_K, max_fraction_thresholds
from autointerp.subject.hooks import mlp_hooks, run_batch
from autointerp.subject.memory import held_bytes
from autointerp.subject.model import load_subject


def brute_force(subject, corpus, window, layer, max_windows):
    """Every activation of every window, by a plain full forward pass per batch (no early stop)."""
    bos = bos_id(subject.tokenizer)
    wins = list(iter_token_windows(corpus, subject.tokenizer, window, max_windows))
    ids = torch.tensor(wins)
    inputs = ids if bos is None else torch.cat([torch.full((len(wins), 1), bos), ids], 1)
    with mlp_hooks(subject, [layer], stop_after_last=False) as store, torch.inference_mode():
        subject.model(input_ids=inputs, use_cache=False)
        acts = store[layer].reshape(*inputs.shape, -1)[:, -window:, :].float()
    return ids, acts  # [N, W], [N, W, U]


@pytest.mark.parametrize("arch", ARCHS)
def test_streaming_capture_equals_brute_force(arch, tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints[arch]), device="cpu")
    corpus = open_corpus(str(text_corpus))
    cfg = CaptureConfig(layers=[1], window=16, top_k=6, n_random=4, batch_size=5, max_tokens=16 * 37,
                        calibration_tokens=16 * 8)  # calibrated on the first two batches (10 windows)
    cap = capture(subject, corpus, cfg)[1]
    ids, acts = brute_force(subject, corpus, 16, 1, 37)
    assert cap.n_windows == 37 and cap.n_tokens == 37 * 16
    if subject.is_relu:
        assert cap.rule == "fixed" and cap.bottom_k == 0
        thresholds = torch.zeros(subject.n_units)
    else:  # the firing rule's thresholds from the first 10 windows' maxima, then every count under them
        assert cap.rule == "max_fraction" and cap.bottom_k == BOTTOM_K
        thresholds = max_fraction_thresholds(acts[:10].amax((0, 1)))
        bottom_vals = (-acts).amax(1).T.topk(BOTTOM_K, dim=1).values
        torch.testing.assert_close(cap.bot_val, bottom_vals)
        worst = cap.bottom_windows(0)[0]
        assert worst["min"] == pytest.approx(float(acts[..., 0].min()), abs=1e-5)
    torch.testing.assert_close(cap.thresholds, thresholds)
    assert cap.stats(5).threshold == pytest.approx(float(thresholds[5]))
    fires = acts > thresholds
    torch.testing.assert_close(cap.fire_count, fires.sum((0, 1)))
    torch.testing.assert_close(cap.act_max, acts.amax((0, 1)))
    torch.testing.assert_close(cap.act_sum.float(), acts.sum((0, 1)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cap.pos_fire, fires.sum(0).long())
    assert int(cap.hist.sum()) == 37 * 16 * subject.n_units
    wmax = acts.amax(1).T  # [U, N]
    top_vals, top_idx = wmax.topk(6, dim=1)
    torch.testing.assert_close(cap.top_val, top_vals)
    # the kept windows are a true top-k: each one's brute-force max is its recorded value (order may differ only
    # between near-ties, since batched and unbatched matmuls round differently)
    torch.testing.assert_close(wmax.gather(1, cap.top_index), cap.top_val)
    assert (cap.top_index == top_idx).float().mean() > 0.9
    for u in (0, subject.n_units - 1):
        for k in range(6):
            n = int(cap.top_index[u, k])
            torch.testing.assert_close(cap.top_acts[u, k], acts[n, :, u])
            assert torch.equal(cap.top_ids[u, k].long(), ids[n])
    # per-token firing counts
    t = int(ids[0, 0])
    assert cap.tok_fire.column(3).get(t, 0) == int(fires[..., 3][ids == t].sum())
    assert int(cap.tok_count[t]) == int((ids == t).sum())


def test_sparse_token_counts_match_dense(tiny_checkpoints, text_corpus, monkeypatch):
    import autointerp.subject.token_counts as token_counts

    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    cfg = CaptureConfig(layers=[0], window=16, top_k=3, n_random=2, max_tokens=16 * 20)
    dense = capture(subject, open_corpus(str(text_corpus)), cfg)[0]
    monkeypatch.setattr(token_counts, "DENSE_TOKEN_COUNTS_MAX", 0)
    sparse = capture(subject, open_corpus(str(text_corpus)), cfg)[0]
    assert sparse.tok_fire.dense is None
    assert any(sparse.tok_fire.column(u) for u in range(subject.n_units))
    for u in range(subject.n_units):
        assert sparse.tok_fire.column(u) == dense.tok_fire.column(u)


def test_hooks_removed_after_exception(tiny_checkpoints):
    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        with mlp_hooks(subject, [0, 2]):
            assert subject.down_proj(0)._forward_pre_hooks
            raise RuntimeError("boom")
    for layer in range(subject.n_layers):
        assert not subject.down_proj(layer)._forward_pre_hooks


def test_forward_stops_after_last_hooked_layer(tiny_checkpoints):
    subject = load_subject(str(tiny_checkpoints["llama"]), device="cpu")
    reached = []
    handle = subject.down_proj(2).register_forward_pre_hook(lambda m, a: reached.append(2))
    try:
        with mlp_hooks(subject, [1]) as store:
            run_batch(subject, torch.tensor([[2, 10, 11, 12]]))
        assert 1 in store and reached == []
    finally:
        handle.remove()


def test_bos_is_not_captured(tiny_checkpoints, text_corpus, tokenizer):
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    assert bos_id(tokenizer) == tokenizer.bos_token_id
    cap = capture(subject, open_corpus(str(text_corpus)), CaptureConfig(layers=[0], window=8, max_tokens=80))[0]
    assert cap.pos_fire.shape[0] == 8
    assert int(cap.tok_count[tokenizer.bos_token_id]) == 0


def test_reservoir_is_uniform_and_shared_across_layers(tiny_checkpoints, text_corpus):
    import random

    counts = [0] * 30
    for seed in range(2000):
        rng = random.Random(seed)
        slots = {}
        for i in range(30):
            s = reservoir_slot(rng, i, 5)
            if s is not None:
                slots[s] = i
        for i in slots.values():
            counts[i] += 1
    # each of 30 windows ends up in the 5-slot reservoir with probability 1/6
    assert all(abs(c / 2000 - 1 / 6) < 0.04 for c in counts)
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    caps = capture(subject, open_corpus(str(text_corpus)), CaptureConfig(layers=[0, 2], window=16, n_random=4))
    assert caps[0].res_index == caps[2].res_index and len(caps[0].res_index) == 4


def test_memory_does_not_grow_with_tokens(tiny_checkpoints, text_corpus):
    """Everything a capture holds, at any depth, is the same size after 160 tokens and after 20 times as many."""
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")

    def held(max_tokens):
        cap = capture(subject, open_corpus(str(text_corpus)), CaptureConfig(layers=[1], window=16, top_k=4,
                                                                             n_random=3, max_tokens=max_tokens))[1]
        assert cap.n_tokens == max_tokens
        top = sum(v.numel() * v.element_size() for v in vars(cap).values() if isinstance(v, torch.Tensor))
        return top, len(cap.res_index), held_bytes(cap)

    small, large = held(16 * 10), held(16 * 200)
    assert small == large and small[2] > small[0]  # the deep count reaches past the top level


def test_held_bytes_counts_nested_buffers_once():
    """Tensors and arrays in nested containers count; views of one buffer count once, at the buffer's size."""
    t = torch.zeros(10, 4)  # 160 bytes
    a = np.zeros(8)  # 64 bytes
    assert held_bytes({"x": [t, (t[2:], t.numpy())], "y": {"z": a}}) == 160 + 64
    assert held_bytes([t, t[1], t.T, t.numpy(), [a, a[2:]]]) == 160 + 64
    assert held_bytes({"k": [torch.zeros(3, dtype=torch.int32)]}) == 12
    assert held_bytes("text") == 0


def test_window_longer_than_model_context_is_a_usage_error(tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    with pytest.raises(UsageError, match="--window"):
        capture(subject, open_corpus(str(text_corpus)), CaptureConfig(layers=[0], window=500))


def test_unit_record_splits_are_disjoint(tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    cap = capture(subject, open_corpus(str(text_corpus)), CaptureConfig(layers=[0], window=16, top_k=9, n_random=6))[0]
    for u in range(subject.n_units):
        rec = cap.unit_record(u)
        splits = {s: {w.index for w in rec.split(s)} for s in ("train", "valid", "test")}
        assert not (splits["train"] & splits["valid"] or splits["train"] & splits["test"]
                    or splits["valid"] & splits["test"])
        assert all(w.source == "top" for w in rec.split("train"))
        assert [w.rank for w in rec.split("train", "top")] == [0, 3, 6]
        assert {w.split for w in rec.for_explainer().windows} <= {"train"}


def test_every_supported_architecture_is_tested():
    from autointerp.subject.model import ARCHITECTURES

    assert set(ARCHS) == set(ARCHITECTURES)
