"""The floor plan, enforced: every room imports only rooms upstream of it, and no module import loop exists.

The graph is built from the installed package (each room located by ``importlib``, whatever folder it lives in),
counting every ``import`` statement, including ones inside functions. A new room must be given its place in
``ALLOWED`` (and in pyproject's ``[tool.setuptools]``), which is the data-flow order written as data.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

# room -> the rooms it may import (besides itself). "autointerp" is the front door's own modules, listed per module.
UPSTREAM = {
    "errors": set(),
    "outcomes": set(),  # the outcome words (autointerp/outcomes.py): shared by every room, like errors
    "corpus": {"errors", "outcomes"},
    "llm": {"errors", "outcomes"},
    "prompts": {"errors", "outcomes"},
    "subject": {"errors", "outcomes", "corpus"},
    "agent": {"errors", "outcomes", "corpus", "llm", "prompts", "subject"},
    # scoring judges texts: it never sees an explainer (the run owner hands it texts)
    "scoring": {"errors", "outcomes", "corpus", "llm", "prompts", "subject"},
    "db": {"errors", "outcomes", "corpus", "llm", "prompts", "subject", "agent", "scoring"},
}
ROOMS_ORDER = ["errors", "outcomes", "corpus", "llm", "prompts", "subject", "agent", "scoring", "db"]
UPSTREAM["config"] = set(ROOMS_ORDER)
UPSTREAM["pipeline"] = set(ROOMS_ORDER) | {"config"}
UPSTREAM["report"] = set(ROOMS_ORDER) | {"config"}
UPSTREAM["sweep"] = set(ROOMS_ORDER) | {"config", "pipeline"}
UPSTREAM["cli"] = set(UPSTREAM) - {"cli"}
UPSTREAM["autointerp"] = set(ROOMS_ORDER)  # the package itself and its deprecation shims
# the test doubles (fake server, in-process fake LLM, scripted outcomes) plug into the LLM seam from outside it: no
# room of the product imports them, so a real run can never be handed a fake by accident
UPSTREAM["testing"] = {"errors", "outcomes", "llm"}
FRONT_DOOR = {"errors", "outcomes", "config", "pipeline", "cli"}  # modules (or subpackages) of the autointerp/ folder itself
DEPRECATED_SHIMS = {"records"}  # old import paths kept for one release, each warning where it moved

ROOT = Path(__file__).resolve().parents[1]


def installed_packages() -> list[str]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"]


def module_files() -> dict[str, Path]:
    """{dotted module name: source file} for every module of the installed package."""
    files: dict[str, Path] = {}
    for package in installed_packages():
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, f"{package} is not importable"
        folder = Path(next(iter(spec.submodule_search_locations)))
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            files[name] = path
    return files


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in DEPRECATED_SHIMS:
        return "autointerp"
    return parts[1]


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every autointerp module that ``module`` imports, anywhere in its source."""
    found: set[str] = set()
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    found.discard(module)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {m: imports(m, p, set(files)) for m, p in files.items()}


def test_every_room_has_a_place():
    rooms = {room(p) for p in installed_packages()} - {"autointerp"}
    assert rooms <= set(UPSTREAM), f"give {rooms - set(UPSTREAM)} a place in UPSTREAM"


def test_no_room_imports_one_downstream(graph):
    bad = []
    for module, targets in graph.items():
        source = room(module)
        for target in targets:
            dest = room(target)
            if dest in (source, "autointerp"):
                continue
            if dest not in UPSTREAM.get(source, set()):
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def test_autointerp_folder_is_only_the_front_door():
    files = module_files()
    own = {m.split(".")[1] for m in files if m.startswith("autointerp.") and files[m].parent.name == "autointerp"}
    assert own <= FRONT_DOOR | DEPRECATED_SHIMS, f"move {own - FRONT_DOOR} into the room that makes them"


