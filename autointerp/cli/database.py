"""``autointerp db check``: is the results file sound? SQLite's full integrity and foreign-key checks, read only."""

from __future__ import annotations

import typer

from autointerp.cli.app import ConfigOpt, DbOpt, FormatOpt, check_format, out, print_json
from autointerp.cli.sweeps import db_app  # the `db` group (db merge lives with the sweeps)
from autointerp.cli.text import inert


@db_app.command("check")
def db_check(db: DbOpt = None, config: ConfigOpt = None, output: FormatOpt = "table") -> None:
    """Full integrity check of the results file (every page, index and foreign key); writes nothing. Exit status 0
    when it is sound, 1 when it is damaged (each problem printed), 2 when there is no such file."""
    from autointerp.config import load_config
    from autointerp.db import check_db

    check_format(output, ("table", "json"))
    path = load_config(config, {"db": db}).db
    problems = check_db(path)
    if output == "json":
        print_json({"db": path, "ok": not problems, "problems": problems})
    elif problems:
        out.print(f"{inert(path)} is damaged ({len(problems)} problem(s) found, at most 100 shown):", markup=False)
        for problem in problems:
            out.print(f"  {inert(problem)}", markup=False, highlight=False)
        out.print("restore a backup, or copy what can be read: sqlite3 BAD.db .recover | sqlite3 NEW.db", markup=False)
    else:
        out.print(f"{inert(path)}: ok (integrity and foreign keys)", markup=False)
    if problems:
        raise typer.Exit(1)
