"""Dictionary features as units: capture reads them exactly, folders load with their site and layer checked, and the
whole command explains and scores them, kept apart from neurons (``autointerp.subject.units``)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import sqlite_utils
import torch

from autointerp.corpus import iter_token_windows, open_corpus
from autointerp.errors import UsageError
from autointerp.subject.capture import CaptureConfig, capture_windows
from autointerp.subject.hooks import content
from autointerp.subject.model import load_subject
from autointerp.subject.sae import (
    LinearDictionary,
    SparseAutoencoder,
    pca_dictionary,
)
from autointerp.subject.sae_formats import load_dictionary
from autointerp.subject.units import NEURONS, RESIDUAL, collect_activations, load_unit_space


def test_content_is_the_last_positions_of_batched_or_flattened_activations():
    inputs = torch.zeros(2, 5, dtype=torch.int64)  # [BOS] + 4 content tokens, twice
    acts = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(10, 3)  # OPT's MLP sees [B*T, D]
    want = acts.reshape(2, 5, 3)[:, 1:].float()
    assert torch.equal(content(acts, inputs, 4), want) and torch.equal(content(acts.reshape(2, 5, 3), inputs, 4), want)
    assert torch.equal(NEURONS.content({7: acts}, 7, inputs, 4), want)  # a space reads the same, at its own key
    assert torch.equal(RESIDUAL.content({7: acts.reshape(2, 5, 3)}, 7, inputs, 4), want)  # every space: its layer


@pytest.fixture
def subject(tiny_checkpoints, one_thread):
    return load_subject(str(tiny_checkpoints["opt"]), "cpu")


def windows(subject, text_corpus, n=6, size=16):
    return list(iter_token_windows(open_corpus(str(text_corpus)), subject.tokenizer, size, n))


@pytest.mark.parametrize("site", ["resid_post", "mlp", "resid_pre", "attn_out", "mlp_out"])
def test_capture_of_dictionary_features_is_encode_of_the_site(site, subject, text_corpus, tmp_path):
    wins = windows(subject, text_corpus)
    acts = collect_activations(subject, wins, 1, site)  # [N, d] at content positions, in order
    d = acts.shape[1]
    torch.manual_seed(0)
    sae = SparseAutoencoder(d, 3 * d, tied=site != "mlp", metadata={"layer": 1, "site": site})
    sae.save(tmp_path / "sae")
    space = load_unit_space(tmp_path / "sae", 1, subject)
    assert (space.site, space.family, space.n_units(subject)) == (site, "sae", 3 * d)
    cfg = CaptureConfig(layers=[1], window=16, top_k=4, n_random=2, batch_size=4)
    cap = capture_windows(subject, wins, cfg, space=space)[1]
    features = sae.encode(acts).detach()
    assert cap.n_units == 3 * d and cap.n_tokens == len(acts)
    assert torch.allclose(cap.act_max, features.max(0).values, atol=1e-5)
    assert torch.equal(cap.fire_count, (features > 0).sum(0))
    # the strongest window of feature 0 holds that feature's activations, not the site's
    record = cap.unit_record(0, space.kind)
    best = max(record.windows, key=lambda w: max(w.activations))
    assert record.id.kind == space.kind and max(best.activations) == pytest.approx(float(features[:, 0].max()), abs=1e-5)


def test_probing_reads_dictionary_features(subject, text_corpus, tmp_path):
    """probing.collect over a dictionary's space gives encode(site activations) on the same tokens."""
    from autointerp.subject.probing import ProbeSettings, collect

    text = open_corpus(str(text_corpus)).documents().__next__().text
    labels = np.zeros(len(text), dtype=bool)
    sixty_four = ProbeSettings(window=16, max_tokens=64, windows_per_document=None)
    X, y, group = collect(subject, [(text, labels)], 1, sixty_four, space=NEURONS)
    assert X.shape == (64, subject.n_units)
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"][:64]
    acts = collect_activations(subject, [ids[i : i + 16] for i in range(0, 64, 16)], 1, "resid")
    torch.manual_seed(0)
    sae = SparseAutoencoder(acts.shape[1], 40, tied=True, metadata={"layer": 1, "site": "resid"})
    sae.save(tmp_path / "sae")
    space = load_unit_space(tmp_path / "sae", 1, subject)
    X, _, _ = collect(subject, [(text, labels)], 1, replace(sixty_four, context=0), space=space)
    assert X.shape == (64, 40)
    assert np.allclose(X, sae.encode(acts).detach().numpy(), atol=1e-5)


