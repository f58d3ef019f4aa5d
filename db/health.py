"""Is a results file sound, and can one be created? Checks that read or create nothing.

    >>> check_db("autointerp.db")            # [] when sound, else one line per problem (``autointerp db check``)
    >>> check_db_target("runs/new.db")       # UsageError unless the folder exists and is writable
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from autointerp.errors import UsageError


def check_db_target(path: str | Path) -> None:
    """UsageError unless a new database can be created at ``path`` (its folder exists and is writable); creates
    nothing. For an existing file use ``open_db``, which checks it."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--db {path} is a folder; give a file name, e.g. {path / 'autointerp.db'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--db {path}: the folder {folder} does not exist; create it or pass another --db")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--db {path}: the folder {folder} is not writable; pass another --db")


def check_db(path: str | Path) -> list[str]:
    """SQLite's full ``integrity_check`` and ``foreign_key_check`` of the file, read only: [] when it is sound, else
    one line per problem (at most 100). UsageError when there is no such file or it is not a database."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no database at {path}; pass an existing --db")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise UsageError(f"cannot open {path} ({e}); pass another --db") from None
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(100)").fetchall() if row[0] != "ok"]
        if not problems:
            problems = [f"table {t}, row {rowid}: no row {parent} for its foreign key"
                        for t, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall()][:100]
    except sqlite3.DatabaseError as e:
        problems = [f"cannot be read: {e}"]
    finally:
        conn.close()
    return problems
