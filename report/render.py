"""Rendering: one jinja2 environment with autoescape on for every template, and the filters the pages use.

Every value from the database (tokens, explanations, configs, LLM messages) reaches the page through jinja2's
autoescape. Control characters, which autoescape leaves alone, are made visible by ``show_token`` (tokens) and
``visible`` (any other text), both built on the CLI's own ``inert`` (``autointerp.corpus.text``): ``\\n`` as ⏎ and
``\\t`` as ⇥ in a token (kept as they are in other text), the rest (ANSI escapes, bidi overrides, NUL) as
``\\x1b``-style escapes. The only values marked safe are the SVG plots matplotlib drew from numbers (``safe_svg``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from autointerp.corpus.text import inert


def visible(text: Any) -> str:
    """Text with invisible control and format characters shown as escapes (newlines and tabs kept)."""
    return inert(text, keep="\n\t")


def show_token(token: Any) -> str:
    """A token as one visible piece of a line: newline ⏎, tab ⇥, other control characters escaped."""
    return visible(token).replace("\n", "⏎").replace("\t", "⇥")


def pretty(value: Any) -> str:
    return visible(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def safe_svg(svg: str | None) -> Markup:
    """A plot from ``autointerp.report.plots``: matplotlib's SVG of numbers, its text escaped by matplotlib."""
    if not svg:
        return Markup("")
    if not svg.startswith("<svg"):
        raise ValueError("safe_svg takes only the <svg> element that report.plots returns")
    return Markup(svg)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("autointerp.report", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    env.filters.update(show_token=show_token, pretty=pretty, safe_svg=safe_svg, visible=visible)
    env.finalize = lambda v: visible(v) if isinstance(v, str) and not isinstance(v, Markup) else v
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