def find_loops(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle met by a depth-first walk, as "a -> b -> a"; a module importing its own package is no loop."""
    sys.setrecursionlimit(10_000)
    state: dict[str, int] = {}
    stack: list[str] = []
    loops: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if m.startswith(t + "."):  # importing a package runs its __init__, which may import the module back
                continue
            if state.get(t) == 1:
                loops.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return loops


def test_no_import_loops(graph):
    loops = find_loops(graph)
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_the_checks_catch_what_they_look_for():
    planted = {"autointerp.subject.capture": {"autointerp.subject.units"},
               "autointerp.subject.units": {"autointerp.subject.capture"}}
    assert find_loops(planted) == ["autointerp.subject.capture -> autointerp.subject.units -> autointerp.subject.capture"]
    assert room("autointerp.db.store") == "db" and "db" not in UPSTREAM["subject"]


def test_no_module_much_over_400_lines():
    long = {m: n for m, p in module_files().items() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these modules (lines): {long}"


def test_pure_math_imports_no_llm_client_or_template_engine():
    import subprocess

    code = ("import sys, autointerp.scoring.score; "
            "print(sorted(m for m in ('openai', 'jinja2', 'langgraph', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_old_records_path_still_works_with_a_warning():
    import importlib

    sys.modules.pop("autointerp.records", None)
    with pytest.warns(DeprecationWarning, match="autointerp.subject.records"):
        old = importlib.import_module("autointerp.records")
    from autointerp.subject.records import UnitRecord

    assert old.UnitRecord is UnitRecord


def test_the_command_starts_without_the_llm_client_or_dataframes():
    """Every `autointerp` invocation, `--help` included, imports autointerp.cli: heavy rooms load inside commands."""
    import subprocess

    code = ("import sys, autointerp.cli; "
            "print(sorted(m for m in ('openai', 'pandas', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- no long parameter lists (issue 20) -------------------------------------------------------------------------------
MAX_PARAMETERS = 8


def parameter_counts(source: str, module: str) -> dict[str, int]:
    """{qualified name: parameters} of every function and method in ``source``: a method's self or cls does not count
    (a staticmethod has none), ``*args`` and ``**kwargs`` count one each."""
    counts: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = child.args
                n = len(a.posonlyargs + a.args + a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
                static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in child.decorator_list)
                if in_class and not static and a.posonlyargs + a.args:
                    n -= 1
                name = f"{prefix}.{child.name}"
                counts[name] = max(n, counts.get(name, 0))  # a property's setter has the getter's name
                visit(child, name, False)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}.{child.name}", True)
            else:  # the bodies of if, try, with, ...
                visit(child, prefix, in_class)

    visit(ast.parse(source), module, False)
    return counts


def over_the_limit(sources: dict[str, str]) -> dict[str, int]:
    """{qualified name: parameters} of every function of {module: source} taking more than MAX_PARAMETERS."""
    return {name: n for module, source in sources.items()
            for name, n in parameter_counts(source, module).items() if n > MAX_PARAMETERS}


def test_no_function_takes_more_than_8_parameters():
    """Settings that travel together go in one small frozen dataclass (ProbeSettings, DictionarySettings, NewRun, ...).
    The CLI's command functions are exempt: their parameters are the command's flags."""
    sources = {m: p.read_text() for m, p in module_files().items()
               if m != "autointerp.cli" and not m.startswith("autointerp.cli.")}
    over = over_the_limit(sources)
    long = sorted(f"{name} ({n})" for name, n in over.items())
    assert not long, (f"these take more than {MAX_PARAMETERS} parameters; group the settings that travel together "
                      "into a small frozen dataclass:\n" + "\n".join(long))


def test_the_parameter_check_catches_a_planted_function():
    planted = (
        "def nine(a, b, c, d, e, f, g, h, i): ...\n"
        "def eight(a, b, c, d, e, f, g, *, h): ...\n"
        "def starred(a, b, c, d, e, f, g, *args, **kwargs): ...\n"
        "class Thing:\n"
        "    def method(self, a, b, c, d, e, f, g, h): ...\n"
        "    @classmethod\n"
        "    def build(cls, a, b, c, d, e, f, g, h, i):\n"
        "        def inner(a, b, c, d, e, f, g, h, i, j): ...\n"
        "    @staticmethod\n"
        "    def helper(a, b, c, d, e, f, g, h): ...\n"
    )
    assert parameter_counts(planted, "m") == {"m.nine": 9, "m.eight": 8, "m.starred": 9, "m.Thing.method": 8,
                                              "m.Thing.build": 9, "m.Thing.build.inner": 10, "m.Thing.helper": 8}
    assert over_the_limit({"m": planted}) == {"m.nine": 9, "m.starred": 9, "m.Thing.build": 9,
                                              "m.Thing.build.inner": 10}
