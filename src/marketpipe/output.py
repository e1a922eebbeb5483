"""``--output json``: what a reporting command prints for scripts instead of people.

One JSON object per run on stdout (errors stay one line on stderr), keys in snake_case, times
as ISO 8601 strings in UTC, sizes in bytes, durations in seconds. The shape of each command's
object is documented in docs/cli-json.md and held by tests/unit/test_output.py.
"""

from __future__ import annotations

import argparse
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

FORMATS = ("text", "json")


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", choices=FORMATS, default="text",
        help="text for people (default) or json for scripts (docs/cli-json.md)",
    )  # fmt: skip


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "text") == "json"


def dumps(value: Any) -> str:
    """``value`` as indented JSON: dataclasses (with their public properties, e.g. a delivery
    report's ``delivered`` and ``ok``), datetimes and paths included."""
    return orjson.dumps(
        plain(value), default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    ).decode()


def plain(value: Any) -> Any:
    """Dataclasses as dicts of their fields and public properties, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property) and not name.startswith("_"):
                out[name] = plain(getattr(value, name))
        return out
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def emit(value: Any) -> None:
    print(dumps(value))


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):  # dataclasses, tuples: already plain()
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
