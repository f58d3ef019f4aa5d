"""``autointerp report`` and ``serve`` on a real run over a hostile corpus, checked by parsing the HTML."""

from __future__ import annotations

import re
import sqlite3
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fakes import HOSTILE, SECRET, hostile_results  # noqa: F401 (HOSTILE: what the corpus holds)

SAFE_TAGS = {  # every element the templates write, and the SVG elements matplotlib writes
    "html", "head", "meta", "title", "link", "body", "header", "main", "nav", "a", "span", "h1", "h2", "h3", "p", "b",
    "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "details", "summary", "pre", "code", "i", "input",
    "select", "option", "label", "button", "noscript", "script", "form", "textarea",
    "svg", "g", "path", "defs", "use", "clippath", "rect", "text", "style", "polyline", "line", "tspan", "metadata",
}
SAFE_SCRIPTS = {"static/review.js", "../static/review.js"}


class Page(HTMLParser):
    """Every element, attribute and text node of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.in_script = False
        self.script_text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.script_text += data
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def assert_inert(html: str, where: str) -> Page:
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag in SAFE_TAGS, f"{where}: unexpected element <{tag}>"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"{where}: event handler attribute {name}={value!r} on <{tag}>"
            if name in ("href", "src", "action", "xlink:href"):
                assert not re.match(r"\s*(javascript|data|vbscript):", value or "", re.I), f"{where}: {name}={value!r}"
                assert not re.match(r"\s*(https?:)?//", value or ""), f"{where}: a request off the machine: {value!r}"
        if tag == "script":
            assert attrs.get("src") in SAFE_SCRIPTS, f"{where}: a script that is not the packaged one: {attrs}"
    assert not page.script_text.strip(), f"{where}: inline script {page.script_text[:80]!r}"
    assert "\x1b" not in html and "\u202e" not in html, f"{where}: a raw control character reached the page"
    assert SECRET not in html and "SECRET" not in html, f"{where}: a secret reached the page"
    return page


@pytest.fixture(scope="module")
def hostile_db(tiny_checkpoints, tmp_path_factory):
    """Built once for this file; each test works on its own copy."""
    return hostile_results(tmp_path_factory.mktemp("hostile"), str(tiny_checkpoints["opt"]))


@pytest.fixture
def results(hostile_db, isolated):
    """This test's copy of the hostile results, at the default database path."""
    target = isolated / "autointerp.db"
    with sqlite3.connect(hostile_db) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # the WAL file's pages too
    return target


def test_report_renders_hostile_text_as_text(cli, results, isolated):
    code, out, err = cli("report", "--out", "site", "--jobs", "2")
    assert code == 0, err
    assert "wrote 14 pages (12 units, 1 layers)" in out
    site = isolated / "site"
    pages = sorted(site.rglob("*.html"))
    assert {p.relative_to(site).as_posix() for p in pages} >= {"index.html", "layers/1.html", "units/1-0.html"}
    texts = {}
    for p in pages:
        texts[p.relative_to(site).as_posix()] = "".join(assert_inert(p.read_text(), str(p)).text)
    every = "\n".join(texts.values())
    for h in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '<a href="javascript:alert(1)">click</a>',
              '"><svg onload=alert(1)>', "</textarea><script>alert(2)</script>"):
        assert h in every, f"{h!r} should be shown as text somewhere"
    assert "\\x1b[31mred" in every and "\\u202eevil" in every  # control characters shown escaped
    index = parse((site / "index.html").read_text())
    rows = [a for t, a in index.tags if t == "tr" and "data-order" in a]
    assert len(rows) == 12
    links = [a["href"] for t, a in index.tags if t == "a" and a.get("href", "").startswith("units/")]
    assert all((site / href).is_file() for href in links) and len(links) == 12
    unit = parse((site / "units/1-0.html").read_text())
    shaded = [a for t, a in unit.tags if t == "i" and re.search(r"\ba(10|[1-9])\b", a.get("class") or "")]
    assert shaded, "a unit page shades the tokens where the unit fires"
    assert any(t == "svg" for t, _ in unit.tags), "the unit page has its plots inline"
    # the planted judgements (fakes.plant_hostile_judgements): shown beside the score, their examples as text
    judged = [p for p, text in texts.items() if "unparsed reply <img src=x onerror=alert(1)>" in text]
    assert len(judged) == 1 and judged[0].startswith("units/"), judged
    page = parse((site / judged[0]).read_text())
    scorers = [a["data-scorer"] for t, a in page.tags if t == "details" and a.get("data-scorer")]
    assert scorers.count("detection") >= 1 and scorers.count("fuzzing") >= 2  # planted; the run's own as well
    assert [a for t, a in page.tags if t == "i" and a.get("class") == "mk"], "fuzzing marks are highlighted"
    text = texts[judged[0]]
    assert "judge-<script>alert(1)</script>" in text and "no wrongly marked test example \"><svg" in text
    assert "0.500" in text and "0.750" in text and "marked where it fires" in text
    assert any(a.get("data-detection") == "0.5" for t, a in index.tags if t == "tr")
    layer = (site / "layers/1.html").read_text()
    rows = re.findall(rf'<tr><td><a href="../{judged[0]}">.*?</tr>', layer, re.S)
    assert rows and all(re.search(r'<td class="num">0\.500</td>', r) for r in rows), "detection on the layer page"


