"""Detection and fuzzing wherever a score is shown: ``autointerp show`` (table and json), the review pages (index,
layer and unit pages, static and ``serve``), with the judged examples escaped. The results are real: records judged
by ``DetectionScorer`` / ``FuzzingScorer`` with the quoted-token judge, saved through ``Store.save_judgements``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from autointerp.db import open_db
from autointerp.scoring.classify import ClassificationJudgement, DetectionScorer, Example, FuzzingScorer
from autointerp.scoring.judges import QuotedJudge
from autointerp.subject.records import Window

from test_db import record, scored, start
from test_report import assert_inert, parse

HOSTILE_TOKEN = "<script>alert(1)</script>"
TEXT = f'Fires on "{HOSTILE_TOKEN}".'  # what the quoted judge reads (the stored text is the explainer's)


def judged_record(unit: int, firing: bool = True):
    """``test_db.record`` plus a range sample (4 test windows firing on the hostile token, one per decile) and a
    silent sample (3 test windows, one holding the hostile token without firing: the quoted judge gets it wrong)."""
    fire = [Window(5000 + 10 * unit + b, ("x", HOSTILE_TOKEN, "y"), (1, 2, 3), (0.0, 1.0 + b, 0.0), "range", b, "test",
                   bin=b) for b in range(4)]
    quiet = [Window(6000 + 10 * unit + k, ("q", HOSTILE_TOKEN if k == 0 else "r", "s"), (4, 5, 6), (0.0, 0.0, 0.0),
                    "silent", k, "test") for k in range(3)]
    return replace(record(unit), range_windows=tuple(fire + quiet if firing else quiet))


def judge(scorer, rec, split="test"):
    return asyncio.run(scorer.judge(rec, TEXT, split))


def failed_llm_judgement() -> ClassificationJudgement:
    """What an LLM judge's fuzzing looks like: probabilities, one example that failed, marked tokens."""
    examples = (Example(7001, "range", 3, 1, ("a", HOSTILE_TOKEN, "b"), (1,), answer=1, p_yes=0.93),
                Example(7001, "range", 3, 0, ("a", HOSTILE_TOKEN, "b"), (2,), answer=0, p_yes=0.12),
                Example(7002, "range", 5, 1, ("c", "d"), (0,), answer=None, error="unparsed reply <b>x</b>"))
    return ClassificationJudgement("fuzzing", "test", "gpt-judge", 3, {"scorer": "fuzzing"}, examples,
                                   balanced_accuracy=1.0, auroc=1.0, n_judged=2, n_failed=1,
                                   counts={"activating": 2, "wrongly_marked": 1})


@pytest.fixture
def judged_db(isolated):
    """Units 1-3 of layer 0: 1 judged by detection and fuzzing (quoted judge), 2 by detection only with an undefined
    result (no activating window), 3 by an LLM-like fuzzing judgement with a failed example;
    unit 1 also has a shuffled control judged by detection."""
    path = isolated / "autointerp.db"
    with open_db(path) as store:
        run = start(store)
        rec1 = judged_record(1)
        control = replace(scored(1, "shuffled", 0.05), role="control")
        store.save_unit_result(run, rec1, "h1", {}, [scored(1, "gpt", 0.7), control])
        eid = store.explanation_id(run, "h1", 0, 1, "neuron", "gpt")
        store.save_judgements(eid, [judge(DetectionScorer(QuotedJudge()), rec1),
                                    judge(FuzzingScorer(QuotedJudge()), rec1)])
        cid = store.explanation_id(run, "h1", 0, 1, "neuron", "shuffled", role="control")
        store.save_judgements(cid, [judge(DetectionScorer(QuotedJudge(), seed=1), rec1)])
        store.save_unit_result(run, record(2), "h1", {}, [scored(2, "gpt", 0.4)])
        store.save_judgements(store.explanation_id(run, "h1", 0, 2, "neuron", "gpt"),
                              [judge(DetectionScorer(QuotedJudge()), judged_record(2, firing=False))])
        store.save_unit_result(run, record(3), "h1", {}, [scored(3, "gpt", 0.2)])
        store.save_judgements(store.explanation_id(run, "h1", 0, 3, "neuron", "gpt"), [failed_llm_judgement()])
    return path


