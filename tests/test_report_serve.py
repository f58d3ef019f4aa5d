"""``serve`` on Starlette: every route read-only, the same pages as the static site, pages re-rendered only when
what they show changed, caching headers, and the live form's bounds. Through Starlette's TestClient (no socket)
except where the server itself is the point."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from fakes import hostile_results, run_cli

from autointerp.report.live import Live
from autointerp.report.state import PageCache


@pytest.fixture(scope="module")
def served_db(tiny_checkpoints, tmp_path_factory):
    """A real baseline run of 12 units of layer 1 and its analysis (over hostile text), built once for this file."""
    return hostile_results(tmp_path_factory.mktemp("serve"), str(tiny_checkpoints["opt"]))


@pytest.fixture
def db(served_db, isolated) -> Path:
    target = isolated / "autointerp.db"
    with sqlite3.connect(served_db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


@contextmanager
def serving(db: Path, **kw):
    from starlette.testclient import TestClient

    from autointerp.report.server import ReviewSite, review_app

    site = ReviewSite(str(db), **{"poll_s": 0, "index_max_age_s": 0, **kw})
    try:
        with TestClient(review_app(site), base_url="http://127.0.0.1") as client:
            yield site, client
    finally:
        site.close()


def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    counts = {n: conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}
    conn.close()
    return counts


def test_every_route_and_method_writes_nothing(db):
    before, counts = db.read_bytes(), table_counts(db)
    with serving(db) as (site, client):
        slugs = list(site.state.snapshot.by_slug)
        pages = ["/", "/index.html", "/layers/1.html", *[f"/units/{s}.html" for s in slugs]]
        other = ["/static/review.css", "/static/review.js", "/units/1-0.html?text=def%20f(self):", "/nope.html",
                 "/units/nope.html", "/layers/7.html", "/static/../data.py", "/static/nope.css"]
        for path in pages + other:
            got = client.get(path)
            assert got.status_code == (200 if path in pages or "review." in path or "text=" in path else 404), path
            head = client.head(path)
            assert head.status_code == got.status_code and head.content == b"", path
            if got.status_code == 200:
                assert head.headers.get("etag") == got.headers.get("etag"), path
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                status = client.request(method, path, content=b"x=1").status_code
                assert status in (404, 405) and (status == 405 or got.status_code == 404), (method, path, status)
        assert "simulated by" in client.get("/units/1-0.html?text=def%20f(self):").text
        assert not site.errors
    assert db.read_bytes() == before and table_counts(db) == counts


def test_the_pages_are_the_static_sites(db, isolated):
    from autointerp.report import build_site

    build_site(db, isolated / "site", jobs=1)
    files = sorted((isolated / "site").rglob("*.html"))
    assert len(files) == 14
    with serving(db, live_enabled=False) as (site, client):
        for f in files:
            rel = f.relative_to(isolated / "site").as_posix()
            got = client.get("/" + rel)
            assert got.status_code == 200 and got.text == f.read_text(encoding="utf-8"), rel
        for name in ("review.css", "review.js"):
            assert client.get(f"/static/{name}").content == (isolated / "site" / "static" / name).read_bytes()
        assert "Try a text" not in client.get("/units/1-0.html?text=hello").text  # the form is off: a plain page


def test_caching_headers_and_conditional_requests(db):
    with serving(db) as (_, client):
        for path in ("/", "/units/1-3.html", "/static/review.js"):
            first = client.get(path)
            etag = first.headers["etag"]
            assert first.headers["content-security-policy"].startswith("default-src 'none'")
            again = client.get(path, headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b"", path
        assert client.get("/static/review.css").headers["last-modified"]
        assert client.get("/units/1-3.html").headers["cache-control"] == "no-cache"
        assert client.get("/units/1-3.html?text=x").headers["cache-control"] == "no-store"
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 421


def test_a_write_re_renders_only_what_it_changed(db, tiny_checkpoints):
    with serving(db, live_enabled=False) as (site, client):
        slugs = list(site.state.snapshot.by_slug)
        pages = ["/index.html", "/layers/1.html", *[f"/units/{s}.html" for s in slugs]]
        etags = {p: client.get(p).headers["etag"] for p in pages}
        renders = site.cache.renders
        assert {p: client.get(p).headers["etag"] for p in pages} == etags and site.cache.renders == renders
        assert site.state.refresh() is False  # nothing committed: one PRAGMA, nothing read

        conn = sqlite3.connect(db)  # another process's commit: an LLM call logged for unit 1/4
        with conn:
            run_id, unit_id = conn.execute("SELECT s.run_id, s.unit_id FROM unit_stats s JOIN units u "
                                           "ON u.id = s.unit_id WHERE u.unit = 4").fetchone()
            conn.execute("INSERT INTO llm_calls (run_id, unit_id, profile, model, purpose, messages, attempts, "
                         "created_at) VALUES (?, ?, 'p', 'm', 'explain', '[{\"role\": \"user\", \"content\": "
                         "\"a NEWLY logged call\"}]', 1, '2026-01-02T00:00:00+00:00')", [run_id, unit_id])
        conn.close()
        assert site.state.refresh() is True
        now = {p: client.get(p).headers["etag"] for p in pages}
        assert {p for p in pages if now[p] != etags[p]} == {"/index.html", "/units/1-4.html"}
        assert site.cache.renders == renders + 2
        assert "a NEWLY logged call" in client.get("/units/1-4.html").text

        # a real run of another layer: its units appear; of the pages there were, only the one before them changes
        run_cli("run", "--layer", "2", "--units", "0:3", "--model", str(tiny_checkpoints["opt"]), "--db", str(db),
                "--tokens", "2000")
        assert site.state.refresh() is True
        assert [s for s in site.state.snapshot.by_slug if s.startswith("2-")] == ["2-0", "2-1", "2-2"]
        latest = {p: client.get(p).headers["etag"] for p in pages}
        assert {p for p in pages if latest[p] != now[p]} == {"/index.html", "/units/1-11.html"}
        assert site.cache.renders == renders + 2 + 2  # the layer page's units are the same: not rendered again
        assert 'href="2-0.html"' in client.get("/units/1-11.html").text
        assert client.get("/units/2-1.html").status_code == 200


def test_the_poller_refreshes_while_serving(db):
    with serving(db, poll_s=0.05) as (site, client):
        assert client.get("/").status_code == 200
        number = site.state.snapshot.number
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("UPDATE runs SET wall_s = 12345.0")
        conn.close()
        deadline = time.monotonic() + 10
        while site.state.snapshot.number == number and time.monotonic() < deadline:
            time.sleep(0.05)
        assert site.state.snapshot.number == number + 1 and not site.errors


class HeldLive(Live):
    """The real live form, held inside its model call until the test lets it go; counts the calls inside at once."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()
        self.inside = self.most = 0
        self.count_lock = threading.Lock()

    def activations(self, run, unit, text):
        with self.count_lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()
        try:
            assert self.go.wait(60)
            return super().activations(run, unit, text)
        finally:
            with self.count_lock:
                self.inside -= 1


def test_the_live_form_is_bounded(db):
    live = HeldLive()
    with serving(db, live=live, live_queue=1) as (site, client):
        answers: dict[int, object] = {}

        def ask(k: int) -> None:
            answers[k] = client.get(f"/units/1-0.html?text=def%20f{k}(self):")

        first = threading.Thread(target=ask, args=(1,))
        first.start()
        assert live.entered.acquire(timeout=60)  # the first text is in the model
        second = threading.Thread(target=ask, args=(2,))
        second.start()
        deadline = time.monotonic() + 30
        while site._waiting < 2 and time.monotonic() < deadline:  # the second waits its turn
            time.sleep(0.01)
        refused = client.get("/units/1-0.html?text=third")
        assert refused.status_code == 503 and refused.headers["retry-after"] and "busy" in refused.text
        assert client.get("/units/1-0.html").status_code == 200  # the pages are not held up meanwhile
        live.go.set()
        first.join(60), second.join(60)
        assert [answers[k].status_code for k in (1, 2)] == [200, 200]
        assert "def f2" in answers[2].text and live.most == 1
        assert client.get("/units/1-0.html?text=again").status_code == 200  # the line is free again


def test_the_live_form_is_off_beyond_loopback_unless_asked(db):
    from autointerp.report.server import ReviewServer

    server = ReviewServer(str(db), host="127.0.0.2", port=0, poll_s=0)  # not a loopback *name*: treated as exposed
    try:
        assert server.site.live_enabled is False and server.loopback is False
    finally:
        server.server_close()
    server = ReviewServer(str(db), host="127.0.0.2", port=0, live_enabled=True, poll_s=0)
    try:
        assert server.site.live_enabled is True
    finally:
        server.server_close()
    assert ReviewServer(str(db), port=0, poll_s=0).site.live_enabled is True


def test_page_cache_renders_once_and_serves_the_previous_copy_meanwhile():
    cache = PageCache(size=2)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow(text: str):
        def make() -> str:
            calls.append(text)
            started.set()
            assert release.wait(10)
            return text
        return make

    assert cache.get("a", (1,), lambda: "one").body == b"one"
    got: list[bytes] = []
    maker = threading.Thread(target=lambda: got.append(cache.get("a", (2,), slow("two")).body))
    maker.start()
    assert started.wait(10)
    assert cache.get("a", (2,), slow("never")).body == b"one"  # being made: the previous copy, not a second render
    release.set()
    maker.join(10)
    assert got == [b"two"] and calls == ["two"] and cache.get("a", (2,), slow("never")).body == b"two"
    assert cache.get("a", (3,), lambda: "three", stale_ok_s=60).body == b"two"  # young enough to serve stale
    cache.get("b", (1,), lambda: "b")
    cache.get("c", (1,), lambda: "c")
    assert cache.get("a", (2,), lambda: "again").body == b"again"  # "a" was dropped: two pages at most
    with pytest.raises(ZeroDivisionError):
        cache.get("d", (1,), lambda: str(1 / 0))
    assert cache.get("d", (1,), lambda: "d").body == b"d"  # a failure is not kept


def test_serve_flags_out_of_range_are_usage_errors(cli):
    code, _, err = cli("serve", "--threads", "0")
    assert code == 2 and "--threads" in err
    code, _, err = cli("serve", "--live-queue", "-1", "--no-live")
    assert code == 2 and "--live-queue" in err
