"""Render the prompt templates of this folder with jinja2 (``StrictUndefined``: a missing variable is an error).

    from autointerp.prompts.render import render, templates_sha256
    render("simulator_user.j2", explanation='the token "def"', windows=[["def", " f", "(\\n"]])
    templates_sha256("simulator_system.j2", "simulator_user.j2")     # identifies the prompt in a run's config

Filters for every template: ``show_token`` writes a token on one line, its control characters escaped
(newline -> ``\\n``, tab -> ``\\t``, carriage return -> ``\\r``, backslash -> ``\\\\``), so that ``token<TAB>value``
lines stay one line per token. Templates are trimmed (``trim_blocks``, ``lstrip_blocks``) and keep their final newline.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).parent
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"})


def show_token(token: str) -> str:
    """A token as shown on one prompt line: control characters escaped, nothing else changed."""
    if token.isprintable() and "\\" not in token:  # most tokens: nothing to escape (a prompt shows hundreds)
        return token
    return token.translate(_ESCAPES)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["show_token"] = show_token
    return env


def render(name: str, **context: Any) -> str:
    """The template ``name`` (a file in this folder) rendered with ``context``."""
    return _environment().get_template(name).render(**context)


def templates_sha256(*names: str) -> str:
    """SHA-256 of the named templates' sources, in order: changes whenever a prompt does."""
    digest = hashlib.sha256()
    for name in names:
        digest.update((PROMPTS_DIR / name).read_bytes())
    return digest.hexdigest()