def test_the_judged_fixture_is_what_the_tests_assume(judged_db):
    with open_db(judged_db) as store:
        rows = {r["unit"]: r for r in store.leaderboard(order="unit")}
    assert rows[1]["detection"] == pytest.approx((1 + 2 / 3) / 2)  # the silent window with the token: a false yes
    assert rows[1]["fuzzing"] == 1.0
    assert rows[2]["detection"] is None and rows[2]["fuzzing"] is None
    assert rows[3]["fuzzing"] == 1.0


def test_show_json_carries_detection_and_fuzzing(cli, judged_db):
    code, out, err = cli("show", "0/1", "--format", "json")
    assert code == 0, err
    card = json.loads(out)
    (own,) = [e for e in card["explanations"] if e["role"] == "explanation"]
    det, fuzz = own["detection"], own["fuzzing"]
    assert det["balanced_accuracy"] == pytest.approx(5 / 6) and det["judge"] == "quoted"
    assert det["n_judged"] == 7 and det["n_failed"] == 0 and det["auroc"] is None
    assert {x["label"] for x in det["examples"]} == {0, 1} and HOSTILE_TOKEN in det["examples"][0]["tokens"]
    assert fuzz["balanced_accuracy"] == 1.0 and all(x["marked"] for x in fuzz["examples"])
    (control,) = [e for e in card["explanations"] if e["role"] == "control"]
    assert control["detection"]["balanced_accuracy"] == pytest.approx(5 / 6) and control["fuzzing"] is None
    code, out, err = cli("show", "0/2", "--format", "json")
    (e2,) = json.loads(out)["explanations"]
    assert e2["detection"]["balanced_accuracy"] is None and e2["fuzzing"] is None
    assert e2["detection"]["undefined_reason"] == "no activating test example was judged (no test window where it fires was sampled)"


