"""Command-line options declared by the settings they set.

A flag's type, default, choices and help all come from its Settings field, so ``--help``, the
environment variable (named in the help) and ``marketpipe settings`` can never disagree. The
values arrive as strings and are validated by the settings model (``with_overrides``), so a
bad value is refused with the same message as in the environment, naming the flag.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from marketpipe.settings import env_name, with_overrides

_SectionT = TypeVar("_SectionT", bound=BaseModel)


def flag_of(field_name: str) -> str:
    """``duration_s`` -> ``--duration`` (seconds are the default unit; other units stay in
    the flag: ``--jitter-ms``)."""
    return "--" + field_name.removesuffix("_s").replace("_", "-")


@dataclass(frozen=True)
class SectionOptions:
    """The flags of one settings section: ``fields`` maps a field to its flag (``None``: the
    flag derived from the name by ``flag_of``)."""

    path: tuple[str, ...]  # where the section sits in Settings, e.g. ("producer", "faults")
    model: type[BaseModel]
    fields: dict[str, str | None]

    def flags(self) -> dict[str, str]:
        return {f: flag or flag_of(f) for f, flag in self.fields.items()}

    def add_to(self, parser: argparse.ArgumentParser, title: str | None = None) -> None:
        group = parser.add_argument_group(title) if title else parser
        for field_name, flag in self.flags().items():
            info = self.model.model_fields[field_name]
            kwargs = argument(field_name, info, self.env(field_name))
            group.add_argument(flag, dest=self.dest(field_name), **kwargs)

    def dest(self, field_name: str) -> str:
        return "_".join((*self.path, field_name))

    def env(self, field_name: str) -> str:
        return env_name((*self.path, field_name))

    def apply(self, section: _SectionT, args: argparse.Namespace) -> _SectionT:
        """``section`` with the flags given on the command line, validated."""
        values = {f: getattr(args, self.dest(f), None) for f in self.fields}
        return with_overrides(section, self.flags(), **values)


def argument(field_name: str, info: FieldInfo, env: str) -> dict[str, Any]:
    """``add_argument`` keywords for a field: metavar or choices, and its help."""
    kind, choices = _kind(info.annotation)
    kwargs: dict[str, Any] = {"help": help_text(info, env)}
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        kwargs["default"] = None
    elif choices:
        kwargs["choices"] = choices
    else:
        kwargs["metavar"] = _metavar(field_name, kind)
    return kwargs


def _metavar(field_name: str, kind: Any) -> str:
    if field_name.endswith("_ms"):
        return "MS"
    if field_name.endswith("_s"):
        return "S"
    return _METAVARS.get(kind, "TEXT")


_METAVARS: dict[Any, str] = {int: "N", float: "NUM", list: "A,B", dict: "K=V,..."}


def help_text(info: FieldInfo, env: str) -> str:
    """The field's description, then its default and its environment variable."""
    text = (info.description or "").strip().rstrip(".")
    default = shown_default(info)
    tail = f"default {default}; env {env}" if default is not None else f"env {env}"
    return f"{text} [{tail}]".replace("%", "%%")


def shown_default(info: FieldInfo) -> str | None:
    value = info.get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr) or value in ([], {}, ""):
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(annotation: Any) -> tuple[Any, list[str] | None]:
    """The base type of an annotation (Optional and Annotated unwrapped) and its choices."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else (str, None)
    if origin is Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    if origin in (list, dict):
        return origin, None
    return annotation, None
