"""A full disk: the results database cannot grow in the middle of ``autointerp run``. The run stops with one line
and exit status 1, the file passes SQLite's integrity check, and the same command with space again finishes the run
with every unit saved exactly once.

The real command runs in a child process (``python -m autointerp.cli run ...``). The database is kept from growing by
SQLite's ``max_page_count``: a write that needs one more page fails with SQLITE_FULL, the same error a full disk
gives. The limit belongs to a connection, not to the file, so the child opens its connections through a
``sitecustomize`` module this test writes (on ``PYTHONPATH``, for this child only) that sets it on every connection
to the results file; the product's code is not changed. A second case limits the size of every file the child
writes (``RLIMIT_FSIZE``): the operating system refuses the write, SQLite reports an I/O error.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HOOK = '''
import os, sqlite3

_connect = sqlite3.connect
_target = os.path.realpath(os.environ["FULL_DISK_DB"])
_pages = int(os.environ["FULL_DISK_MAX_PAGES"])


def connect(database, *args, **kwargs):
    conn = _connect(database, *args, **kwargs)
    if isinstance(database, (str, os.PathLike)) and os.path.realpath(os.fspath(database)) == _target:
        conn.execute(f"PRAGMA max_page_count = {_pages}")
    return conn


sqlite3.connect = connect
'''


def autointerp(*args: str, env: dict[str, str] | None = None, fsize: int | None = None
               ) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # in the child, before it runs Python: no file it writes may grow past fsize bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-m", "autointerp.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, preexec_fn=limit if fsize else None, timeout=600)


def pages(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA page_count").fetchone()[0]


def ledger(db: Path, layer: int) -> dict[int, list[tuple[str, str]]]:
    """{unit: [(status, finished_at), ...]} of every run of ``layer``: one entry per unit when nothing was done twice."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT u.unit, ur.status, ur.finished_at FROM unit_runs ur JOIN units u ON u.id = ur.unit_id "
                        "WHERE u.layer = ? ORDER BY u.unit", [layer]).fetchall()
    conn.close()
    out: dict[int, list[tuple[str, str]]] = {}
    for unit, status, finished in rows:
        out.setdefault(unit, []).append((status, finished))
    return out


@pytest.fixture(scope="module")
def started(tiny_checkpoints, tmp_path_factory):
    """A results file with a first run of three units (layer 1), and the pages one unit takes."""
    root = tmp_path_factory.mktemp("full-disk")
    corpus = root / "corpus"
    corpus.mkdir()
    from autointerp.corpus import stdlib_root
    from autointerp.db.store import open_db

    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        (corpus / name).write_bytes((stdlib_root() / name).read_bytes())
    db = root / "results.db"
    common = ["--model", str(tiny_checkpoints["opt"]), "--corpus", str(corpus)]
    first = autointerp("run", "--layer", "1", "--units", "0:3", *common, "--db", str(db))
    assert first.returncode == 0, first.stderr
    open_db(root / "empty.db").close()  # the schema alone
    return db, common, (pages(db) - pages(root / "empty.db")) / 3


@pytest.mark.parametrize("how", ["max_page_count", "file_size_limit"])
def test_a_full_disk_stops_the_run_and_the_same_command_finishes_it(how, started, isolated, tmp_path):
    db = isolated / "results.db"
    with sqlite3.connect(started[0]) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    common, per_unit = [*started[1], "--db", str(db)], started[2]
    command = ["run", "--layer", "2", "--units", "0:12", *common]
    if how == "max_page_count":
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK)
        limit = int(pages(db) + 3.5 * per_unit)
        full = autointerp(*command, env={"PYTHONPATH": str(hook), "FULL_DISK_DB": str(db),
                                         "FULL_DISK_MAX_PAGES": str(limit)})
    else:
        with sqlite3.connect(db) as conn:  # everything in the main file: the write-ahead log starts empty
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = autointerp(*command, fsize=int((pages(db) + 3.5 * per_unit) * 4096))
    assert full.returncode == 1, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), full.stderr
    assert ("full" if how == "max_page_count" else "I/O") in lines[0], lines[0]
    assert "Traceback" not in full.stderr + full.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    saved = ledger(db, 2)
    assert 1 <= len(saved) < 12, f"the disk should fill after a few units, not {len(saved)}"

    again = autointerp(*command)  # space again: the same command resumes the run
    assert again.returncode == 0, again.stderr
    done = ledger(db, 2)
    assert sorted(done) == list(range(12)) and all(len(v) == 1 for v in done.values()), done
    assert all(done[u] == saved[u] for u in saved), "a unit saved before the disk filled was done again"
    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT status FROM runs WHERE layer = 2").fetchall()
    per_unit_explanations = conn.execute(
        "SELECT u.unit, COUNT(*) FROM explanations e JOIN units u ON u.id = e.unit_id "
        "WHERE u.layer = 2 AND e.role = 'explanation' GROUP BY u.unit").fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert len(runs) == 1, runs  # resumed, not started over
    assert sorted(per_unit_explanations) == [(u, 1) for u in range(12)]
