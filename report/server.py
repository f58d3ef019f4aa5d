"""``autointerp serve``: the review pages rendered live from the database, plus "try a text" on every unit page.

    >>> server = ReviewServer("autointerp.db", port=0)        # 127.0.0.1, a free port; the file opened read-only
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> server.url                                             # "http://127.0.0.1:40123/"

The pages are the static site's (same templates, same relative paths), built on request; when another process
commits to the database (SQLite's ``data_version`` moves), the unit list is read again. A unit page takes
``?text=...`` (a GET form: the request changes nothing) and shows the unit's activations on that text, from the
subject model, under what each explanation predicts with the simulator (``live.Live``).

Bound to 127.0.0.1 unless told otherwise. Requests whose ``Host`` is not this machine's loopback name are refused
(421) while bound to loopback, so a web page elsewhere cannot reach the server through DNS rebinding. Only GET and
HEAD are answered. Each page carries the same Content-Security-Policy as the static site.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from autointerp.errors import UsageError
from autointerp.report.data import Filters, open_readonly
from autointerp.report.live import Live
from autointerp.report.pages import SiteModel, shade
from autointerp.report.plots import UnitPlotter
from autointerp.report.render import render
from autointerp.report.site import common

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, db: str, host: str = "127.0.0.1", port: int = 8000, filters: Filters = Filters(),
                 live: Live | None = None):
        self.db, self.filters = db, filters
        self.data = open_readonly(db)
        self.live = live if live is not None else Live()
        self.lock = threading.Lock()  # one page at a time: one connection, one figure
        self.plotter = UnitPlotter()
        self._site: SiteModel | None = None
        self._version: int | None = None
        self.errors: list[str] = []  # pages that failed, for the CLI to report
        try:
            super().__init__((host, port), Handler)
        except OSError as e:
            self.data.close()
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port") from e
        self.loopback = host in ("127.0.0.1", "localhost", "::1")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def site(self) -> SiteModel:
        version = self.data.conn.execute("PRAGMA data_version").fetchone()[0]
        if self._site is None or version != self._version:
            self._site, self._version = SiteModel(self.data, self.filters), version
        return self._site

    def page(self, path: str, query: dict[str, list[str]]) -> str | None:
        """The HTML of ``path`` (relative to the site's root), or None when there is no such page."""
        with self.lock:
            site = self.site()
            base = common(self.db, bool(site.layers))
            if path in ("", "index.html"):
                return render("index.html.j2", root="", overview=site.layers_overview(), **base, **site.index())
            folder, _, name = path.partition("/")
            stem = name.removesuffix(".html")
            if folder == "layers" and name.endswith(".html") and stem.isdigit() and int(stem) in site.layers:
                return render("layer.html.j2", root="../", **base, **site.layer(int(stem)))
            if folder == "units" and name.endswith(".html") and stem in site.by_slug:
                context = site.unit(site.by_slug[stem], self.plotter)
                text = (query.get("text") or [""])[0]
                return render("unit_live.html.j2", root="../", **base, **context, text=text,
                              trial=self.trial(context, text) if text.strip() else None)
            return None

    def trial(self, context: dict[str, Any], text: str) -> dict[str, Any]:
        """The unit on a typed text: its activations, and each explanation's simulation of them."""
        unit = context["unit"]
        runs = self.data.rows("SELECT * FROM runs WHERE id = ?", [context["run_id"]])
        if not runs:
            return dict(error="no run captured this unit, so there is no model to run")
        try:
            tokens, acts = self.live.activations(runs[0], unit, text)
        except UsageError as e:
            return dict(error=str(e))
        m = max([context["max_activation"], *acts]) if acts else 0.0
        sims = []
        for e in context["explanations"]:
            if not e["text"]:
                continue
            predictions, error = self.live.simulate(e["text"], tokens)
            sims.append(dict(n=e["n"], r=None, error=error, predictions=predictions,
                             tokens=shade(tokens, acts, m, predictions)))
        return dict(error=None, window=dict(source="typed text", rank=0, index="–", max=max(acts, default=0.0),
                                            tokens=shade(tokens, acts, m), sims=sims),
                    simulator=self.live.simulator.name, n_tokens=len(tokens))

    def server_close(self) -> None:
        super().server_close()
        self.live.close()
        self.data.close()


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "autointerp-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the address once
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        if self.server.loopback and not self._host_is_loopback():
            return self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain; charset=utf-8", b"unknown host\n", head)
        url = urlsplit(self.path)
        path = url.path.lstrip("/")
        if path.startswith("static/"):
            name = path.removeprefix("static/")
            suffix = name[name.rfind("."):] if "." in name else ""
            item = resources.files("autointerp.report").joinpath("static").joinpath(name)
            if "/" not in name and suffix in STATIC_TYPES and item.is_file():
                return self._send(HTTPStatus.OK, STATIC_TYPES[suffix], item.read_bytes(), head)
            return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n", head)
        try:
            html = self.server.page(path, parse_qs(url.query))
        except Exception as e:  # a page that cannot be built: say so, keep serving
            self.server.errors.append(f"{self.path}: {type(e).__name__}: {e}")
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                              f"this page could not be built: {type(e).__name__}\n".encode(), head)
        if html is None:
            return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"no such page\n", head)
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", html.encode("utf-8"), head)

    def _host_is_loopback(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1")

    def _send(self, status: HTTPStatus, ctype: str, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _method_not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"read-only\n", False)

    do_POST = do_PUT = do_DELETE = do_PATCH = _method_not_allowed
