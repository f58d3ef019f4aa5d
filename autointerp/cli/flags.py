"""Command-line flags made from the config's fields, in one place: a setting's flag, help and type come from its
``Config`` field, so a setting is named and described once (``autointerp/config.py``).

    @app.command()
    @config_flags("layer", "model", "tokens")          # adds --layer, --model, --tokens to the command
    def run(overrides: dict, fresh: bool = False): ...  # overrides == {"layer": 13, "model": None, "tokens": None}

A flag left out is ``None`` in ``overrides``, so ``load_config`` keeps the file's, the environment's or the default
value; ``--help`` shows each field's description and its default.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Annotated, Any, Literal, Optional

import typer

from autointerp.config import Config


def _scalar(annotation: Any) -> Any:
    """The CLI type of a field: ``int | None`` -> int, ``Literal[...]`` -> str, anything else as it is."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    if typing.get_origin(annotation) in (Literal, tuple, list):  # a list setting is given comma-separated
        return str
    return annotation


def config_help(name: str) -> str:
    field = Config.model_fields[name]
    default = ",".join(field.default) if isinstance(field.default, tuple) else field.default
    shown = "" if default is None or default == "" else f" (default: {default})"
    return f"{field.description}{shown}"


def config_flag(name: str, help: str | None = None, flag: str | None = None) -> Any:
    """The ``Annotated`` type of an optional flag for the config field ``name`` (default None: not given)."""
    kind = _scalar(Config.model_fields[name].annotation)
    flag = flag or "--" + name.replace("_", "-")
    if kind is bool:  # a switch: --controls / --no-controls
        flag = f"{flag}/--no-{flag[2:]}"
    option = typer.Option(flag, help=help or config_help(name))
    return Annotated[Optional[kind], option]


def config_flags(*names: str, helps: dict[str, str] | None = None) -> Any:
    """Decorator: give the command one flag per config field in ``names``, handed to it as ``overrides``."""

    def wrap(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "overrides"]
        taken = {p.name for p in own}
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=config_flag(n, (helps or {}).get(n)))
                 for n in names if n not in taken]
        hints = typing.get_type_hints(fn, include_extras=True)

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            overrides = {n: kwargs.pop(n) for n in names if n not in taken}
            return fn(overrides=overrides, **kwargs)

        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in added + own]
        command.__signature__ = sig.replace(parameters=params, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap
