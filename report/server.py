"""``autointerp serve``: the review pages rendered live from the database, on Starlette under uvicorn.

    >>> server = ReviewServer("autointerp.db", port=0)        # 127.0.0.1, a free port; the file opened read-only
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> server.url                                             # "http://127.0.0.1:40123/"
    >>> app = review_app(ReviewSite("autointerp.db"))           # the ASGI app alone (Starlette's TestClient takes it)

The URLs and pages are the static site's (same templates, same relative paths). Pages are rendered by ``threads``
worker threads, each with its own read-only connection (``mode=ro``, ``PRAGMA query_only``) and its own figure, and
kept (``state.PageCache``) under a key of what they were built from; a thread polls SQLite's ``data_version`` and
refreshes the unit list with the units written since (``state.SiteState``), so a page is rendered again only when
what it shows changed. Static files, HEAD, conditional requests (ETag, 304) and 405 for other methods come from
Starlette.

A unit page takes ``?text=...`` (a GET form: the request changes nothing) and shows the unit's activations on that
text, from the subject model, under what each explanation predicts (``live.Live``). That form is bounded: one model
call at a time, ``live_queue`` more waiting, and a 503 (``Retry-After``) beyond. It is off unless ``live`` says so
(``autointerp serve`` turns it on on loopback, and elsewhere only with ``--live``).

Bound to 127.0.0.1 unless told otherwise. Requests whose ``Host`` is not this machine's loopback name are refused
(421) while bound to loopback, so a web page elsewhere cannot reach the server through DNS rebinding. Each response
carries the same Content-Security-Policy as the static site.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autointerp.errors import UsageError
from autointerp.report.data import Filters, ReportData, open_readonly
from autointerp.report.live import Live
from autointerp.report.pages import SiteModel, shade
from autointerp.report.plots import UnitPlotter
from autointerp.report.render import render
from autointerp.report.site import common
from autointerp.report.state import PageCache, SiteState, page_key

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer")]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ReviewSite:
    """Everything ``serve`` renders from: the database, the site's state, the page cache, the worker threads."""

    def __init__(self, db: str, filters: Filters = Filters(), live: Live | None = None, live_enabled: bool = True,
                 threads: int = 8, live_queue: int = 4, poll_s: float = 0.25, index_max_age_s: float = 1.0):
        self.db, self.filters = db, filters
        self.state = SiteState(db, filters)  # UsageError here for a file that is not a results database
        self.cache = PageCache(index_max_age_s=index_max_age_s)
        self.live = live if live is not None else Live()
        self.live_enabled, self.live_queue, self.poll_s = live_enabled, live_queue, poll_s
        self.errors: list[str] = []  # pages that failed, for the CLI to report
        self._local = threading.local()
        self._opened: list[ReportData] = []
        self._opened_lock = threading.Lock()
        self.pages = ThreadPoolExecutor(threads, thread_name_prefix="review-page")
        self.trials = ThreadPoolExecutor(1, thread_name_prefix="review-live")  # one model call at a time
        self._waiting = 0  # trials running or queued
        self._waiting_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="review-refresh", daemon=True)
        if poll_s > 0:  # 0: no poller (a test refreshes by hand)
            self._poller.start()

    # -- the state, kept fresh -----------------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.wait(max(self.poll_s, 2 * self.state.refresh_s)):  # a slow refresh: poll less often
            try:
                self.state.refresh()
            except Exception as e:  # a busy or damaged file: say so (once), keep serving the last state
                line = f"refresh: {type(e).__name__}: {e}"
                if line not in self.errors[-1:]:
                    self.errors.append(line)
                    del self.errors[:-100]

    def reader(self) -> tuple[ReportData, UnitPlotter]:
        """This thread's read-only connection and figure, opened on first use."""
        mine = getattr(self._local, "mine", None)
        if mine is None:
            data = open_readonly(self.db)
            data.conn.execute("PRAGMA query_only = ON")
            with self._opened_lock:
                self._opened.append(data)
            mine = self._local.mine = (data, UnitPlotter())
        return mine

    # -- pages ---------------------------------------------------------------------------------------------------

    def page(self, path: str) -> tuple[bytes, str] | None:
        """(HTML, ETag) of ``path`` (relative to the site's root), or None when there is no such page."""
        snap = self.state.snapshot
        base = common(self.db, bool(snap.layers))
        folder, _, name = path.partition("/")
        stem = name.removesuffix(".html")

        def site() -> SiteModel:
            return SiteModel(self.reader()[0], self.filters, snap.rows, snap.layers)

        if path in ("", "index.html"):
            def make() -> str:
                s = site()
                return render("index.html.j2", root="", overview=s.layers_overview(), **base, **s.index())
            page = self.cache.get("index.html", page_key(snap, "index", 0), make, self.cache.index_max_age_s)
        elif folder == "layers" and name.endswith(".html") and stem.isdigit() and int(stem) in snap.layers:
            page = self.cache.get(path, page_key(snap, "layer", int(stem)), lambda: render(
                "layer.html.j2", root="../", **base, **site().layer(int(stem))))
        elif folder == "units" and name.endswith(".html") and stem in snap.by_slug:
            i = snap.by_slug[stem]

            def make() -> str:
                context = site().unit(i, self.reader()[1])
                if self.live_enabled:
                    return render("unit_live.html.j2", root="../", **base, **context, text="", trial=None)
                return render("unit.html.j2", root="../", **base, **context)
            page = self.cache.get(path, page_key(snap, "unit", i), make)
        else:
            return None
        return page.body, page.etag

    def trial_page(self, slug: str, text: str) -> str | None:
        """A unit page with ``text`` run through the model (in the one live thread)."""
        snap = self.state.snapshot
        if slug not in snap.by_slug:
            return None
        data, plotter = self.reader()
        context = SiteModel(data, self.filters, snap.rows, snap.layers).unit(snap.by_slug[slug], plotter)
        return render("unit_live.html.j2", root="../", **common(self.db, bool(snap.layers)), **context, text=text,
                      trial=self.trial(data, context, text))

    def trial(self, data: ReportData, context: dict[str, Any], text: str) -> dict[str, Any]:
        """The unit on a typed text: its activations, and each explanation's simulation of them."""
        unit = context["unit"]
        runs = data.rows("SELECT * FROM runs WHERE id = ?", [context["run_id"]])
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

    def admit_trial(self) -> bool:
        """Take a place in the live form's line: False when ``1 + live_queue`` are already in it."""
        with self._waiting_lock:
            if self._waiting > self.live_queue:
                return False
            self._waiting += 1
            return True

    def leave_trial(self) -> None:
        with self._waiting_lock:
            self._waiting -= 1

    def close(self) -> None:
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(timeout=5)
        self.pages.shutdown(wait=True, cancel_futures=True)
        self.trials.shutdown(wait=True, cancel_futures=True)
        self.live.close()
        with self._opened_lock:
            for data in self._opened:
                data.close()
            self._opened.clear()
        self.state.close()


