"""``autointerp report``: the static review site, built from the results database into one folder.

    >>> result = build_site("autointerp.db", "review/", Filters(layer=13), jobs=2)
    >>> result.units, result.pages, result.bytes, result.wall_s

The folder opens from the file system (``review/index.html``) with no network: the CSS and the JavaScript (sorting,
filtering and paging the leaderboard) ship in the package, the plots are inline SVG. It is built in a temporary
folder beside ``out`` and moved into place at the end, so an interrupted build leaves the previous report (or
nothing) and never half of one. An existing ``out`` is replaced only when it is an earlier report (it holds the
``.autointerp-report`` marker); any other non-empty folder is refused.

Unit pages are rendered by ``jobs`` worker processes (each with its own read-only connection and its own reused
figure); the index, the layer pages and the static files by the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from autointerp.errors import UsageError
from autointerp.report.data import Filters, open_readonly
from autointerp.report.pages import SiteModel
from autointerp.report.plots import UnitPlotter
from autointerp.report.render import render

MARKER = ".autointerp-report"
CHUNK = 64  # unit pages per task handed to a worker


@dataclass(frozen=True)
class BuildResult:
    out: Path
    units: int  # unit pages
    layers: int  # layer pages
    pages: int  # HTML files in all
    bytes: int  # size of the folder
    wall_s: float


def copy_static(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in resources.files("autointerp.report").joinpath("static").iterdir():
        if item.name.endswith((".css", ".js")):
            (dest / item.name).write_bytes(item.read_bytes())


def common(db: str | Path, has_layers: bool) -> dict[str, object]:
    return dict(source=f"{Path(db).name}", has_layers=has_layers)


def build_site(db: str | Path, out: str | Path, filters: Filters = Filters(), jobs: int | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """Build the report of ``db`` into ``out``; ``on_progress(done, total)`` after each chunk of unit pages."""
    t0 = time.time()
    out = Path(out)
    _check_out(out)
    data = open_readonly(db)
    try:
        site = SiteModel(data, filters)
        if not site.rows:
            raise UsageError(f"no units in {db} match the filters; drop a filter or run 'autointerp run --layer N'")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            base = common(db, bool(site.layers))
            copy_static(tmp / "static")
            (tmp / "units").mkdir()
            overview = site.layers_overview()
            (tmp / "index.html").write_text(
                render("index.html.j2", root="", overview=overview, **base, **site.index()), encoding="utf-8")
            if site.layers:
                (tmp / "layers").mkdir()
            for layer in sorted(site.layers):
                html = render("layer.html.j2", root="../", **base, **site.layer(layer))
                (tmp / "layers" / f"{layer}.html").write_text(html, encoding="utf-8")
            _unit_pages(str(db), tmp, filters, len(site.rows), jobs, on_progress)
            (tmp / MARKER).write_text("built by autointerp report; this folder is replaced by the next build\n")
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        data.close()
    files = [p for p in out.rglob("*") if p.is_file()]
    return BuildResult(out, len(site.rows), len(site.layers), sum(p.suffix == ".html" for p in files),
                       sum(p.stat().st_size for p in files), time.time() - t0)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; pass a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UsageError(f"{out} is not empty and is not an earlier report; pass an empty or new folder to --out")


# -- unit pages, in worker processes ------------------------------------------------------------------------------

_WORKER: tuple[SiteModel, UnitPlotter, Path, dict[str, object]] | None = None


def _init_worker(db: str, out: str, filters: Filters) -> None:
    global _WORKER
    site = SiteModel(open_readonly(db), filters)
    _WORKER = (site, UnitPlotter(), Path(out), common(db, bool(site.layers)))


def _render_units(indices: list[int]) -> int:
    assert _WORKER is not None
    site, plotter, out, base = _WORKER
    for i in indices:
        html = render("unit.html.j2", root="../", **base, **site.unit(i, plotter))
        (out / "units" / f"{site.rows[i]['slug']}.html").write_text(html, encoding="utf-8")
    return len(indices)


def _unit_pages(db: str, out: Path, filters: Filters, total: int, jobs: int | None,
                on_progress: Callable[[int, int], None] | None) -> None:
    jobs = max(1, min(jobs or os.cpu_count() or 1, 32))
    chunks = [list(range(i, min(i + CHUNK, total))) for i in range(0, total, CHUNK)]
    done = 0
    if jobs == 1 or len(chunks) == 1:
        _init_worker(db, str(out), filters)
        try:
            for chunk in chunks:
                done += _render_units(chunk)
                if on_progress:
                    on_progress(done, total)
        finally:
            _close_worker()
        return
    # fork: the workers start at once and inherit the imported modules (none holds an open database)
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(min(jobs, len(chunks)), mp_context=context, initializer=_init_worker,
                             initargs=(db, str(out), filters)) as pool:
        for future in as_completed([pool.submit(_render_units, c) for c in chunks]):
            done += future.result()
            if on_progress:
                on_progress(done, total)


def _close_worker() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER[0].data.close()
        _WORKER = None
