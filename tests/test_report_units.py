"""The review pages' pure parts, no model: the score checks and the escaping filters."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from markupsafe import Markup
from sqlite_utils import Database

from autointerp.report.checks import score_checks
from autointerp.report.render import environment, safe_svg, show_token, visible
from autointerp.errors import UsageError
from autointerp.scoring.score import pooled_correlation


def test_score_checks_recompute_the_pooled_score_with_an_interval_and_a_chance_level():
    rng = np.random.default_rng(0)
    true = rng.random((20, 64))
    pred = true + rng.random((20, 64))
    check = score_checks(true, pred, seed=1)
    assert check.score == pytest.approx(pooled_correlation(true.tolist(), pred.tolist()), abs=1e-12)
    assert check.ci_low < check.score < check.ci_high
    assert abs(check.control) < 0.1 and check.control_high < check.score  # re-paired windows carry no signal


def test_score_checks_of_a_simulation_that_ignores_the_text_sit_at_chance():
    rng = np.random.default_rng(2)
    true, pred = rng.random((20, 64)), rng.random((20, 64))
    check = score_checks(true, pred, seed=3)
    assert check.ci_low < 0.1 and check.control_high > check.score - 0.1


def test_score_checks_skip_failed_windows_and_say_why_when_undefined():
    rng = np.random.default_rng(4)
    true = rng.random((3, 8))
    check = score_checks(true, [true[0], None, true[2]])
    assert check.n_windows == 2 and check.score == pytest.approx(1.0)
    assert score_checks(true[:1], true[:1]).reason == "fewer than 2 simulated windows"
    constant = score_checks(np.ones((4, 8)), rng.random((4, 8)))
    assert constant.score is None and constant.control is None and constant.reason
    ragged = score_checks([[0, 1, 2], [1, 0]], [[0, 1, 2], [1, 0]])
    assert ragged.control is None and "unequal" in ragged.reason


def test_tokens_and_text_are_escaped_and_control_characters_made_visible():
    assert show_token("a\nb\tc\x1b[31m\u202e") == "a⏎b⇥c\\x1b[31m\\u202e"
    assert visible("line\nnext\x00") == "line\nnext\\x00"
    template = environment().from_string("<p>{{ t }}</p><p>{{ t|show_token }}</p><a title=\"{{ t }}\">x</a>")
    html = template.render(t='<script>alert(1)</script>"\x1b')
    assert "<script>" not in html and "&lt;script&gt;" in html and "\x1b" not in html and "\\x1b" in html
    assert "&#34;" in html  # a quote cannot close the attribute


def test_only_matplotlib_svg_is_marked_safe():
    assert isinstance(safe_svg("<svg></svg>"), Markup) and safe_svg(None) == ""
    with pytest.raises(ValueError):
        safe_svg("<script>alert(1)</script>")


def test_the_report_opens_only_a_current_autointerp_file_and_decodes_its_json(tmp_path):
    from autointerp.db import open_db
    from autointerp.report import open_readonly

    with open_db(tmp_path / "a.db") as store:
        store.db["analysis_runs"].insert({"id": "r1", "created_at": "2030", "command": "analyze", "config": "{}",
                                          "versions": "{}", "model": "m", "model_hash": "h", "corpus": "c",
                                          "n_tokens": 8, "layers": "[3]"})
        store.db["layer_analyses"].insert({"run_id": "r1", "layer": 3, "summary": '{"dead": 0.5}'})
    data = open_readonly(tmp_path / "a.db")
    assert data.analysis_layers()[3]["summary"] == {"dead": 0.5}
    data.close()

    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(UsageError, match="not an autointerp results database"):
        open_readonly(plain)
    db = Database(tmp_path / "a.db")
    last = db.execute("SELECT MAX(rowid) FROM _sqlite_migrations").fetchone()[0]
    db.execute("DELETE FROM _sqlite_migrations WHERE rowid = ?", [last])
    db.conn.commit()
    with pytest.raises(UsageError, match="older autointerp"):
        open_readonly(tmp_path / "a.db")
    db["_sqlite_migrations"].insert({"migration_set": "autointerp", "name": "m999_future", "applied_at": "2030"})
    with pytest.raises(UsageError, match=r"newer autointerp \(schema m999_future\)"):
        open_readonly(tmp_path / "a.db")