def test_report_refuses_a_folder_that_is_not_a_report_and_replaces_one_that_is(cli, results, isolated):
    (isolated / "mine").mkdir()
    (isolated / "mine" / "notes.txt").write_text("keep me")
    code, _, err = cli("report", "--out", "mine")
    assert code == 2 and "not an earlier report" in err
    assert (isolated / "mine" / "notes.txt").read_text() == "keep me"
    assert cli("report", "--out", "site", "--layer", "1", "--jobs", "1")[0] == 0
    code, out, err = cli("report", "--out", "site", "--min-score", "2")
    assert code == 2 and "no units" in err
    assert (isolated / "site" / "index.html").is_file()  # the earlier report is untouched
    code, out, _ = cli("report", "--out", "site", "--kind", "neuron", "--layer", "1", "--jobs", "1")
    assert code == 0 and "12 units" in out


def test_report_on_a_missing_database_is_a_usage_error(cli, isolated):
    code, _, err = cli("report", "--out", "site", "--db", "nope.db")
    assert code == 2 and "no results database" in err
    code, _, err = cli("serve", "--db", "nope.db", "--port", "0")
    assert code == 2 and "no results database" in err
    code, _, err = cli("serve", "--port", "70000")
    assert code == 2 and "--port" in err
    assert not (isolated / "site").exists() and not (isolated / "nope.db").exists()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_serve_pages_and_typed_text(results, tiny_checkpoints):
    from autointerp.report.server import ReviewServer

    before = Path(results).read_bytes()
    server = ReviewServer(str(results), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        status, html = get(url)
        assert status == 200 and "Leaderboard" in html
        assert_inert(html, "serve /")
        status, html = get(url + "units/1-0.html")
        assert status == 200
        assert_inert(html, "serve unit")
        status, html = get(url + "units/1-0.html?text=" + urllib.request.quote("def f(x): return '<b>x</b>'"))
        assert status == 200 and "Try a text" in html
        page = assert_inert(html, "serve trial")
        text = "".join(page.text)
        # once in the form's textarea (echoed back), once more in the trial window the model ran it through
        assert text.count("x</b>") >= 2, text[text.find("Try a text"):][:400]
        assert "simulated by" in "".join(page.text)
        assert get(url + "units/nope.html")[0] == 404
        assert get(url + "layers/1.html")[0] == 200
        assert get(url + "static/review.js")[0] == 200 and get(url + "static/../data.py")[0] == 404
        req = urllib.request.Request(url, method="POST", data=b"x")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("POST should be refused")
        except urllib.error.HTTPError as e:
            assert e.code == 405
        req = urllib.request.Request(url, headers={"Host": "evil.example:80"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a foreign Host should be refused")
        except urllib.error.HTTPError as e:
            assert e.code == 421
        assert not server.errors
    finally:
        server.shutdown()
        server.server_close()
    assert Path(results).read_bytes() == before  # read-only
