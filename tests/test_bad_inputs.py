"""Bad input, across every command: exit status 2, one line on stderr, no traceback, and nothing written, neither a
database file where there was none nor a change to an existing one (no run row, no migration, no WAL frame)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autointerp.db import NewRun, open_db

LONG_TEXT = "def f(x):\n    return x\n" * 200  # far more tokens than the tiny model's 80 positions

# (id, arguments). Placeholders: {tiny} a tiny checkpoint, {corpus} a good corpus folder, {bad} a folder of bad inputs
# (see the `bad` fixture). Each runs once without a database and once against an existing one.
CASES = [
    # run: arguments
    ("run-no-layer", "run --model {tiny} --corpus {corpus}"),
    ("run-layer-negative", "run --layer -1 --model {tiny} --corpus {corpus}"),
    ("run-layer-too-big", "run --layer 99 --model {tiny} --corpus {corpus}"),
    ("run-layer-not-int", "run --layer one --model {tiny} --corpus {corpus}"),
    ("run-units-out-of-range", "run --layer 1 --units 0:9999 --model {tiny} --corpus {corpus}"),
    ("run-units-garbage", "run --layer 1 --units a:b --model {tiny} --corpus {corpus}"),
    ("run-units-list-out-of-range", "run --layer 1 --units 3,70000 --model {tiny} --corpus {corpus}"),
    ("run-tokens-zero", "run --layer 1 --tokens 0 --model {tiny} --corpus {corpus}"),
    ("run-tokens-negative", "run --layer 1 --tokens -5 --model {tiny} --corpus {corpus}"),
    ("run-tokens-below-window", "run --layer 1 --tokens 10 --model {tiny} --corpus {corpus}"),
    ("run-window-one", "run --layer 1 --window 1 --model {tiny} --corpus {corpus}"),
    ("run-window-past-positions", "run --layer 1 --window 500 --model {tiny} --corpus {corpus}"),
    ("run-batch-size-zero", "run --layer 1 --batch-size 0 --model {tiny} --corpus {corpus}"),
    ("run-concurrency-zero", "run --layer 1 --concurrency 0 --model {tiny} --corpus {corpus}"),
    ("run-revise-negative", "run --layer 1 --revise-rounds -1 --model {tiny} --corpus {corpus}"),
    ("run-tool-calls-negative", "run --layer 1 --max-tool-calls -1 --model {tiny} --corpus {corpus}"),
    ("run-best-of-zero", "run --layer 1 --best-of 0 --model {tiny} --corpus {corpus}"),
    ("run-max-usd-negative", "run --layer 1 --max-usd -1 --model {tiny} --corpus {corpus}"),
    ("run-max-calls-negative", "run --layer 1 --max-calls -1 --model {tiny} --corpus {corpus}"),
    ("run-dtype-unknown", "run --layer 1 --dtype int8 --model {tiny} --corpus {corpus}"),
    ("run-format-unknown", "run --layer 1 --format xml --model {tiny} --corpus {corpus}"),
    ("run-flag-unknown", "run --layer 1 --no-such-flag --model {tiny} --corpus {corpus}"),
    # run: the model and the device
    ("run-model-missing", "run --layer 1 --model {bad}/no-such-model --corpus {corpus}"),
    ("run-model-is-a-file", "run --layer 1 --model {bad}/short.txt --corpus {corpus}"),
    ("run-model-no-config", "run --layer 1 --model {bad}/empty --corpus {corpus}"),
    ("run-model-corrupt-weights", "run --layer 1 --model {bad}/corrupt-model --corpus {corpus}"),
    ("run-model-corrupt-config", "run --layer 1 --model {bad}/corrupt-config --corpus {corpus}"),
    ("run-device-unknown", "run --layer 1 --device tpu --model {tiny} --corpus {corpus}"),
    ("run-device-no-gpu", "run --layer 1 --device cuda:7 --model {tiny} --corpus {corpus}"),
    # run: the corpus
    ("run-corpus-missing", "run --layer 1 --model {tiny} --corpus {bad}/no-such-corpus"),
    ("run-corpus-empty-folder", "run --layer 1 --model {tiny} --corpus {bad}/empty"),
    ("run-corpus-empty-files", "run --layer 1 --model {tiny} --corpus {bad}/blank-files"),
    ("run-corpus-too-short", "run --layer 1 --model {tiny} --corpus {bad}/short.txt"),
    ("run-corpus-jsonl-not-json", "run --layer 1 --model {tiny} --corpus {bad}/broken.jsonl"),
    ("run-corpus-jsonl-no-text", "run --layer 1 --model {tiny} --corpus {bad}/no-text.jsonl"),
    ("run-corpus-jsonl-empty-texts", "run --layer 1 --model {tiny} --corpus {bad}/blank-texts.jsonl"),
    ("run-corpus-hf-missing", "run --layer 1 --model {tiny} --corpus hf:{bad}/no-such-dataset"),
    # run: components, dictionaries, config, database path
    ("run-explainer-unknown", "run --layer 1 --explainer nosuch --model {tiny} --corpus {corpus}"),
    ("run-simulator-unknown", "run --layer 1 --simulator nosuch --model {tiny} --corpus {corpus}"),
    ("run-explainer-no-key", "run --layer 1 --explainer openai:gpt-4o-mini --model {tiny} --corpus {corpus}"),
    ("run-dictionary-empty-folder", "run --layer 1 --dictionary {bad}/empty --model {tiny} --corpus {corpus}"),
    ("run-dictionary-is-a-file", "run --layer 1 --dictionary {bad}/short.txt --model {tiny} --corpus {corpus}"),
    ("run-dictionary-bad-cfg", "run --layer 1 --units sae:{bad}/bad-sae --model {tiny} --corpus {corpus}"),
    ("run-dictionary-twice", "run --layer 1 --units sae:{bad}/empty --dictionary {bad}/empty --model {tiny}"),
    ("run-config-missing", "run --layer 1 --config {bad}/no-such.toml --model {tiny} --corpus {corpus}"),
    ("run-config-not-toml", "run --layer 1 --config {bad}/broken.toml --model {tiny} --corpus {corpus}"),
    ("run-config-unknown-key", "run --layer 1 --config {bad}/unknown-key.toml --model {tiny} --corpus {corpus}"),
    ("run-config-bad-value", "run --layer 1 --config {bad}/bad-value.toml --model {tiny} --corpus {corpus}"),
    ("run-db-is-a-folder", "run --layer 1 --db {bad}/empty --model {tiny} --corpus {corpus}"),
    ("run-db-folder-missing", "run --layer 1 --db {bad}/no-such-folder/x.db --model {tiny} --corpus {corpus}"),
    # analyze and probe
    ("analyze-layer-too-big", "analyze --layer 99 --model {tiny} --corpus {corpus}"),
    ("analyze-layer-garbage", "analyze --layer x:y --model {tiny} --corpus {corpus}"),
    ("analyze-corpus-too-short", "analyze --layer 1 --model {tiny} --corpus {bad}/short.txt"),
    ("analyze-tokens-zero", "analyze --layer 1 --tokens 0 --model {tiny} --corpus {corpus}"),
    ("analyze-format-csv", "analyze --layer 1 --format csv --model {tiny} --corpus {corpus}"),
    ("probe-concept-unknown", "probe --layer 1 --concept nosuch --model {tiny} --corpus {corpus}"),
    ("probe-method-unknown", "probe --layer 1 --concept comment --method foo --model {tiny} --corpus {corpus}"),
    ("probe-concept-file-missing", "probe --layer 1 --concept {bad}/no-such.jsonl --model {tiny}"),
    ("probe-units-range", "probe --layer 1 --concept comment --units 0:3 --model {tiny} --corpus {corpus}"),
    ("probe-context-negative", "probe --layer 1 --concept comment --context -1 --model {tiny} --corpus {corpus}"),
    ("probe-layer-too-big", "probe --layer 99 --concept comment --model {tiny} --corpus {corpus}"),
    # lens
    ("lens-empty-text", "lens '' --model {tiny}"),
    ("lens-top-zero", "lens 'def f():' --top 0 --model {tiny}"),
    ("lens-top-past-vocab", "lens 'def f():' --top 100000 --model {tiny}"),
    ("lens-text-past-positions", "lens {long} --model {tiny}"),
    ("lens-position-out-of-range", "lens 'def f():' --position 99 --model {tiny}"),
    ("lens-device-unknown", "lens 'def f():' --device tpu --model {tiny}"),
    # sae train and eval
    ("sae-out-is-a-file", "sae train --layer 1 --out {bad}/short.txt --model {tiny} --fit-corpus {corpus}"),
    ("sae-out-not-empty", "sae train --layer 1 --out {bad}/blank-files --model {tiny} --fit-corpus {corpus}"),
    ("sae-out-under-a-file", "sae train --layer 1 --out {bad}/short.txt/sae --model {tiny} --fit-corpus {corpus}"),
    ("sae-epochs-zero", "sae train --layer 1 --out {bad}/new-sae --epochs 0 --model {tiny} --fit-corpus {corpus}"),
    ("sae-epochs-negative", "sae train --layer 1 --out {bad}/new-sae --epochs -1 --model {tiny}"),
    ("sae-fit-tokens-zero", "sae train --layer 1 --out {bad}/new-sae --fit-tokens 0 --model {tiny}"),
    ("sae-eval-tokens-negative", "sae train --layer 1 --out {bad}/new-sae --eval-tokens -1 --model {tiny}"),
    ("sae-ratio-zero", "sae train --layer 1 --out {bad}/new-sae --ratio 0 --model {tiny}"),
    ("sae-alpha-negative", "sae train --layer 1 --out {bad}/new-sae --alpha -1 --model {tiny}"),
    ("sae-kind-unknown", "sae train --layer 1 --out {bad}/new-sae --kind foo --model {tiny}"),
    ("sae-site-unknown", "sae train --layer 1 --out {bad}/new-sae --site foo --model {tiny}"),
    ("sae-layer-too-big", "sae train --layer 99 --out {bad}/new-sae --model {tiny} --fit-corpus {corpus}"),
    ("sae-fit-corpus-short", "sae train --layer 1 --out {bad}/new-sae --model {tiny} --fit-corpus {bad}/short.txt"),
    ("sae-eval-not-a-dictionary", "sae eval {bad}/empty --layer 1 --model {tiny} --corpus {corpus}"),
    ("sae-eval-a-file", "sae eval {bad}/short.txt --layer 1 --model {tiny} --corpus {corpus}"),
    ("sae-eval-tokens-zero", "sae eval {bad}/bad-sae --layer 1 --eval-tokens 0 --model {tiny} --corpus {corpus}"),
    # reading results
    ("show-not-a-unit", "show 13"),
    ("show-garbage-unit", "show a/b"),
    ("show-windows-negative", "show 1/3 --windows -3"),
    ("show-format-csv", "show 1/3 --format csv"),
    ("leaderboard-limit-negative", "leaderboard --limit -5"),
    ("leaderboard-by-unknown", "leaderboard --by model"),
    ("leaderboard-sort-unknown", "leaderboard --sort random"),
    ("leaderboard-format-xml", "leaderboard --format xml"),
    ("leaderboard-config-broken", "leaderboard --config {bad}/broken.toml"),
    ("models-format-csv", "models --format csv"),
    ("models-config-unknown-key", "models --config {bad}/unknown-key.toml"),
    ("db-check-format-csv", "db check --format csv"),
    ("db-merge-source-missing", "db merge {bad}/merged.db {bad}/no-such.db"),
    ("db-merge-no-source", "db merge {bad}/merged.db"),
    # review pages, dictionaries' files, sweeps
    ("report-out-is-a-file", "report --out {bad}/short.txt"),
    ("serve-port-out-of-range", "serve --port 99999"),
    ("serve-port-garbage", "serve --port abc"),
    ("sae-inspect-missing", "sae inspect {bad}/no-such-dictionary"),
    ("sae-inspect-a-file", "sae inspect {bad}/short.txt"),
    ("sae-export-missing", "sae export {bad}/no-such-dictionary --to saelens --out {bad}/exported"),
    ("sweep-run-plan-missing", "sweep run {bad}/no-such-plan.toml"),
    ("sweep-run-plan-broken", "sweep run {bad}/broken.toml"),
    ("sweep-status-plan-missing", "sweep status {bad}/no-such-plan.toml"),
    ("sweep-report-plan-missing", "sweep report {bad}/no-such-plan.toml"),
    ("sweep-schedule-plan-missing", "sweep schedule {bad}/no-such-plan.toml"),
    ("command-unknown", "frobnicate"),
]
NO_DB_ONLY = [  # bad only while there is no database
    ("show-no-database", "show 1/3"),
    ("leaderboard-no-database", "leaderboard"),
    ("db-check-no-database", "db check"),
]


# Cases that get as far as loading the model (its layers, positions, vocabulary or weights decide): integration
# tests on a tiny checkpoint (marked slow by conftest). Every other case must fail before any model is loaded: the
# fast tier runs them with a model path that does not exist, and checks the error is not about it.
NEEDS_MODEL = {
    "run-layer-negative", "run-layer-too-big", "run-units-out-of-range", "run-units-garbage",
    "run-units-list-out-of-range", "run-window-past-positions", "run-model-corrupt-weights",
    "run-model-corrupt-config", "run-corpus-empty-files", "run-corpus-too-short", "run-corpus-jsonl-empty-texts",
    "run-dictionary-empty-folder", "run-dictionary-is-a-file", "run-dictionary-bad-cfg", "analyze-layer-too-big",
    "analyze-layer-garbage", "analyze-corpus-too-short", "probe-layer-too-big", "lens-empty-text", "lens-top-past-vocab",
    "lens-text-past-positions", "lens-position-out-of-range", "sae-layer-too-big", "sae-fit-corpus-short",
    "sae-eval-not-a-dictionary", "sae-eval-a-file",
}
FAST = [c for c in CASES if c[0] not in NEEDS_MODEL]
WITH_MODEL = [c for c in CASES if c[0] in NEEDS_MODEL]


def bad_inputs(root):
    """A folder of bad inputs (kept outside the test's working directory)."""
    (root / "empty").mkdir()
    (root / "blank-files").mkdir()
    for name in ("a.py", "b.txt"):
        (root / "blank-files" / name).write_text("   \n")
    (root / "short.txt").write_text("x = 1\n")
    (root / "broken.jsonl").write_text('{"text": "fine"}\n{not json\n')
    (root / "no-text.jsonl").write_text('{"body": "x"}\n')
    (root / "blank-texts.jsonl").write_text('{"text": ""}\n{"text": "  "}\n')
    (root / "broken.toml").write_text("layer = [\n")
    (root / "unknown-key.toml").write_text("no_such_setting = 1\n")
    (root / "bad-value.toml").write_text('window = "wide"\n')
    (root / "bad-sae").mkdir()
    (root / "bad-sae" / "cfg.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, tiny_checkpoints):
    """The bad inputs, and damaged copies of a tiny checkpoint."""
    root = bad_inputs(tmp_path_factory.mktemp("bad"))
    tiny = tiny_checkpoints["opt"]
    for name, damage in (("corrupt-model", "model.safetensors"), ("corrupt-config", "config.json")):
        shutil.copytree(tiny, root / name)
        (root / name / damage).write_bytes(b"\x00garbage" * 64)
    return root


def expand(args: str, tiny, corpus, bad) -> list[str]:
    import shlex

    return [a.format(tiny=tiny, corpus=corpus, bad=bad, long=LONG_TEXT) for a in shlex.split(args)]


def db_state(path) -> str:
    """Everything the database holds, as SQL (so a write that is still in the WAL counts too)."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def db_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("autointerp.db"))


def assert_bad_input(code, out, err, args):
    assert code == 2, f"{args}: exit {code}\nstdout: {out}\nstderr: {err}"
    lines = err.rstrip("\n").splitlines()  # a blank line before the error (a progress display stopped) counts
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: stderr is not one error line: {err!r}"
    assert "Traceback" not in out + err


def check_case(cli, argv, where, before=None):
    code, out, err = cli(*argv)
    assert_bad_input(code, out, err, argv)
    if before is None:
        assert db_files(where) == [], f"{argv} left {db_files(where)}"
    else:
        assert db_state(where) == before, f"{argv} changed the database"
    return err


@pytest.mark.parametrize("name,args", FAST + NO_DB_ONLY, ids=[c[0] for c in FAST + NO_DB_ONLY])
def test_bad_input_before_any_model_creates_no_database(name, args, cli, text_corpus, bad, isolated, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    argv = expand(args, bad / "model-never-loaded", text_corpus, bad)
    err = check_case(cli, argv, isolated)
    assert "model-never-loaded" not in err or name.startswith("run-model"), f"{name} got as far as the model: {err}"
    assert not (bad / "new-sae").exists() and not (bad / "merged.db").exists() and not (bad / "exported").exists()


@pytest.mark.parametrize("name,args", WITH_MODEL, ids=[c[0] for c in WITH_MODEL])
def test_bad_input_found_with_the_model_creates_no_database(name, args, cli, tiny_checkpoints, text_corpus,
                                                            bad_models, isolated, monkeypatch):
    argv = expand(args, tiny_checkpoints["opt"], text_corpus, bad_models)
    check_case(cli, argv, isolated)


@pytest.fixture
def existing_db(isolated):
    """A database with one finished run in it."""
    path = isolated / "autointerp.db"
    with open_db(path) as store:
        run_id = store.start_run(NewRun(run_key="k", command="autointerp run", config={}, versions={}, model="m",
                                        model_hash="h", layer=1, unit_kind="neuron", corpus="c", seed=0,
                                        explainer="baseline", simulator="baseline"))
        store.finish_run(run_id, "done", 1.0)
    return path


@pytest.mark.parametrize("name,args", FAST, ids=[c[0] for c in FAST])
def test_bad_input_before_any_model_leaves_a_database_unchanged(name, args, cli, text_corpus, bad, existing_db,
                                                                monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    check_case(cli, expand(args, bad / "model-never-loaded", text_corpus, bad), existing_db, db_state(existing_db))


@pytest.mark.parametrize("name,args", WITH_MODEL, ids=[c[0] for c in WITH_MODEL])
def test_bad_input_found_with_the_model_leaves_a_database_unchanged(name, args, cli, tiny_checkpoints, text_corpus,
                                                                    bad_models, existing_db):
    argv = expand(args, tiny_checkpoints["opt"], text_corpus, bad_models)
    check_case(cli, argv, existing_db, db_state(existing_db))


def cli_commands() -> set[str]:
    """Every command of the CLI, subcommands by their full name ("sae train")."""
    import typer

    from autointerp.cli.app import app

    def walk(group, prefix: str) -> set[str]:
        names = set()
        for name, command in group.commands.items():
            full = f"{prefix} {name}".strip()
            names |= walk(command, full) if getattr(command, "commands", None) else {full}
        return names

    return walk(typer.main.get_command(app), "")


def test_the_table_reaches_every_command_once_per_name():
    """A command added to the CLI without a bad input of its own here fails this test; so does a repeated id (the
    parametrized tests would run one case under two names)."""
    names = [c[0] for c in CASES + NO_DB_ONLY]
    assert len(set(names)) == len(names) and NEEDS_MODEL <= set(names)
    covered = {" ".join(args.split()[:2]) for _, args in CASES} | {args.split()[0] for _, args in CASES}
    missing = cli_commands() - covered
    assert not missing, f"commands without a bad input in CASES: {sorted(missing)}"


def test_a_damaged_database_is_refused_before_anything_is_written(cli, text_corpus, isolated):
    path = isolated / "autointerp.db"
    with open_db(path) as store:  # enough rows for pages past the header and the schema
        for i in range(300):
            run_id = store.start_run(NewRun(run_key=f"k{i}", command="x" * 200, config={"pad": "y" * 300},
                                            versions={}, model="m", model_hash="h", layer=1, unit_kind="neuron",
                                            corpus="c", seed=0, explainer="baseline", simulator="baseline"))
            store.finish_run(run_id, "done", 1.0)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for p in range(len(data) // page // 2, len(data) // page // 2 + 6):  # damage pages in the middle of the file
        data[p * page + 8: p * page + 400] = b"\xff" * 392
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    for args in (["run", "--layer", "1", "--model", str(isolated / "never-loaded"), "--corpus", str(text_corpus),
                  "--units", "0:2"], ["leaderboard"], ["leaderboard", "--by", "explainer"]):
        code, out, err = cli(*args)
        assert_bad_input(code, out, err, args)
        assert "damaged" in err or "corrupt" in err or "malformed" in err, err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # nothing written
    assert db_files(isolated) == ["autointerp.db"]

    code, out, err = cli("db", "check")
    assert code == 1 and "damaged" in out and len(out.splitlines()) >= 3, out + err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_db_check_passes_a_sound_database(cli, existing_db):
    code, out, err = cli("db", "check")
    assert code == 0 and "ok" in out, err
    code, out, _ = cli("db", "check", "--format", "json")
    assert code == 0 and '"ok": true' in out


class _NoSuchRepo(BaseHTTPRequestHandler):
    """A hub that has no repository at all (as huggingface.co answers an unknown id)."""

    def do_GET(self):
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow  # a process of its own: the hub client reads its endpoint and offline mode at import
@pytest.mark.parametrize("hub", ["unreachable", "without-the-model"])
def test_a_hub_id_neither_cached_nor_on_a_reachable_hub_is_refused_at_once(hub, tmp_path):
    """Not the hub client's minute of retries, each printed: one line at once, and no database."""
    server = None
    if hub == "unreachable":
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _NoSuchRepo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"))  # the hub at 127.0.0.1, an empty cache
    try:
        proc = subprocess.run([sys.executable, "-m", "autointerp.cli", "run", "--layer", "1", "--model",
                               "some-org/not-cached"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        if server is not None:
            server.shutdown()
    assert_bad_input(proc.returncode, proc.stdout, proc.stderr, "run --model some-org/not-cached")
    assert "Retrying" not in proc.stderr
    expected = "the hub cannot be reached" if hub == "unreachable" else "the Hugging Face hub has no such model"
    assert expected in proc.stderr and "some-org/not-cached" in proc.stderr, proc.stderr
    assert db_files(tmp_path) == []