def test_neurons_are_the_default_space(subject, text_corpus):
    wins = windows(subject, text_corpus)
    cfg = CaptureConfig(layers=[2], window=16, top_k=4, n_random=2, batch_size=4)
    default = capture_windows(subject, wins, cfg)[2]
    explicit = capture_windows(subject, wins, cfg, space=NEURONS)[2]
    assert default.n_units == subject.n_units and torch.equal(default.act_sum, explicit.act_sum)


def test_linear_dictionary_round_trip_and_site_from_width(subject, text_corpus, tmp_path):
    acts = collect_activations(subject, windows(subject, text_corpus), 0, "mlp")
    pca = pca_dictionary(acts, 5)
    pca.save(tmp_path / "pca")  # no metadata: the site comes from the input width (the MLP's, 48 != 32)
    loaded = load_dictionary(tmp_path / "pca")
    assert isinstance(loaded, LinearDictionary) and loaded.name == "pca" and loaded.n_features == 10
    assert torch.equal(loaded.directions, pca.directions) and torch.equal(loaded.center, pca.center)
    assert torch.allclose(loaded.encode(acts), pca.encode(acts), atol=1e-6)
    space = load_unit_space(tmp_path / "pca", 0, subject)
    assert (space.site, space.family, space.kind.startswith("pca:")) == ("mlp", "pca", True)


def test_folders_that_do_not_fit_are_refused(subject, tmp_path):
    SparseAutoencoder(32, 64, metadata={"layer": 2, "site": "mlp_out"}).save(tmp_path / "l2")
    with pytest.raises(UsageError, match="reads mlp_out of layer 2 .its metadata., not mlp_out of layer 1; drop"):
        load_unit_space(tmp_path / "l2", 1, subject)
    with pytest.raises(UsageError, match="reads mlp_out of layer 2 .its metadata., not attn_out of layer 2"):
        load_unit_space(tmp_path / "l2", None, subject, site="attn_out")
    SparseAutoencoder(32, 64, metadata={"layer": 2}).save(tmp_path / "nosite")  # residual-wide: which site?
    with pytest.raises(UsageError, match="cannot tell which site it reads"):
        load_unit_space(tmp_path / "nosite", 2, subject)
    assert load_unit_space(tmp_path / "nosite", None, subject, site="attn_out").site == "attn_out"
    SparseAutoencoder(40, 64).save(tmp_path / "wide")
    with pytest.raises(UsageError, match="cannot tell which site"):
        load_unit_space(tmp_path / "wide", 1, subject)
    SparseAutoencoder(40, 64, metadata={"site": "resid"}).save(tmp_path / "wrong")
    with pytest.raises(UsageError, match="takes 40-wide input, but the resid_post activations"):
        load_unit_space(tmp_path / "wrong", 1, subject)
    with pytest.raises(UsageError, match="is not a folder"):
        load_unit_space(tmp_path / "missing", 1, subject)


