"""What ``serve`` keeps between requests: the site's model, refreshed as units arrive, and the pages it rendered.

    >>> state = SiteState("autointerp.db", Filters())     # reads the unit list once
    >>> state.refresh()                                   # after a commit elsewhere: re-reads only what changed
    >>> state.snapshot.rows, state.snapshot.stamps         # units in page order; unit_id -> refresh that changed it

One thread calls ``refresh`` (``serve`` polls SQLite's ``data_version`` a few times a second; the first refresh
after a commit re-reads only the units written since the last one: ``ReportData.changed_units``); the request
threads read ``state.snapshot``, an immutable value swapped whole, so a page never sees half a refresh and never
waits for one.

``PageCache`` holds rendered pages under a key that says what they were built from (``SiteState.key``): a unit
page's own stamp and its neighbours in the unit list; a layer page's analysis and its units; the index any refresh
at all. A page whose key moved is rendered again by one thread while the others are answered from the
previous copy (or wait for the first one); the index, which every commit moves, is rendered at most once every
``index_max_age_s``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from autointerp.report.data import DELETIONS, Filters, ReportData, open_readonly, row_order
from autointerp.report.pages import filter_layers, name_rows


@dataclass(frozen=True)
class Snapshot:
    number: int  # refreshes that found a commit, so far
    rows: list[dict[str, Any]]  # ``SiteModel.rows``
    layers: dict[int, dict[str, Any]]  # ``SiteModel.layers``
    by_slug: dict[str, int]
    stamps: dict[int, int]  # unit_id -> the refresh number that last saw it written
    layers_stamp: int  # the refresh that last changed the layer analyses
    layer_units: dict[int, int]  # layer -> a hash of its units' names and slugs (what a layer page links to)
    marks: dict[str, Any] = field(repr=False)


class SiteState:
    def __init__(self, db: str, filters: Filters = Filters()):
        self.filters = filters
        self.data: ReportData = open_readonly(db)  # the refresher's own connection
        self.data.conn.execute("PRAGMA query_only = ON")
        self._version = self._data_version()
        self._lock = threading.Lock()  # one refresh at a time (the poller's; a test's)
        self.refresh_s = 0.0  # how long the last refresh took
        self.snapshot = self._full(0)

    def _data_version(self) -> int:
        return self.data.conn.execute("PRAGMA data_version").fetchone()[0]

    def _full(self, number: int) -> Snapshot:
        marks = self.data.marks()
        rows = name_rows(self.data.unit_rows(self.filters))
        layers = filter_layers(self.data.analysis_layers(), self.filters)
        return Snapshot(number, rows, layers, {r["slug"]: i for i, r in enumerate(rows)},
                        {r["unit_id"]: number for r in rows}, number, layer_units(rows), marks)

    def refresh(self) -> bool:
        """Read what was committed since the last refresh; False when nothing was (one PRAGMA, no query)."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        version = self._data_version()
        if version == self._version:
            return False
        t0 = time.perf_counter()
        self._version = version
        old = self.snapshot
        number = old.number + 1
        with self.data.conn:  # one read transaction: the marks and the rows agree
            self.data.conn.execute("BEGIN")
            marks = self.data.marks()
            if any(marks[k] < old.marks[k] for k in DELETIONS):  # rows were deleted: read everything again
                self.snapshot = self._full(number)
                self.refresh_s = time.perf_counter() - t0
                return True
            changed = self.data.changed_units(old.marks)
            fresh = {r["unit_id"]: r for r in self.data.unit_rows(self.filters, changed)} if changed else {}
            layers = filter_layers(self.data.analysis_layers(), self.filters)
        rows = [r for r in old.rows if r["unit_id"] not in changed] + list(fresh.values())
        rows.sort(key=row_order)
        rows = name_rows([dict(r) for r in rows])  # new dicts: a page rendering now keeps the rows it has
        stamps = {r["unit_id"]: number if r["unit_id"] in changed else old.stamps.get(r["unit_id"], number)
                  for r in rows}
        same_layers = {k: v["run_id"] for k, v in layers.items()} == {k: v["run_id"] for k, v in old.layers.items()}
        self.snapshot = Snapshot(number, rows, layers if not same_layers else old.layers,
                                 {r["slug"]: i for i, r in enumerate(rows)}, stamps,
                                 old.layers_stamp if same_layers else number,
                                 layer_units(rows), marks)
        self.refresh_s = time.perf_counter() - t0
        return True

    def close(self) -> None:
        self.data.close()


def layer_units(rows: list[dict[str, Any]]) -> dict[int, int]:
    units: dict[int, list[tuple[str, int, str]]] = {}
    for r in rows:
        units.setdefault(r["layer"], []).append((r["kind"], r["unit"], r["slug"]))
    return {layer: hash(tuple(v)) for layer, v in units.items()}


def page_key(snap: Snapshot, kind: str, i: int) -> tuple[Any, ...]:
    """What a page of ``kind`` was built from ("index"; "layer" ``i``; "unit" ``i``, its place in the unit list):
    the same key, the same page."""
    has_layers = bool(snap.layers)
    if kind == "index":
        return ("index", snap.number)
    if kind == "layer":
        return ("layer", snap.layers_stamp, snap.layer_units.get(i), has_layers)
    row = snap.rows[i]
    prev = snap.rows[i - 1]["slug"] if i else None
    nxt = snap.rows[i + 1]["slug"] if i + 1 < len(snap.rows) else None
    return ("unit", snap.stamps[row["unit_id"]], prev, nxt, row["slug"], has_layers)


@dataclass
class Page:
    key: tuple[Any, ...]
    body: bytes
    etag: str
    made: float  # time.monotonic() when rendered


class PageCache:
    """Rendered pages by path, at most ``size`` of them (least recently used dropped first)."""

    def __init__(self, size: int = 1024, index_max_age_s: float = 1.0):
        self.size, self.index_max_age_s = size, index_max_age_s
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._making: dict[str, Future[Page]] = {}
        self._lock = threading.Lock()  # guards the two dicts only; nothing is rendered under it
        self.renders = 0  # pages rendered, for tests and the benchmark

    def get(self, path: str, key: tuple[Any, ...], make: Callable[[], str], stale_ok_s: float = 0.0) -> Page:
        """The page at ``path`` built from ``key``: cached, or made now by ``make()`` (HTML). While another thread
        makes it, a previous copy is returned; so is one younger than ``stale_ok_s``."""
        with self._lock:
            page = self._pages.get(path)
            if page is not None:
                self._pages.move_to_end(path)
                if page.key == key or time.monotonic() - page.made < stale_ok_s:
                    return page
            making = self._making.get(path)
            if making is not None and page is not None:
                return page  # someone is making the new one: this reader gets the one before
            if making is None:
                mine: Future[Page] = Future()
                self._making[path] = mine
        if making is not None:
            return making.result()
        try:
            body = make().encode("utf-8")
            page = Page(key, body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"', time.monotonic())
            mine.set_result(page)
        except BaseException as e:
            mine.set_exception(e)
            raise
        finally:
            with self._lock:
                del self._making[path]
                if mine.done() and mine.exception() is None:
                    self._pages[path] = mine.result()
                    self._pages.move_to_end(path)
                    while len(self._pages) > self.size:
                        self._pages.popitem(last=False)
                self.renders += 1
        return page