def _row(out: str, explainer: str) -> str:
    """The table's cells for ``explainer``, every wrapped line of its row joined."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {explainer} "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("│") or (rows and line[2] != " "):
            break
        rows.append(line)
    columns = zip(*([c.strip() for c in r.strip("│").split("│")] for r in rows))
    return " | ".join(" ".join(x for x in col if x) for col in columns)


def test_show_table_puts_them_beside_the_score(cli, judged_db, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli("show", "0/1")
    assert code == 0, err
    assert _row(out, "gpt") == "gpt | done | 0.700 | 0.700 | n/a | 0.833 7 judged | 1.000 8 judged | gpt on 1"
    assert _row(out, "shuffled").startswith("shuffled | done | 0.050 | 0.050 | n/a | 0.833 7 judged | not judged")
    assert "chance 0.5" in " ".join(out.split())
    code, out, err = cli("show", "0/2")
    assert _row(out, "gpt") == ("gpt | done | 0.400 | 0.400 | n/a | n/a (no activating test example was judged (no "
                                "test window where it fires was sampled)) 3 judged | not judged | gpt on 2")
    code, out, err = cli("show", "0/3")
    assert "| not judged | 1.000 AUROC 1.000 2 judged, 1 failed |" in _row(out, "gpt")


def _site(judged_db, tmp_path):
    from autointerp.report import build_site

    build_site(judged_db, tmp_path / "site", jobs=1)
    return tmp_path / "site"


def test_review_pages_show_the_scores_and_the_judged_examples_escaped(judged_db, tmp_path):
    site = _site(judged_db, tmp_path)
    index = (site / "index.html").read_text()
    page = assert_inert(index, "index")
    rows = {a["data-order"]: a for t, a in page.tags if t == "tr" and "data-order" in a}
    assert float(rows["0"]["data-detection"]) == pytest.approx(5 / 6) and rows["0"]["data-fuzzing"] == "1.0"
    assert rows["1"]["data-detection"] == "" and float(rows["2"]["data-fuzzing"]) == 1.0
    text = " ".join(page.text)
    assert "0.833" in text and "chance" in text and "Detection" in text and "Fuzzing" in text
    heads = [t for t in page.text if t in ("detection", "fuzzing")]
    assert heads.count("detection") >= 2  # per explainer and the leaderboard

    html = (site / "units/0-1.html").read_text()
    unit = assert_inert(html, "unit 0/1")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = "".join(unit.text)
    assert HOSTILE_TOKEN in text  # shown, as text
    for words in ("activating", "not activating", "marked where it fires", "marked elsewhere", "does not fire",
                  "marks fit", "marks do not fit", "wrong", "0.833"):
        assert words in text, words
    marked = [a for t, a in unit.tags if t == "i" and a.get("class") == "mk"]
    assert len(marked) >= 4  # every fuzzing example marks one token
    assert sum(1 for t, a in unit.tags if t == "details" and a.get("data-scorer") in ("detection", "fuzzing")) == 2

    unit3 = assert_inert((site / "units/0-3.html").read_text(), "unit 0/3")
    text3 = "".join(unit3.text)
    assert "unparsed reply <b>x</b>" in text3 and "0.93" in text3 and "gpt-judge" in text3  # the error as text
    assert "no answer" not in text3 and "1 failed" in text3
    unit2 = "".join(parse((site / "units/0-2.html").read_text()).text)
    assert "no activating test example was judged (no test window where it fires was sampled)" in unit2


def test_layer_pages_show_the_three_scores(judged_db, tmp_path):
    from autointerp.report.data import open_readonly
    from autointerp.report.pages import SiteModel

    data = open_readonly(judged_db)
    try:
        site = SiteModel(data)
        by_unit = {r["unit"]: r for r in site.rows}
        assert by_unit[1]["detection"] == pytest.approx(5 / 6) and by_unit[1]["fuzzing"] == 1.0
        explainers = {r["explainer"]: r for r in site.index()["explainers"]}
        assert explainers["gpt"]["detection_mean"] == pytest.approx(5 / 6)
        assert explainers["gpt"]["fuzzing_mean"] == pytest.approx(1.0)
        dictionaries = site.index()["dictionaries"]
        assert dictionaries[0]["detection_mean"] == pytest.approx(5 / 6)
    finally:
        data.close()


def test_sweep_report_gives_the_means_of_the_three_scores(cli, isolated, monkeypatch):
    from autointerp.sweep import sweep_report
    from autointerp.sweep.ledger import Ledger

    plan = isolated / "p.toml"
    plan.write_text('name = "nightly"\n[defaults]\nmodel = "tiny"\ncorpus = "bundled"\ndb = "sweep.db"\n'
                    '[jobs.a]\nlayers = "0"\n')
    with open_db(isolated / "sweep.db") as store:
        run = start(store)
        Ledger(store, "nightly").link_run("a", 0, run, 2)
        rec = judged_record(1)
        store.save_unit_result(run, rec, "h1", {}, [scored(1, "gpt", 0.7),
                                                   replace(scored(1, "shuffled", 0.1), role="control")])
        store.save_judgements(store.explanation_id(run, "h1", 0, 1, "neuron", "gpt"),
                              [judge(DetectionScorer(QuotedJudge()), rec), judge(FuzzingScorer(QuotedJudge()), rec)])
        store.save_unit_result(run, record(2), "h1", {}, [scored(2, "gpt", 0.3)])
        store.save_judgements(store.explanation_id(run, "h1", 0, 2, "neuron", "gpt"),
                              [replace(failed_llm_judgement(), scorer="detection", balanced_accuracy=0.5)])
    report = sweep_report(plan, since="2000-01-01T00:00:00+00:00")
    own, control = report["scores"]
    assert (own["job"], own["role"], own["explanations"], own["scored"]) == ("a", "explanation", 2, 2)
    assert own["score_mean"] == pytest.approx(0.5) and own["detected"] == 2 and own["fuzzed"] == 1
    assert own["detection_mean"] == pytest.approx((5 / 6 + 0.5) / 2) and own["fuzzing_mean"] == 1.0
    assert control["role"] == "control" and control["detection_mean"] is None and control["score_mean"] == 0.1
    best = {c["unit"]: c for c in report["new_best"]}
    assert best[1]["detection"] == pytest.approx(5 / 6) and best[1]["fuzzing"] == 1.0
    code, out, err = cli("sweep", "report", str(plan), "--since", "2000-01-01T00:00:00+00:00")
    assert code == 0, err
    assert ("a explanations: 2; mean score 0.500 (n 2), detection 0.667 (n 2), fuzzing 1.000 (n 1)" in out
            and "a controls: 1; mean score 0.100 (n 1), detection n/a (n 0)" in out), out
    assert "0/1: n/a -> 0.700 (detection 0.833, fuzzing 1.000)" in out and "chance 0.5" in out


def test_serve_sees_a_judgement_written_later(judged_db):
    from autointerp.report.data import open_readonly

    data = open_readonly(judged_db)
    try:
        marks = data.marks()
        assert data.changed_units(marks) == set()
        with open_db(judged_db) as store:
            (run,) = [r["id"] for r in store.db.query("SELECT id FROM runs")]
            eid = store.explanation_id(run, "h1", 0, 2, "neuron", "gpt")
            unit = store.db.execute("SELECT unit_id FROM explanations WHERE id = ?", [eid]).fetchone()[0]
            store.save_judgements(eid, [failed_llm_judgement()])
            assert data.changed_units(marks) == {unit}
            marks = data.marks()
            store.save_judgements(eid, [failed_llm_judgement()])  # replaced: the newest row id again, a newer time
            assert data.changed_units(marks) == {unit}
    finally:
        data.close()


def test_leaderboard_by_dictionary_and_the_run_controls_carry_the_means(cli, judged_db, monkeypatch):
    code, out, err = cli("leaderboard", "--by", "dictionary", "--format", "json")
    assert code == 0, err
    rows = {r["explainer"]: r for r in json.loads(out)}
    assert rows["gpt"]["detection_mean"] == pytest.approx(5 / 6) and rows["gpt"]["fuzzing_mean"] == 1.0
    assert rows["shuffled"]["fuzzing_mean"] is None
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli("leaderboard", "--by", "dictionary")
    assert "│ 0.400  │ 0.833  │ 1.000 │" in out and "detect, fuzz: mean balanced accuracy" in " ".join(out.split())
    with open_db(judged_db) as store:
        (run,) = [r["id"] for r in store.db.query("SELECT id FROM runs")]
        (control,) = store.run_controls(run)
    assert control["control"] == "shuffled" and control["detected"] == 1 and control["fuzzed"] == 0
    assert control["detection_mean"] == pytest.approx(5 / 6) and control["fuzzing_mean"] is None


def test_a_unit_page_lists_every_failed_example_and_a_bounded_number_of_right_and_wrong_ones_per_label():
    from autointerp.report.judged import RIGHT_SHOWN, WRONG_SHOWN, judgement_view

    examples = [dict(index=i, source="range", bin=i % 10, label=i % 2, tokens=["a", "b"], marked=[],
                     answer=(i % 2) if i % 7 else 1 - i % 2, p_yes=None, error=None) for i in range(100)]
    examples.append(dict(index=100, source="silent", bin=None, label=0, tokens=["c"], marked=[], answer=None,
                         p_yes=None, error="unparsed"))
    view = judgement_view(dict(id=1, scorer="detection", examples=examples))
    wrong = [x for x in view["examples"] if x["correct"] is False]  # 8 false "no" (label 1), 7 false "yes"
    failed = [x for x in view["examples"] if x["correct"] is None]
    assert len(wrong) == 15 and len(failed) == 1 and WRONG_SHOWN >= 8
    assert all(x in view["shown"] for x in wrong + failed)  # every mistake (here) and every failure is listed
    right = [x for x in view["shown"] if x["correct"]]
    assert sum(x["positive"] for x in right) == RIGHT_SHOWN and sum(not x["positive"] for x in right) == RIGHT_SHOWN
    assert view["right_shown"] == 2 * RIGHT_SHOWN and view["hidden"] == 101 - 16 - 2 * RIGHT_SHOWN
    many = [dict(x, answer=1 - x["label"]) for x in examples[:100]]  # every answer wrong: 50 of each label
    capped = judgement_view(dict(id=2, scorer="detection", examples=many))
    assert capped["wrong_shown"] == 2 * WRONG_SHOWN and capped["hidden"] == 100 - 2 * WRONG_SHOWN
    assert sum(x["positive"] for x in capped["shown"]) == WRONG_SHOWN
    order = [x["index"] for x in view["examples"]]
    assert [x["index"] for x in view["shown"]] == sorted((x["index"] for x in view["shown"]), key=order.index)
