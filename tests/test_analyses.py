"""Analyses as pure math (coverage K, detectors, mutual information, positional patterns), the streaming n-gram
counter against brute force, and the vocabulary lens on tiny models of every supported architecture."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
import torch

from autointerp.subject.analyses import (
    coverage_k,
    coverage_k_units,
    detected,
    positional_mi,
    positional_pattern,
)
from autointerp.subject.hooks import residual_hooks
from autointerp.subject.lens import (
    logit_lens,
    trigger_suppression,
    vocab_projection,
    w_out,
)
from autointerp.subject.model import load_subject
from autointerp.subject.ngrams import NGramCounts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_coverage_k_on_a_hand_made_table():
    # A = 100, 95% = 95: 50 + 30 + 10 + 5 reaches it with 4 n-grams, whatever the input order
    assert coverage_k(torch.tensor([5, 10, 50, 5, 30]), 100) == 4
    assert coverage_k(torch.tensor([95, 5]), 100) == 1
    assert coverage_k(torch.tensor([94, 1, 5]), 100) == 2
    assert coverage_k(torch.tensor([1] * 20), 20) == 19  # 19/20 is exactly 95%: no float rounding
    assert coverage_k(torch.tensor([], dtype=torch.long), 0) == 0
    # 20 firings lost to truncation count as singletons: 50 + 30 = 80, then 15 more -> upper bound 17
    assert coverage_k(torch.tensor([50, 30]), 100) == 17
    assert coverage_k(torch.tensor([3, 1]), 4, Fraction(1, 2)) == 1


def test_coverage_k_of_every_unit_at_once_equals_one_at_a_time():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        U = int(torch.randint(1, 8, (1,), generator=gen))
        n_rows = int(torch.randint(0, 30, (1,), generator=gen))
        unit = torch.randint(0, U, (n_rows,), generator=gen)  # rows in any order, as NGramCounts.rows gives them
        counts = torch.randint(1, 10, (n_rows,), generator=gen)
        stored = torch.zeros(U, dtype=torch.int64).index_add_(0, unit, counts)
        totals = stored + torch.randint(0, 5, (U,), generator=gen) * (torch.rand(U, generator=gen) < 0.5)  # dropped
        totals[torch.rand(U, generator=gen) < 0.1] = 0
        want = [coverage_k(counts[unit == u], int(totals[u])) for u in range(U)]
        assert coverage_k_units(unit, counts, totals).tolist() == want


def test_detected_needs_few_ngrams_and_coverage_of_occurrences():
    keys = torch.tensor([7, 8, 9])
    # fires on every occurrence of 7 and 8, once on 9: covered 7, 8 hold 99/100 of the firings
    assert detected(keys, torch.tensor([60, 39, 1]), torch.tensor([60, 40, 50]), 100, max_k=5) == [7, 8]
    # 8 fires on only 39 of 80 occurrences: not covered, and 7 alone holds 60% -> not a detector
    assert detected(keys, torch.tensor([60, 39, 1]), torch.tensor([60, 80, 50]), 100, max_k=5) is None
    # K > max_k
    assert detected(torch.arange(10), torch.full((10,), 10), torch.full((10,), 10), 100, max_k=5) is None
    # occurrence slack makes coverage conservative
    assert detected(keys[:1], torch.tensor([100]), torch.tensor([100]), 100, max_k=5, slack=10) is None


@pytest.mark.parametrize("equal", [True, False])
def test_positional_mi_equals_sklearn(equal):
    from sklearn.metrics import mutual_info_score  # scikit-learn loads in seconds: only where it is compared

    gen = torch.Generator().manual_seed(0)
    W, U = 12, 5
    counts = torch.full((W,), 40) if equal else torch.randint(5, 60, (W,), generator=gen)
    rates = torch.rand(W, U, generator=gen) * torch.tensor([0.0, 0.1, 1.0, 0.5, 1.0])  # unit 0 dead
    rates[:, 4] = (torch.arange(W) % 2).double()  # exact 0/1: the 0 ln 0 = 0 case
    pos, fires = [], [[] for _ in range(U)]
    pos_fire = torch.zeros(W, U, dtype=torch.long)
    for p in range(W):
        f = torch.rand(int(counts[p]), U, generator=gen) < rates[p]
        pos_fire[p] = f.sum(0)
        pos += [p] * int(counts[p])
        for u in range(U):
            fires[u] += f[:, u].tolist()
    mi = positional_mi(pos_fire, counts)
    for u in range(U):
        assert float(mi[u]) == pytest.approx(mutual_info_score(pos, fires[u]), abs=1e-12)
    assert float(mi[0]) == 0.0
    if equal:  # fires on exactly half of the (equally many) positions: I = H(fires) = ln 2
        assert float(mi[4]) == pytest.approx(torch.log(torch.tensor(2.0)).item())


@pytest.mark.parametrize("profile, expected", [
    ([1, 0] * 8, ("oscillatory", "strong")),
    ([0.97, 0.02] * 8, ("oscillatory", "weak")),
    ([1] * 4 + [0] * 12, ("both_extremes", "strong")),
    ([0] * 5 + [1] * 4 + [0] * 7, ("both_extremes", "strong")),
    ([0.95] * 4 + [0.0] * 12, ("both_extremes", "weak")),
    ([1] * 4 + [0.5] * 12, ("one_extreme", "strong")),
    ([0.05] * 8 + [0.5] * 8, ("one_extreme", "weak")),
    ([0.2 + 0.04 * p for p in range(16)], ("other", "strong")),
    ([0.3, 0.6] * 8, ("other", "weak")),
])
def test_positional_pattern_rule(profile, expected):
    assert positional_pattern(torch.tensor(profile, dtype=torch.float64)) == expected


def brute_ngrams(ids, fires, n):
    """{(unit, gram): firings}, {gram: occurrences} over positions p >= n-1 of each window."""
    fire_counts, occ = Counter(), Counter()
    B, W, U = fires.shape
    for b in range(B):
        for p in range(n - 1, W):
            gram = tuple(ids[b, p - n + 1 : p + 1].tolist())
            occ[gram] += 1
            for u in fires[b, p].nonzero().flatten().tolist():
                fire_counts[u, gram] += 1
    return fire_counts, occ


def random_batches(seed, n_batches=4, B=6, W=10, U=7, vocab=13):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, vocab, (B, W), generator=gen)
        fires = torch.rand(B, W, U, generator=gen) < torch.linspace(0.02, 0.6, U)
        fires[..., 0] = ids == 3  # a token detector
        out.append((ids, fires))
    return out


@pytest.mark.parametrize("direct", [True, False])
def test_ngram_counts_equal_brute_force(direct):
    batches = random_batches(0)
    counter = NGramCounts(units=7, vocab=13)
    for table in counter._fires.values():
        table.direct = direct  # False: the path for models where vocab**n * units overflows int64
    for ids, fires in batches:
        counter.add(ids, fires)
        counter.rows(2)  # reading merges the buffer: later batches merge into a non-empty table
    ids, fires = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    for n in (2, 3):
        want_fires, want_occ = brute_ngrams(ids, fires, n)
        for u in range(7):
            got = {counter.decode(k, n): c for k, c in counter.counts(u, n).items()}
            assert got == {g: c for (uu, g), c in want_fires.items() if uu == u}
            assert counter.total(u, n) == int(fires[:, n - 1 :, u].sum()) and counter.exact(u, n)
            assert int(counter.totals(n)[u]) == counter.total(u, n)
        keys = torch.tensor([sum(t * 13 ** (n - 1 - i) for i, t in enumerate(g)) for g in want_occ])
        assert counter.occurrences(keys, n).tolist() == list(want_occ.values())
        assert counter.occurrences(torch.tensor([10**6]), n).tolist() == [0]
        assert counter.occurrence_slack(n) == 0
    assert not counter.truncated


def test_ngram_truncation_is_bounded_and_flagged():
    batches = random_batches(1, n_batches=8)
    cap = 40
    counter = NGramCounts(units=7, vocab=13, n_values=(3,), max_entries=cap)
    for ids, fires in batches:
        counter.add(ids, fires)
        assert len(counter._fires[3].keys) <= cap and len(counter._occ[3].keys) <= cap
    ids, fires = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    want_fires, want_occ = brute_ngrams(ids, fires, 3)
    assert counter.truncated
    slack = counter.occurrence_slack(3)
    for u in range(7):
        keys, counts = counter.unit_counts(u, 3)
        true = {g: c for (uu, g), c in want_fires.items() if uu == u}
        assert counter.total(u, 3) == sum(true.values())  # the total stays exact
        for k, c in zip(keys.tolist(), counts.tolist()):
            assert c <= true[counter.decode(k, 3)]  # stored counts are lower bounds
        k_true = coverage_k(torch.tensor(list(true.values())), sum(true.values()))
        assert coverage_k(counts, counter.total(u, 3)) >= k_true  # so K is an upper bound
    keys = torch.tensor([sum(t * 13 ** (2 - i) for i, t in enumerate(g)) for g in want_occ])
    stored = counter.occurrences(keys, 3)
    assert (stored <= torch.tensor(list(want_occ.values()))).all()
    assert (torch.tensor(list(want_occ.values())) <= stored + slack).all()


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("direct", [True, False])
def test_table_merges_and_truncates_by_the_documented_rule(direct, raw):
    """_Table against a dict: rows summed; past ``cap``, the largest counts kept, ties to the smaller (key, unit).
    ``raw``: rows come one per event (counts None), repeats included, as NGramCounts.add buffers them."""
    from autointerp.subject.ngrams import _Table

    gen = torch.Generator().manual_seed(3)
    cap, units = 30, 3
    table = _Table(cap, units, max_key=1000 if direct else 2**62)
    assert table.direct == direct
    want: dict[tuple[int, int], int] = {}
    for _ in range(25):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        keys, unit = torch.randint(0, 60, (n,), generator=gen), torch.randint(0, units, (n,), generator=gen)
        counts = torch.ones(n, dtype=torch.int64) if raw else torch.randint(1, 4, (n,), generator=gen)
        for k, u, c in zip(keys.tolist(), unit.tolist(), counts.tolist()):
            want[k, u] = want.get((k, u), 0) + c
        dropped = table.add(keys, unit, None if raw else counts)
        if table._buffered == 0:  # this add merged: apply the rule to the reference
            kept = sorted(sorted(want), key=lambda row: -want[row])[:cap]
            lost = {row: want[row] for row in want if row not in set(kept)}
            want = {row: want[row] for row in kept}
            got_lost = {} if dropped is None else dict(zip(zip(dropped[0].tolist(), dropped[1].tolist()),
                                                           dropped[2].tolist()))
            assert got_lost == lost
            rows = list(zip(table.keys.tolist(), table.unit.tolist()))
            assert rows == sorted(want) and dict(zip(rows, table.counts.tolist())) == want


def test_trigram_detector_from_streamed_counts():
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 20, (200, 12), generator=gen)
    ids[::10, 4:7] = torch.tensor([5, 6, 7])  # plant the trigram (5, 6, 7) in every tenth window
    grams = (ids[:, :-2] * 400 + ids[:, 1:-1] * 20 + ids[:, 2:])
    fires = torch.zeros(200, 12, 2, dtype=torch.bool)
    fires[:, 2:, 0] = grams == 5 * 400 + 6 * 20 + 7  # unit 0 fires exactly on its last token
    fires[..., 1] = ids == 7  # unit 1 fires on every 7: ~100 contexts, K3 > 50
    counter = NGramCounts(units=2, vocab=20)
    counter.add(ids, fires)
    for unit, expect in ((0, [(5, 6, 7)]), (1, None)):
        keys, counts = counter.unit_counts(unit, 3)
        found = detected(keys, counts, counter.occurrences(keys, 3), counter.total(unit, 3), max_k=50)
        assert (found and [counter.decode(k, 3) for k in found]) == expect


def test_trigger_suppression_rank():
    s = torch.tensor([0.5, -2.0, -1.0, 0.0, -3.0])
    assert trigger_suppression(s, [1]) == (True, 2)  # token 1 is the second most suppressed
    assert trigger_suppression(s, [0, 2]) == (True, 3)  # mean -0.25 < 0; best rank is token 2's
    assert trigger_suppression(s, [0]) == (False, 5)


ARCHS = ["opt", "gpt2", "gpt_neox", "llama"]


@pytest.mark.parametrize("arch", ARCHS)
def test_logit_lens_last_layer_is_the_model_output(arch, tiny_checkpoints):
    subject = load_subject(str(tiny_checkpoints[arch]), device="cpu")
    text = "def f(x):\n    return x + 1\n"
    lens = logit_lens(subject, text, top=3)
    assert len(lens.top) == subject.n_layers + 1 and len(lens.top[-1]) == len(lens.tokens)
    ids = subject.tokenizer(text, add_special_tokens=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = subject.model(input_ids=ids).logits[0, -len(lens.tokens):].softmax(-1)
    top = probs.topk(3, dim=-1)
    for p in range(len(lens.tokens)):
        assert [subject.tokenizer.decode([int(t)]) for t in top.indices[p]] == [t for t, _ in lens.top[-1][p]]
        assert [pr for _, pr in lens.top[-1][p]] == pytest.approx(top.values[p].tolist(), abs=1e-5)


def test_logit_lens_on_a_post_ln_opt_with_projections(tokenizer, tmp_path):
    """OPT-350m's layout: LayerNorm after the blocks (no final norm) and project_in/project_out around them."""
    from conftest import tiny_config
    from transformers import OPTForCausalLM

    config = tiny_config("opt", len(tokenizer))
    config.word_embed_proj_dim, config.do_layer_norm_before = 16, False
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    subject = load_subject(str(tmp_path), device="cpu")
    lens = logit_lens(subject, "x = 1", top=2)
    with torch.no_grad():
        probs = subject.model(**subject.tokenizer("x = 1", return_tensors="pt")).logits[0, -1].softmax(-1)
    assert lens.top[-1][-1][0][1] == pytest.approx(float(probs.max()), abs=1e-5)
    assert vocab_projection(subject, 0, [3], through_ln=True).shape == (1, len(tokenizer))


@pytest.mark.parametrize("arch", ARCHS)
def test_vocab_projection_reads_the_down_projection_column(arch, tiny_checkpoints):
    subject = load_subject(str(tiny_checkpoints[arch]), device="cpu")
    down = subject.down_proj(1).weight.detach()
    col = down[5] if arch == "gpt2" else down[:, 5]  # Conv1D stores [in, out]; Linear [out, in]
    assert torch.equal(w_out(subject, 1)[5], col)
    unembed = subject.model.get_output_embeddings().weight.detach()
    torch.testing.assert_close(vocab_projection(subject, 1, [5])[0], unembed @ col)
    # residual i (0: embeddings, l+1: after block l) is HF's hidden_states[i] for all but the last, which HF
    # reports after the final norm
    ids = torch.tensor([[2, 40, 41, 42]])
    with residual_hooks(subject) as store, torch.no_grad():
        hidden = subject.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(store) == subject.n_layers + 1
    for i in range(subject.n_layers):
        torch.testing.assert_close(store[i], hidden[i])