def test_sae_units_end_to_end(cli, tiny_checkpoints, text_corpus):
    common = ("--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus), "--device", "cpu")
    code, out, err = cli("sae", "train", "--layer", "1", "--kind", "pca", "--out", "pca1", "--fit-tokens", "2000",
                         "--eval-tokens", "500", "--fit-corpus", str(text_corpus), *common, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["family"], report["site"], report["n_features"], report["layer"]) == ("pca", "resid_post", 64, 1)
    assert report["fvu"] is None and report["mean_l0"] > 0
    code, _, err = cli("sae", "train", "--layer", "1", "--out", "pca1", *common)  # never overwrites
    assert code == 2 and "already exists" in err

    run = ("run", "--layer", "1", "--tokens", "3000", *common, "--format", "json")
    code, out, err = cli(*run, "--units", "sae:pca1")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["unit_kind"] == report["kind"] and summary["units_total"] == 64
    code, out, err = cli(*run, "--units", "0:8")  # neurons of the same layer: another run, other unit ids
    assert code == 0, err
    assert json.loads(out)["unit_kind"] == "neuron"
    code, out, _ = cli(*run, "--dictionary", "pca1", "--units", "0:4")  # a subset of the same features
    assert json.loads(out)["units_skipped"] == 0  # a different run key (other units), nothing to resume

    code, out, err = cli("leaderboard", "--by", "dictionary", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["kind"] for r in rows} == {report["kind"], "neuron"}
    assert {r["explainer"] for r in rows} >= {"baseline", "control:shuffled:baseline"}  # the floor beside it
    rows = {r["kind"]: r for r in rows if not r["explainer"].startswith("control:")}
    assert rows[report["kind"]]["family"] == "pca" and rows["neuron"]["units"] + rows["neuron"]["undefined"] == 8
    assert rows[report["kind"]]["units"] + rows[report["kind"]]["undefined"] == 64

    code, out, err = cli("show", f"{report['kind']}@1/0", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["unit"]["kind"] == report["kind"]
    code, _, err = cli(*run, "--units", "sae:pca1", "--dictionary", "pca1")
    assert code == 2 and "give the dictionary once" in err

    probe = ("probe", "--concept", "identifier", "--tokens", "2000", *common)
    code, out, err = cli(*probe, "--layer", "1", "--units", "sae:pca1", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["kind"] == report["kind"] and all(u < 64 for r in result["results"] for u in r["units"])
    assert [r["kind"] for r in sqlite_utils.Database("autointerp.db")["probe_results"].rows] == [report["kind"]]
    code, _, err = cli(*probe, "--layer", "2", "--dictionary", "pca1")
    assert code == 2 and "reads resid_post of layer 1 (its metadata), not resid_post of layer 2" in err
    assert "or --layer 2 --site resid_pre" in err
    code, _, err = cli(*probe, "--layer", "1", "--units", "0:4")
    assert code == 2 and "takes only sae:PATH or resid" in err
    code, _, err = cli(*probe, "--layer", "all", "--units", "sae:pca1")
    assert code == 2 and "a dictionary reads one layer" in err


def test_sae_train_and_eval_store_their_metrics(cli, tiny_checkpoints, text_corpus, isolated):
    common = ("--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus), "--device", "cpu",
              "--format", "json")
    code, out, err = cli("sae", "train", "--layer", "0", "--site", "mlp", "--out", "sae0", "--epochs", "1",
                         "--ratio", "2", "--fit-tokens", "1500", "--eval-tokens", "400", "--fit-corpus",
                         str(text_corpus), *common)
    assert code == 0, err
    trained = json.loads(out)
    assert (trained["family"], trained["site"], trained["n_features"], trained["d_in"]) == ("sae", "mlp", 96, 48)
    assert 0 <= trained["fvu"] and trained["loss_spliced"] > 0 and trained["loss_clean"] > 0
    assert json.loads((isolated / "sae0" / "cfg.json").read_text())["metadata"]["layer"] == 0
    code, out, err = cli("sae", "eval", "sae0", "--layer", "0", "--eval-tokens", "400", *common)
    assert code == 0, err
    again = json.loads(out)
    assert again["kind"] == trained["kind"] and again["fvu"] == pytest.approx(trained["fvu"])
    import sqlite_utils

    rows = list(sqlite_utils.Database(isolated / "autointerp.db")["dictionary_evals"].rows)
    assert len(rows) == 2 and {r["kind"] for r in rows} == {trained["kind"]} and rows[0]["fvu"] is not None
    code, _, err = cli("sae", "eval", "sae0", "--layer", "1", *common)
    assert code == 2 and "reads mlp of layer 0 (its metadata), not mlp of layer 1" in err
    code, out, err = cli("sae", "eval", "sae0", "--site", "mlp", "--eval-tokens", "400", *common)  # its own layer
    assert code == 0, err
    assert (json.loads(out)["layer"], json.loads(out)["fvu"]) == (0, pytest.approx(trained["fvu"]))
    code, _, err = cli("sae", "train", "--layer", "0", "--kind", "nmf", "--out", "x", *common)
    assert code == 2 and "--kind 'nmf'" in err


def test_the_library_and_sae_train_share_their_defaults():
    """``DictionarySettings`` holds one field per ``sae train`` flag of its name: the same default on both sides (the
    SAE's L1 coefficient was 1.0 in the CLI and 1e-3 in the library)."""
    import dataclasses
    import inspect

    from autointerp.cli.dictionaries import sae_train
    from autointerp.pipeline.dictionaries import DictionarySettings

    flags = inspect.signature(sae_train).parameters
    fields = {f.name: f.default for f in dataclasses.fields(DictionarySettings)}
    shared = sorted(set(fields) & set(flags))
    assert {"ratio", "alpha", "epochs", "fit_tokens", "fit_corpus", "eval_tokens"} <= set(shared)
    assert {name: flags[name].default for name in shared} == {name: fields[name] for name in shared}