def review_app(site: ReviewSite, loopback: bool = True) -> ASGIApp:
    """The ASGI app: the pages, /static/, and (``loopback``) the Host check."""

    async def page(request: Request) -> Response:
        path = request.url.path.lstrip("/")
        loop = asyncio.get_running_loop()
        text = request.query_params.get("text", "")
        if text.strip() and site.live_enabled and path.startswith("units/"):
            return await trial(request, path, text)
        try:
            found = await loop.run_in_executor(site.pages, site.page, path)
        except Exception as e:  # a page that cannot be built: say so, keep serving
            site.errors.append(f"{request.url.path}: {type(e).__name__}: {e}")
            return PlainTextResponse(f"this page could not be built: {type(e).__name__}\n", 500)
        if found is None:
            return PlainTextResponse("no such page\n", 404)
        body, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}  # kept, but asked again each time: a run may add to it
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    async def trial(request: Request, path: str, text: str) -> Response:
        if not site.admit_trial():
            return PlainTextResponse("the model is busy with other texts; try again in a few seconds\n", 503,
                                     headers={"Retry-After": "5"})
        try:
            slug = path.removeprefix("units/").removesuffix(".html")
            html = await asyncio.get_running_loop().run_in_executor(site.trials, site.trial_page, slug, text)
        except Exception as e:
            site.errors.append(f"{request.url.path}?text=: {type(e).__name__}: {e}")
            return PlainTextResponse(f"this page could not be built: {type(e).__name__}\n", 500)
        finally:
            site.leave_trial()
        if html is None:
            return PlainTextResponse("no such page\n", 404)
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    routes = [Route("/", page), Route("/index.html", page), Route("/layers/{name}", page),
              Route("/units/{name}", page),
              Mount("/static", StaticFiles(packages=[("autointerp.report", "static")]), name="static")]
    return Guard(Starlette(routes=routes), loopback)


class Guard:
    """Refuses (421) a Host that is not a loopback name while bound to loopback, and adds the security headers."""

    def __init__(self, app: ASGIApp, loopback: bool):
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.loopback:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]")
            if host not in LOOPBACK:
                return await PlainTextResponse("unknown host\n", 421, headers=dict(
                    (k.decode(), v.decode()) for k, v in SECURITY))(scope, receive, send)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY
            await send(message)
        await self.app(scope, receive, secured)


class ReviewServer:
    """uvicorn serving ``review_app`` on ``host:port`` (bound at once: a port in use is a ``UsageError``)."""

    def __init__(self, db: str, host: str = "127.0.0.1", port: int = 8000, filters: Filters = Filters(),
                 live: Live | None = None, live_enabled: bool | None = None, **site_args: Any):
        self.loopback = host in LOOPBACK
        self.site = ReviewSite(db, filters, live, self.loopback if live_enabled is None else live_enabled,
                               **site_args)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto = infos[0][:3]  # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only then
            self.sock = socket.socket(family, kind, proto)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(infos[0][4])
            self.sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
        except OSError as e:
            self.site.close()
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port") from e
        self.server_address = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(
            review_app(self.site, self.loopback), log_level="warning", access_log=False, lifespan="off",
            server_header=False, timeout_graceful_shutdown=5))
        self._done = threading.Event()

    @property
    def errors(self) -> list[str]:
        return self.site.errors

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self._done.set()

    def shutdown(self) -> None:
        self.server.should_exit = True
        self._done.wait(timeout=10)

    def server_close(self) -> None:
        self.sock.close()
        self.site.close()
