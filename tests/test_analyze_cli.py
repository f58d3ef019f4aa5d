"""``autointerp analyze``: the per-unit JSON records, the per-layer table, persistence, bad input."""

from __future__ import annotations

import json

import sqlite_utils

KEYS = {"layer", "unit", "dead", "firing_rate", "token_detector", "ngram_k", "positional_mi", "positional",
        "positional_kind", "suppresses_triggers", "promoted", "suppressed", "top_share", "regularization"}




def test_analyze_json_records_and_storage(cli, tiny_checkpoints, text_corpus, isolated):
    model = str(tiny_checkpoints["gpt2"])
    code, out, err = cli("analyze", "--layer", "0,2", "--model", model, "--corpus", str(text_corpus),
                         "--format", "json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 * 48 and {r["layer"] for r in records} == {0, 2}
    assert all(KEYS <= set(r) for r in records)
    assert all(set(r["ngram_k"]) == {"1", "2", "3"} for r in records)
    # 48 units and a top 100: every unit that fires is "in the top", so top_share is the firing rate
    assert all(r["top_share"] == r["firing_rate"] and r["regularization"] == (r["top_share"] > 0.85) for r in records)
    # negative control (docs/methods.md §8): a random-init model has no dead units and no token detectors
    assert not any(r["dead"] for r in records) and not any(r["token_detector"] for r in records)
    db = sqlite_utils.Database(isolated / "autointerp.db")
    assert db["analysis_runs"].count == 1 and db["layer_analyses"].count == 2 and db["unit_analyses"].count == 96
    code, out, _ = cli("analyze", "--layer", "1", "--model", model, "--corpus", str(text_corpus))
    assert code == 0 and "% dead" in out and "token det." in out and "regular." in out


def test_lens_command(cli, tiny_checkpoints):
    model = ("--model", str(tiny_checkpoints["opt"]))
    code, out, err = cli("lens", "def f(self):", *model, "--format", "json")
    assert code == 0, err
    lens = json.loads(out)
    assert len(lens["layers"]) == 4 and lens["layers"][0]["residual"] == "embeddings"  # 3 blocks + embeddings
    assert all(len(layer["top"]) == len(lens["tokens"]) and len(layer["top"][0]) == 5 for layer in lens["layers"])
    code, out, err = cli("lens", "def f(self):", *model, "--position", "-1", "--top", "3")
    assert code == 0 and "after block 2" in out, err
    code, _, err = cli("lens", "x", *model, "--position", "7")
    assert code == 2 and "out of range" in err


def test_analyze_bad_layer(cli, tiny_checkpoints, text_corpus):
    code, _, err = cli("analyze", "--layer", "5", "--model", str(tiny_checkpoints["opt"]),
                       "--corpus", str(text_corpus))
    assert code == 2 and "layers 0..2" in err and len(err.strip().splitlines()) == 1


def test_probe_command_reports_every_k_and_stores_it(cli, tiny_checkpoints, text_corpus, isolated):
    model = str(tiny_checkpoints["opt"])
    code, out, err = cli("probe", "--layer", "1", "--concept", "keyword", "--model", model, "--corpus",
                         str(text_corpus), "--tokens", "3000", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    config = json.loads((tiny_checkpoints["opt"] / "config.json").read_text())
    n_units = config["ffn_dim"]
    assert result["concept"] == "keyword" and [r["k"] for r in result["results"]] == \
        [2**i for i in range(n_units.bit_length()) if 2**i < n_units] + [n_units]  # up to the dense probe
    assert all(0 <= r["f1"] <= 1 and len(r["units"]) == r["k"] for r in result["results"])
    assert result["context"] == min(448, config["max_position_embeddings"] - 1 - 64)
    row = next(sqlite_utils.Database(isolated / "autointerp.db")["probe_results"].rows)
    assert row["concept"] == "keyword" and row["best_f1"] == max(r["f1"] for r in result["results"])
    assert row["context"] == result["context"]
    code, out, _ = cli("probe", "--layer", "1", "--concept", "keyword", "--model", model, "--corpus",
                       str(text_corpus), "--tokens", "1000", "--context", "5", "--format", "json")
    assert code == 0 and json.loads(out)["context"] == 5
    code, _, err = cli("probe", "--layer", "1", "--concept", "keyword", "--model", model, "--context", "-1")
    assert code == 2 and "--context" in err and len(err.strip().splitlines()) == 1


def test_probe_the_residual_stream(cli, tiny_checkpoints, text_corpus, isolated):
    """--units resid: one unit per residual dimension after the block, up to the dense read-out of all of them."""
    model = str(tiny_checkpoints["opt"])
    width = json.loads((tiny_checkpoints["opt"] / "config.json").read_text())["hidden_size"]
    args = ("probe", "--layer", "1", "--concept", "keyword", "--model", model, "--corpus", str(text_corpus),
            "--tokens", "2000")
    code, out, err = cli(*args, "--units", "resid", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["kind"] == "resid" and result["results"][-1]["k"] == width
    assert sorted(result["results"][-1]["units"]) == list(range(width))
    assert next(sqlite_utils.Database(isolated / "autointerp.db")["probe_results"].rows)["kind"] == "resid"
    code, _, err = cli(*args, "--units", "resid", "--dictionary", "somewhere")
    assert code == 2 and "drop --dictionary" in err


def test_probe_every_layer_in_one_command(cli, tiny_checkpoints, text_corpus, isolated):
    """--layer all: one JSON line per layer, each equal to probing that layer alone (same tokens, same split)."""
    model = str(tiny_checkpoints["opt"])
    args = ("--concept", "keyword", "--model", model, "--corpus", str(text_corpus), "--tokens", "2000")
    code, out, err = cli("probe", "--layer", "all", *args, "--format", "json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["layer"] for x in lines] == [0, 1, 2]
    code, alone, _ = cli("probe", "--layer", "2", *args, "--format", "json")
    assert code == 0 and json.loads(alone)["results"] == lines[2]["results"]
    assert sqlite_utils.Database(isolated / "autointerp.db")["probe_results"].count == 4
    code, out, _ = cli("probe", "--layer", "0,2", *args)
    assert code == 0 and "test F1 by layer and k" in out and "best F1" in out
    code, _, err = cli("probe", "--layer", "0:9", *args)
    assert code == 2 and "layers 0..2" in err
    code, _, err = cli("probe", "--layer", "1", "--concept", "poetry", "--model", model)
    assert code == 2 and "unknown concept 'poetry'" in err and "comment" in err
