"""Shared test data builders (imported by test files; pytest fixtures that use them live in the test files)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# Untrusted text, as a corpus may hold it: markup, event handlers, script URLs, terminal escapes, bidi overrides.
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "\x1b[31mred\x1b[0m",
    "\u202eevil",
    '"><svg onload=alert(1)>',
    "</textarea><script>alert(2)</script>",
]
SECRET = "sk-reviewSECRETabcdefghijklmnop1234"


def hostile_corpus(folder: Path) -> Path:
    """A folder corpus whose text is mostly hostile strings, mixed with a little Python so units fire variously."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(400):
        lines.append(f"def f{i}(x):  # {HOSTILE[i % len(HOSTILE)]}")
        lines.append(f"    return '{HOSTILE[(i + 3) % len(HOSTILE)]}' + str(x * {i})")
    (folder / "hostile.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def plant_hostile_rows(db: Path) -> None:
    """Write hostile text where a run puts text from outside: a window's tokens, an explanation, a config value,
    the top tokens, an LLM call's messages, and a secret that an older autointerp might have stored."""
    conn = sqlite3.connect(db)
    with conn:
        (wid, tokens) = conn.execute("SELECT id, tokens FROM windows WHERE split = 'test' ORDER BY id LIMIT 1").fetchone()
        tokens = json.loads(tokens)
        tokens[: len(HOSTILE)] = HOSTILE[: len(tokens)]
        conn.execute("UPDATE windows SET tokens = ? WHERE id = ?", [json.dumps(tokens), wid])
        (eid, uid, run_id) = conn.execute("SELECT id, unit_id, run_id FROM explanations ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE explanations SET text = ?, explainer_config = ? WHERE id = ?",
                     [" ".join(HOSTILE), json.dumps({"note": HOSTILE[1], "api_key": SECRET}), eid])
        conn.execute("UPDATE unit_stats SET top_tokens = ? WHERE unit_id = ?",
                     [json.dumps([[t, 3, 4] for t in HOSTILE]), uid])
        (config,) = conn.execute("SELECT config FROM runs WHERE id = ?", [run_id]).fetchone()
        config = json.loads(config) | {"corpus_note": HOSTILE[0], "token": SECRET, "nested": {"password": SECRET}}
        conn.execute("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(config), run_id])
        messages = [{"role": "user", "content": HOSTILE[0]},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "1", "type": "function", "function": {"name": "run_text", "arguments": HOSTILE[1]}}]}]
        response = {"choices": [{"message": {"role": "assistant", "content": HOSTILE[2]}}]}
        conn.execute("INSERT INTO llm_calls (run_id, unit_id, profile, model, purpose, messages, response, tokens_in,"
                     " tokens_out, latency_s, cost_usd, error, attempts, created_at) VALUES (?, ?, 'p', 'm', 'explain',"
                     " ?, ?, 10, 5, 0.1, 0.001, NULL, 1, '2026-01-01T00:00:00+00:00')",
                     [run_id, uid, json.dumps(messages), json.dumps(response)])
    conn.close()


def run_cli(*args: str) -> None:
    """Run the real ``autointerp`` command in-process outside a test's capsys (for module-scoped builders)."""
    from autointerp.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        assert not e.code, f"autointerp {' '.join(args[:3])} failed with status {e.code}"


def hostile_results(root: Path, model: str) -> Path:
    """A real baseline run (12 units of layer 1) and analysis over a hostile corpus, then hostile rows planted."""
    corpus = hostile_corpus(root / "corpus")
    db = root / "results.db"
    for args in (["run", "--layer", "1", "--units", "0:12"], ["analyze", "--layer", "1"]):
        run_cli(*args, "--model", model, "--corpus", str(corpus), "--db", str(db))
    plant_hostile_rows(db)
    return db
