"""Issue 24's acceptance: one SAE trained here on a bundled layer, written as autointerp, SAELens (resid_post of L and
resid_pre of L+1) and Gemma Scope, gives the same activations, explanations and scores for every feature, each run
finding its layer and site in the folder alone; a disagreeing layer is a one-line error that writes nothing, and a
dictionary on the wrong layer is refused by the FVU guard unless forced."""

from __future__ import annotations

import json

import pytest
import sqlite_utils

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def per_unit(db, run_id: str) -> dict[int, list]:
    """{unit: [(explanation, its scores), ... the controls' too] + [the windows' activations]} of one run."""
    out: dict[int, list] = {}
    for row in db.query(
            "SELECT u.unit, e.id, e.text FROM explanations e JOIN units u ON u.id = e.unit_id WHERE e.run_id = ?",
            [run_id]):
        scores = sorted((s["split"], s["simulator"], s["score"], s["score_top"], s["score_random"], s["per_window"])
                        for s in db.query("SELECT * FROM scores WHERE explanation_id = ?", [row["id"]]))
        windows = sorted((w["corpus_index"], w["source"], w["split"], w["activations"])
                         for w in db.query("SELECT w.* FROM windows w JOIN units u ON u.id = w.unit_id "
                                           "WHERE w.run_id = ? AND u.unit = ?", [run_id, row["unit"]]))
        out.setdefault(row["unit"], [windows]).append((row["text"], scores))
    return {unit: sorted(rows[1:]) + [rows[0]] for unit, rows in out.items()}


def test_every_layout_of_one_sae_explains_and_scores_the_same(cli, isolated):
    code, out, err = cli("sae", "train", "--layer", "3", "--out", "sae3", "--ratio", "0.5", "--alpha", "0.1",
                         "--epochs", "2", "--fit-tokens", "4000", "--eval-tokens", "1000", "--device", "cpu",
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["site"] == "resid_post" and json.loads(out)["fvu"] < 1
    layouts = {"autointerp": ("sae3", 3)}
    for name, args, layer in [("saelens", ("--to", "saelens"), 3), ("gemma", ("--to", "gemma-scope"), 3),
                              ("pre", ("--to", "saelens", "--site", "resid_pre"), 4)]:
        code, out, err = cli("sae", "export", "sae3", *args, "--out", name)
        assert code == 0, err
        layouts[name] = (out.split("wrote ")[1].split(" (")[0], layer)
    assert layouts["gemma"][0] == "gemma/gemma-scope-res/layer_3/width_32"
    runs = {}
    for name, (folder, layer) in layouts.items():  # no --layer: each folder says where it belongs
        code, out, err = cli("run", "--units", f"sae:{folder}", "--tokens", "3000", "--device", "cpu",
                             "--format", "json")
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["layer"], summary["units_total"], summary["units_done"]) == (layer, 32, 32)
        assert summary["dictionary_check"]["fvu"] < 1 and not summary["dictionary_check"]["forced"]  # the guard's
        runs[name] = summary
    db = sqlite_utils.Database(isolated / "autointerp.db")
    want = per_unit(db, runs["autointerp"]["run_id"])
    assert len(want) == 32 and sum(text.startswith("Fires on") for rows in want.values() for text, _ in rows[:-1]) \
        >= 32  # every feature explained (and its controls: a shuffled and an empty explanation)
    assert any(score[2] is not None for rows in want.values() for _, scores in rows[:-1] for score in scores)
    for name in ("saelens", "pre", "gemma"):
        assert per_unit(db, runs[name]["run_id"]) == want, name  # same activations, explanations, scores
        assert runs[name]["units"] == runs["autointerp"]["units"]

    before = db["runs"].count
    code, _, err = cli("run", "--units", "sae:sae3", "--layer", "5", "--tokens", "3000", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "reads resid_post of layer 3 (its metadata), not resid_post of layer 5" in err
    code, _, err = cli("run", "--units", "sae:sae3", "--site", "mlp_out", "--tokens", "3000", "--device", "cpu")
    assert code == 2 and "not mlp_out of layer 3" in err
    meta = json.loads((isolated / "sae3" / "cfg.json").read_text())  # the same SAE, mislabelled: layer 0's attn_out
    wrong = {**meta["metadata"], "layer": 0, "site": "attn_out"}
    (isolated / "sae3" / "cfg.json").write_text(json.dumps({**meta, "metadata": wrong}))
    code, _, err = cli("run", "--units", "sae:sae3", "--tokens", "3000", "--device", "cpu")
    assert code == 2 and "reconstructs attn_out of layer 0 worse than its mean (FVU 1." in err
    assert "--force-sae" in err and db["runs"].count == before  # nothing written
    code, out, err = cli("run", "--dictionary", "sae3", "--units", "0:2", "--tokens", "3000", "--device", "cpu",
                         "--force-sae", "--format", "json")
    assert code == 0, err
    forced = json.loads(out)
    assert forced["layer"] == 0 and forced["dictionary_check"]["forced"] and forced["dictionary_check"]["fvu"] > 1
    stored = json.loads(db["runs"].get(forced["run_id"])["config"])["dictionary_check"]  # stored with the run
    assert stored == forced["dictionary_check"]
