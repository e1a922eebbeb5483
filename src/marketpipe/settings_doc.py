"""The settings reference (docs/settings.md), generated from the model: every field's
environment variable, type, default and description, one table per section."""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from marketpipe.cliopts import shown_default
from marketpipe.settings import ENV_PREFIX, NESTED_DELIMITER, Settings

HEADER = """# Settings reference

Generated from `src/marketpipe/settings.py` by `marketpipe settings --reference` (`make docs`);
`make test` fails when this file is stale. Every setting is an environment variable (or a line
in `.env`, or in the local stack's `.marketpipe/local/endpoints.env`, in that order of
precedence); options of the commands that set one name it in their `--help`. Lists are
comma-separated; a whole section can also be given as JSON (`MARKETPIPE_KAFKA='{...}'`).
`marketpipe settings` prints the effective values.
"""


def markdown() -> str:
    out = [HEADER]
    sections: list[tuple[str, type[BaseModel]]] = [("", Settings)]
    while sections:
        prefix, model = sections.pop(0)
        rows = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sections.append((prefix + name.upper() + NESTED_DELIMITER, annotation))
                continue
            rows.append(_row(ENV_PREFIX + prefix + name.upper(), info))
        title = prefix.rstrip("_").replace(NESTED_DELIMITER, ".").lower() or "general"
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"## {title}", "", doc, "", "| variable | type | default | what |",
                "| --- | --- | --- | --- |", *rows, ""]  # fmt: skip
    return "\n".join(out)


def _row(env: str, info: FieldInfo) -> str:
    default = shown_default(info)
    what = (info.description or "").replace("|", "\\|").replace("\n", " ")
    shown = f"`{default}`" if default is not None else ""
    return f"| `{env}` | {_type(info.annotation)} | {shown} | {what} |"


def _type(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " \\| ".join(_type(a) for a in inner) + " (optional)"
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation)).replace("SecretStr", "secret")
