"""Is a results file sound, and can one be created? Checks that write or create nothing.

    >>> check_db("autointerp.db")            # [] when sound, else one line per problem (``autointerp db check``)
    >>> check_db_target("runs/new.db")       # UsageError unless the folder exists and is writable
    >>> quick_check(conn, "autointerp.db")   # what open_db runs first: UsageError when the file is damaged

``quick_check`` reads the whole file, so it runs once per process per file: a file found sound is remembered with its
device, inode, size and modification time, and checked again only when one of them has changed, by something other
than this process's own stores (``remember_writes``, called when a store closes, takes their writes as the file's new
state). A sweep, which opens the file once per item, reads it once; a file replaced or rewritten by another program
is checked again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from autointerp.errors import UsageError

_SOUND: dict[Path, tuple[int, int, int, int]] = {}  # resolved path -> (device, inode, size, mtime ns) when found sound


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


def quick_check(conn: sqlite3.Connection, path: str | Path) -> None:
    """UsageError when SQLite's ``quick_check`` (on ``conn``, open on ``path``) finds the file damaged; a no-op for a
    file found sound earlier in this process and unchanged since (see the module docstring)."""
    key, state = Path(path).resolve(), _state(path)
    if state is not None and _SOUND.get(key) == state:
        return
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        _SOUND.pop(key, None)
        raise UsageError(f"{path} is damaged ({'; '.join(problems)[:200]}); nothing was written to it. "
                         f"Details: autointerp db check --db {path}; restore a backup or pass another --db")
    if state is not None:
        _SOUND[key] = state


def remember_writes(path: str | Path) -> None:
    """Take the file as it is now as checked, when it was found sound before and is still the same file (device and
    inode): called when one of this process's stores closes, so that its own writes do not make the next open read
    the whole file again."""
    key = Path(path).resolve()
    if key in _SOUND:
        state = _state(path)
        if state is not None and state[:2] == _SOUND[key][:2]:
            _SOUND[key] = state
        else:
            del _SOUND[key]


def _state(path: str | Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
