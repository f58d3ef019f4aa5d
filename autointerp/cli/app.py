"""The ``autointerp`` app, its consoles and shared options, the helpers every command uses, and ``main``: bad input
prints one line saying what to do and exits with status 2; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import csv
import functools
import io
import os
import sqlite3
import sys
import time
import traceback
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from autointerp.cli.flags import config_flag
from autointerp.cli.text import cell, csv_cell, inert, json_text
from autointerp.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Explain and score every neuron of a language-model layer.")
# Piped or redirected output gets 120 columns (rich's default is 80, which truncates the wider tables); a
# terminal, or $COLUMNS, sets its own width.
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)
err = Console(stderr=True)

Opt = typer.Option
ConfigOpt = Annotated[Optional[str], Opt("--config", help="TOML config file (default: ./autointerp.toml).")]
# Settings shared by several commands: flag, type and help come from the config field (autointerp/config.py).
DbOpt = config_flag("db")
ModelOpt = config_flag("model")
CorpusOpt = config_flag("corpus")
TokensOpt = config_flag("tokens")
DeviceOpt = config_flag("device")
FormatOpt = Annotated[str, Opt("--format", help="table or json.")]
EvalCorpusOpt = Annotated[Optional[str], Opt("--corpus", help="Evaluation corpus (default stdlib, the held-out "
                                                               "split).")]


@app.callback()
def _root(debug: Annotated[bool, Opt("--debug", help="Show tracebacks.")] = False) -> None:
    """autointerp: natural-language explanations of MLP neurons, with honest scores."""


class LazyProgress(Progress):
    """A transient progress display that appears at the first step of work (``update`` or ``advance``): entering it
    shows nothing, so a command refused before any work leaves only its one-line error, not the blank line that a
    started display leaves behind."""

    def start(self) -> None:  # ``with progress:`` calls it: wait for the work
        pass

    def update(self, *args, **kwargs) -> None:
        self._show()
        super().update(*args, **kwargs)

    def advance(self, *args, **kwargs) -> None:
        self._show()
        super().advance(*args, **kwargs)

    def stop(self) -> None:
        if self.live.is_started:
            super().stop()

    def _show(self) -> None:
        if not self.live.is_started:
            super().start()


def capture_progress():
    """A progress display on stderr and the ``on_capture_start`` hook that adds the capture bar (tokens, tok/s).

    Transient: it disappears when done, and it appears only once the capture has begun, so a failed run leaves only
    its one-line error."""
    progress = LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err, transient=True)

    def on_capture_start(total: int | None):
        task = progress.add_task("capture (tokens)", total=total, rate="")
        t0 = time.time()

        def advance(n: int) -> None:
            progress.advance(task, n)
            progress.update(task, rate=f"{progress.tasks[task].completed / max(time.time() - t0, 1e-9):,.0f} tok/s")

        return advance

    return progress, on_capture_start


def probe_progress(total_tokens: int):
    """A transient progress display on stderr and the ``on_progress`` hook of ``pipeline.probe``: labelled tokens
    collected, then layers whose probes are fitted."""
    progress = LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=err, transient=True)
    tasks: dict[str, int] = {}

    def on_progress(event: str, n: int) -> None:
        if event == "tokens":
            if "tokens" not in tasks:
                tasks["tokens"] = progress.add_task("collect (labelled tokens)", total=total_tokens)
            progress.advance(tasks["tokens"], n)
        elif event == "layers":
            if "tokens" in tasks:
                progress.update(tasks["tokens"], visible=False)
            tasks["layers"] = progress.add_task("fit probes (layers)", total=n)
        elif event == "layer":
            progress.advance(tasks["layers"], 1)

    return progress, on_progress


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def open_existing(path: str):
    """Open a results DB for reading; a missing file is an error, not a new empty DB."""
    from pathlib import Path

    from autointerp.db import open_db

    if not Path(path).is_file():
        raise UsageError(f"no results database at {path}; run 'autointerp run --layer N' first or pass --db")
    return open_db(path)


def dictionary_units(units: str | None, dictionary: str | None) -> tuple[str | None, str | None]:
    """``--units sae:PATH`` means every feature of that dictionary: returns (units, dictionary) with it split out."""
    if units is None or not units.startswith("sae:"):
        return units, dictionary
    if dictionary is not None:
        raise UsageError("give the dictionary once: --units sae:PATH, or --dictionary PATH --units 0:32")
    return None, units[len("sae:"):]


def check_format(value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"--format {value!r} is not supported here; use {' or '.join(allowed)}")


def print_json(value) -> None:
    """JSON on stdout: exact values, no raw control character (``text.json_text``)."""
    sys.stdout.write(json_text(value) + "\n")


def emit(rows: list[dict], cols: list[str], output: str) -> None:
    """Rows as json (exact), csv (inert text, no cell a spreadsheet would run) or a table (inert text)."""
    if output == "json":
        print_json(rows)
    elif output == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: csv_cell(r.get(c)) for c in cols} for r in rows)
        sys.stdout.write(buf.getvalue())
    else:
        if not rows:
            out.print("no scored explanations match; run: autointerp run --layer N")
            return
        table = Table(*cols)
        for r in rows:
            table.add_row(*(Text(fmt(v)) if isinstance(v, float) else cell(v) for v in (r.get(c) for c in cols)))
        out.print(table)


@functools.cache
def _command() -> typer.core.TyperGroup:
    """The command tree, built once per process (``app(...)`` rebuilds it from the signatures on every call, about
    60 ms: most of the in-process CLI tests' time)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the command
    argv = [a for a in argv if a != "--debug"]
    try:
        code = _command()(args=argv, standalone_mode=False)  # typer returns 130 for Ctrl-C, an exit code for Exit
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except UsageError as e:
        if debug:
            traceback.print_exc()
        err.print(f"error: {inert(e)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.exceptions.TyperException as e:  # bad flags (typer's click errors derive from it): status 2
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        err.print(f"error: {inert(message)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted: finished units are saved; run the same command again to resume", markup=False)
        sys.exit(130)
    except sqlite3.Error as e:
        if debug:
            traceback.print_exc()
        if getattr(e, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):  # bad input: the file
            err.print(f"error: the database is damaged ({inert(e)}); see autointerp db check, or pass another --db",
                      markup=False)
            sys.exit(2)
        err.print(f"error: database problem: {inert(e)}; pass another --db or check the file", markup=False,
                  soft_wrap=True)
        sys.exit(1)
