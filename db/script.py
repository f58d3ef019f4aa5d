"""Multi-statement SQL scripts run inside the open transaction (the migrations' way to run their SQL).

    >>> import sqlite_utils
    >>> db = sqlite_utils.Database(memory=True)
    >>> db.conn.execute("BEGIN")  # doctest: +ELLIPSIS
    <sqlite3.Cursor ...>
    >>> run_script(db, "CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a;b');")
    >>> db.conn.in_transaction, [r[0] for r in db.conn.execute("SELECT x FROM t")]
    (True, ['a;b'])

``sqlite3.executescript`` would commit the open transaction first, so a script inside one runs statement by
statement. sqlite-utils' ``Database.executescript`` does that by testing every prefix of the script for completeness,
which is quadratic in its length (about 90 ms per new database for this schema, most of the fast tests' start-up);
this cuts the script only at semicolons and asks SQLite whether the statement is complete there, so a ``;`` inside a
string literal or a trigger body stays where it belongs.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database


def statements(sql: str) -> list[str]:
    """The complete statements of ``sql``, in order (a trailing statement without its ``;`` included)."""
    out: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                out.append(pending.strip())
            pending = ""
    if pending.strip().rstrip(";").strip():  # an incomplete tail: let SQLite say what is wrong with it
        out.append(pending.strip())
    return out


def run_script(db: Database, sql: str) -> None:
    """Run every statement of ``sql`` on ``db``'s connection, inside its open transaction when there is one."""
    cursor = db.conn.cursor()
    for statement in statements(sql):
        cursor.execute(statement)
