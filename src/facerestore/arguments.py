"""Command-line flags derived from the option declarations (``facerestore.options``): names, help, defaults
and choices come from there, and values are validated there, so the CLI cannot drift from the API."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from pathlib import Path
from typing import Any, get_args, get_origin

from facerestore.options import Model, OptionField, Options, build, cli_fields

_METAVARS = {float: "X", int: "N", Path: "PATH", str: "TEXT"}


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[Options],
    only: Collection[str] | None = None,
) -> None:
    """A flag for each of the model's CLI options (``only`` these, when given). Defaults stay with the model:
    a flag that is not given is not passed on."""
    for field in cli_fields(model):
        if only is None or field.name in only:
            parser.add_argument(*field.flags, dest=field.name, help=_help(field), **_kind(field))


def _help(field: OptionField) -> str:
    default = field.info.default
    shown = "" if default in (None, False, "", ()) or field.info.is_required() else f" (default: {default})"
    return field.help.replace("%", "%%") + shown


def _kind(field: OptionField) -> dict[str, Any]:
    kind = field.info.annotation
    if field.info.is_required():
        return {"required": True, "metavar": "DIR" if kind is Path else "VALUE"}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction, "default": argparse.SUPPRESS}
    if get_origin(kind) is tuple:
        return {"action": "append", "default": argparse.SUPPRESS, "metavar": "TEXT"}
    choices = field.choices
    metavar = "{" + ",".join(choices) + "}" if choices else _METAVARS.get(_plain(kind), "VALUE")
    return {"default": argparse.SUPPRESS, "metavar": metavar}


def _plain(kind: Any) -> Any:
    """``float | None`` -> ``float``."""
    members = [member for member in get_args(kind) if member is not type(None)]
    return members[0] if len(members) == 1 else kind


def values(args: argparse.Namespace, model: type[Options]) -> dict[str, Any]:
    return {field.name: getattr(args, field.name) for field in cli_fields(model) if hasattr(args, field.name)}


def options_from(args: argparse.Namespace, model: type[Model]) -> Model:
    return build(model, values(args, model))


def flag_for(name: str, models: Collection[type[Options]]) -> str:
    """How the CLI spells an option a message names."""
    for model in models:
        for field in cli_fields(model):
            if field.name == name:
                return field.flag
    return name
