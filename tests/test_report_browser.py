"""The review pages in a real browser: Debian's chromium driven by Playwright, over the static site and ``serve``.

Checked: the index loads with no console error and no request leaving the machine (every request is routed through
the test: file:// and the test's own 127.0.0.1 server are let through, anything else is aborted and fails the
test), sorting the leaderboard works, a unit page shows highlighted tokens, the typed-text form of ``serve`` runs,
and no dialog (alert, confirm, prompt) ever opens, though the corpus is full of ``alert(1)``.

Skipped, saying why, when Playwright or chromium is missing: ``pip install -e ".[test]"`` and
``apt-get install -y chromium`` (CI does both). The slow test ``test_screenshots`` also writes the README's
screenshots when ``AUTOINTERP_SCREENSHOTS`` names a folder:

    AUTOINTERP_SCREENSHOTS=docs/img python -m pytest tests/test_report_browser.py -m slow -k screenshots
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fakes import hostile_results, run_cli

# read at import: the autouse ``isolated`` fixture clears AUTOINTERP_* variables before each test
SCREENSHOTS = os.environ.get("AUTOINTERP_SCREENSHOTS")
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed: pip install -e '.[test]'"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium at /usr/bin/chromium: apt-get install -y chromium"),
]


class Watched:
    """A browser page whose console errors, page errors, dialogs and outside requests are recorded."""

    def __init__(self, context, allowed_hosts: set[str]):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.outside: list[str] = []
        self.requests: list[str] = []
        self.allowed = allowed_hosts
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _route(self, route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme == "file" or (url.scheme == "http" and url.netloc in self.allowed):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert not self.errors, f"console errors: {self.errors}"
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.outside, f"requests leaving the machine: {self.outside}"
        leaving = [u for u in self.requests if not u.startswith(("file:", "http://127.0.0.1", "data:"))]
        assert not leaving, f"requests leaving the machine: {leaving}"


def visible_scores(page) -> list[float]:
    values = page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.score)")
    return [float(v) for v in values if v != ""]


def check_index(w: Watched, url: str) -> None:
    page = w.page
    page.goto(url)
    page.wait_for_selector("#leaderboard tbody tr")
    assert "units 1–" in page.inner_text("#page-info")
    header = page.locator("#leaderboard th[data-sort=score]")
    header.click()  # numbers sort best first
    scores = visible_scores(page)
    assert len(scores) >= 3 and scores == sorted(scores, reverse=True), scores
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    scores = visible_scores(page)
    assert scores == sorted(scores) and header.get_attribute("aria-sort") == "ascending"
    page.fill("#filter-text", "no such explanation anywhere")
    assert page.inner_text("#page-info") == "no unit matches the filters"
    page.fill("#filter-text", "")
    w.assert_clean()


def check_unit(w: Watched) -> None:
    page = w.page
    page.locator("#leaderboard tbody tr:not([hidden]) a").first.click()
    page.wait_for_selector(".win")
    shaded = page.locator(".win .true i.a10")
    assert shaded.count() >= 1, "the strongest token of the top windows is shaded at full strength"
    colour = shaded.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    assert page.locator(".win .sim i[class]").count() >= 1, "test windows show the simulation"
    assert page.locator(".plot svg").count() >= 1
    w.assert_clean()


def check_judged(w: Watched, url: str, db: Path) -> None:
    """Sorting by detection works; the page of the unit with the planted judgements (fakes.plant_hostile_judgements)
    lists the judged examples as text, the fuzzing marks highlighted, and no dialog opens."""
    page = w.page
    page.goto(url)
    header = page.locator("#leaderboard th[data-sort=detection]")
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    values = page.eval_on_selector_all("#leaderboard tbody tr:not([hidden])",
                                       "rows => rows.map(r => r.dataset.detection)")
    defined = [float(v) for v in values if v != ""]
    assert defined and defined == sorted(defined, reverse=True), values  # best first
    assert "" not in values[: len(defined)], values  # units without a detection score last
    with sqlite3.connect(db) as conn:
        layer, unit = conn.execute("SELECT u.layer, u.unit FROM explanations e JOIN units u ON u.id = e.unit_id "
                                   "ORDER BY e.id LIMIT 1").fetchone()
    page.locator(f'#leaderboard a[href="units/{layer}-{unit}.html"]').click()
    page.wait_for_selector("details.judged")
    for d in page.locator("details.judged").all():
        d.locator("summary").click()
    marked = page.locator("details.judged .ex i.mk")
    assert marked.count() >= 2 and marked.first.is_visible()
    colour = marked.first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    text = page.inner_text("details.judged[data-scorer=detection]")
    assert "<script>alert(1)</script>" in text and "unparsed reply <img src=x onerror=alert(1)>" in text
    w.assert_clean()


@pytest.fixture(scope="module")
def site(tiny_checkpoints, tmp_path_factory):
    from autointerp.report import build_site

    root = tmp_path_factory.mktemp("browser")
    db = hostile_results(root, str(tiny_checkpoints["opt"]))
    build_site(db, root / "site", jobs=1)
    return db, root / "site"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_static_site_in_chromium(site, browser):
    _, folder = site
    context = browser.new_context()
    w = Watched(context, allowed_hosts=set())
    check_index(w, (folder / "index.html").as_uri())
    check_unit(w)
    check_judged(w, (folder / "index.html").as_uri(), site[0])
    context.close()


def test_serve_in_chromium(site, browser):
    from autointerp.report.server import ReviewServer

    db, _ = site
    server = ReviewServer(str(db), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        context = browser.new_context()
        w = Watched(context, allowed_hosts={f"127.0.0.1:{server.server_address[1]}"})
        check_index(w, server.url)
        check_unit(w)
        w.page.fill("#text", "def f(x):  # <script>alert(1)</script>")
        w.page.click("form.try button")
        w.page.wait_for_selector("#try ~ .win")
        assert "<script>alert(1)</script>" in w.page.inner_text("#try ~ .win")
        w.assert_clean()
        context.close()
        assert not server.errors
    finally:
        server.shutdown()
        server.server_close()


def _capture(fn, failures: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - handed back to the test's thread
        failures.append(e)


@pytest.mark.slow
def test_screenshots(browser, tmp_path_factory):
    """The bundled model, a few units of layer 4 (4/199 detects " self"): the index and a unit page in chromium,
    saved as PNGs where ``AUTOINTERP_SCREENSHOTS`` says (the README's pictures)."""
    from autointerp.report import build_site

    root = tmp_path_factory.mktemp("shots")
    db = str(root / "results.db")

    def build() -> None:  # in a thread of its own: Playwright's event loop runs in this one, the pipeline's can't
        run_cli("run", "--layer", "4", "--units", "192:208", "--tokens", "30000", "--db", db)
        run_cli("analyze", "--layer", "4", "--tokens", "30000", "--db", db)
        build_site(db, root / "site", jobs=2)

    failures: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(build, failures))
    worker.start()
    worker.join()
    assert not failures, failures
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    w = Watched(context, allowed_hosts=set())
    w.page.goto((root / "site" / "index.html").as_uri())
    w.page.locator("#leaderboard th[data-sort=score]").click()
    out = SCREENSHOTS
    if out:
        out = Path(__file__).resolve().parents[1] / out  # relative to the repository (tests run in a temp dir)
        out.mkdir(parents=True, exist_ok=True)
        w.page.screenshot(path=str(out / "index.png"))
    w.page.set_viewport_size({"width": 1280, "height": 1250})
    w.page.goto((root / "site" / "units" / "4-199.html").as_uri())
    assert w.page.locator(".win .true i.a10").count() >= 1
    if out:
        w.page.screenshot(path=str(out / "unit.png"))
    w.assert_clean()
    context.close()
    if out:
        assert (out / "index.png").stat().st_size > 10_000 and (out / "unit.png").stat().st_size > 10_000
