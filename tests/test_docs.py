"""The docs say what the code does: the generated references are current, the README is a short front door that
shows the install and test commands CI runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from autointerp.cli.reference import GENERATED
from autointerp.config import Config

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_references_are_current(name):
    assert (ROOT / "docs" / name).read_text() == GENERATED[name](), (
        f"docs/{name} is stale: run `python -m autointerp.cli.reference` from the repository root")


def test_every_setting_is_described_and_documented():
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Config.model_fields.items():
        assert field.description, f"config field {name} has no description"
        assert name == "models" or f"| `{name}` |" in reference


def test_readme_is_a_short_front_door_with_the_ci_commands():
    assert len(README.splitlines()) <= 200
    assert "autointerp run --layer 13" in README
    ci = (ROOT / ".ci" / "run").read_text()
    for step in ("pip install torch==2.13.0", 'pip install -e ".[test]"', "python -m pytest -q",
                 "python benchmarks/reference.py"):
        assert step in ci and step in README, step


def test_readme_and_docs_links_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in _links(page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _links(text: str) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if not t.startswith(("http", "mailto"))]


def test_every_model_profile_setting_is_documented():
    from autointerp.llm.profiles import ModelProfile

    page = (ROOT / "docs" / "llm.md").read_text()
    for name, field in ModelProfile.model_fields.items():
        assert field.description and f"| `{name}` |" in page, f"docs/llm.md lacks the profile setting {name}"


DOC_PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _cli_flags() -> dict[str, set[str]]:
    """{'run': {'--layer', ...}, 'sweep run': {...}} from docs/cli.md, which the first test keeps current."""
    text = (ROOT / "docs" / "cli.md").read_text()
    return {m.group(1): set(re.findall(r"^\| `(--[a-z0-9-]+)`", m.group(2), re.MULTILINE))
            for m in re.finditer(r"^## autointerp ([a-z ]+)\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)}


def _command_errors(text: str, commands: dict[str, set[str]], benchmarks: Path) -> tuple[int, list[str]]:
    """(flags checked, problems) for every `autointerp CMD ... --flag` and `benchmarks/X.py ... --flag` in ``text``:
    the script must exist and name the flag, the command must take the flag (--no-X for a --X switch)."""
    checked, problems = 0, []
    text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    for line in text.splitlines():
        for part in re.split(r"`|\|(?= )|;|&&|\$\(|\)", line):  # code spans, pipes, command separators
            part = part.split(" #")[0]
            for m in re.finditer(r"(?:^|\s)autointerp ([a-z]+)(?: ([a-z]+))?", part):
                two = f"{m.group(1)} {m.group(2)}"
                name, rest = (two, part[m.end():]) if two in commands else (m.group(1), part[m.end(1):])
                for flag in _FLAG.findall(rest) if name in commands else []:
                    checked += 1
                    known = commands[name] | {"--debug", "--help"}
                    if flag not in known and not (flag.startswith("--no-") and "--" + flag[5:] in known):
                        problems.append(f"autointerp {name} has no {flag}: {part.strip()}")
            for m in re.finditer(r"benchmarks/(\w+\.py)(.*)", part):
                script = benchmarks / m.group(1)
                if not script.exists():
                    problems.append(f"no script benchmarks/{m.group(1)}")
                    continue
                for flag in _FLAG.findall(m.group(2)):
                    checked += 1
                    if f'"{flag}"' not in script.read_text():
                        problems.append(f"benchmarks/{m.group(1)} takes no {flag}")
    return checked, problems


def test_commands_in_the_docs_name_real_scripts_and_flags():
    commands, checked, problems = _cli_flags(), 0, []
    assert {"run", "probe", "sweep run", "db merge"} <= set(commands)
    for page in DOC_PAGES:
        if page.name != "cli.md":
            n, found = _command_errors(page.read_text(), commands, ROOT / "benchmarks")
            checked += n
            problems += [f"{page.name}: {p}" for p in found]
    assert not problems, "\n".join(problems)
    assert checked > 100  # the docs' commands were read, not skipped


def test_the_docs_command_check_finds_a_stale_flag_and_a_missing_script():
    text = ("Run `autointerp run --layer 3 --no-controls --layers 4`, then\n```\n"
            "$ python benchmarks/bench_llm.py --latency 0.5 \\\n    --bogus | tee out\n"
            "python benchmarks/no_such_bench.py\nautointerp sweep run plan.toml --shard 0/2 --fresh\n```\n")
    checked, problems = _command_errors(text, _cli_flags(), ROOT / "benchmarks")
    assert checked == 7
    assert problems == ["autointerp run has no --layers: autointerp run --layer 3 --no-controls --layers 4",
                        "benchmarks/bench_llm.py takes no --bogus", "no script benchmarks/no_such_bench.py",
                        "autointerp sweep run has no --fresh: autointerp sweep run plan.toml --shard 0/2 --fresh"]


# -- the methods page the code cites ----------------------------------------------------------------------------------
METHODS_PAGE = ROOT / "docs" / "methods.md"
# "docs/methods.md §2"; a range "§3-5" cites every section in it
_CITATION = re.compile(r"(docs/methods\.md) §(\d+)([a-z]?)(?:-(\d+)\b)?")
_OUTSIDE = re.compile(r"METHODS(\.md)?\b")  # the specification outside the repository, which users do not have
_HEADING = re.compile(r"^## (\d+[a-z]?)\. ", re.MULTILINE)


def _cited_sections(text: str) -> list[tuple[str, str]]:
    """(citation as written, section) for every section ``text`` cites."""
    out = []
    for m in _CITATION.finditer(text):
        first, letter, last = int(m.group(2)), m.group(3), m.group(4)
        sections = [f"{first}{letter}"] if last is None else [str(n) for n in range(first, int(last) + 1)]
        out += [(m.group(0), section) for section in sections]
    return out


def _missing_sections(files: dict[str, str], page: str) -> list[str]:
    """'FILE cites CITATION: no section N in docs/methods.md' for every citation whose section has no heading."""
    headings = set(_HEADING.findall(page))
    return [f"{name} cites {cited!r}: no section {section} in docs/methods.md"
            for name, text in files.items() for cited, section in _cited_sections(text) if section not in headings]


def _citing_files() -> dict[str, str]:
    """Every .py file of the rooms (pyproject's package-dir), the tests and the benchmarks, and every doc page."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {ROOT / d for d in setuptools["package-dir"].values()} | {ROOT / "tests", ROOT / "benchmarks"}
    paths = [p for folder in sorted(folders) for p in sorted(folder.rglob("*.py")) if p.resolve() != Path(__file__).resolve()]
    return {str(p.relative_to(ROOT)): p.read_text() for p in [*paths, *DOC_PAGES]}


def test_every_cited_methods_section_exists():
    files = _citing_files()
    assert not _missing_sections(files, METHODS_PAGE.read_text())
    # the citations were read, not skipped: the code cites the page all over
    assert sum(len(_cited_sections(text)) for text in files.values()) > 20
    # and nothing cites the specification outside the repository
    outside = [f"{name}: {m.group(0)!r}" for name, text in files.items() if name != "docs/methods.md"
               for m in _OUTSIDE.finditer(text)]
    assert not outside, outside


def test_the_methods_citation_check_finds_a_missing_section():
    page = "# Methods\n\n## 1. Capture\n\n## 2. Scoring\n\n## 2b. Classification\n\n### 3. not a section heading\n"
    files = {"a.py": '"""Capture (docs/methods.md §1); scores (docs/methods.md §2b, docs/methods.md §2)."""',
             "b.py": "# the analyses (docs/methods.md §1-3); detectors (docs/methods.md §3); "
                     "cost (docs/methods.md §2c)"}
    assert _missing_sections(files, page) == [
        "b.py cites 'docs/methods.md §1-3': no section 3 in docs/methods.md",
        "b.py cites 'docs/methods.md §3': no section 3 in docs/methods.md",
        "b.py cites 'docs/methods.md §2c': no section 2c in docs/methods.md"]
    # the real page has every section the code may cite, numbered as the citations number them
    assert set(_HEADING.findall(METHODS_PAGE.read_text())) == {"1", "2", "2b", "2c", "3", "4", "5", "6", "7", "8"}
