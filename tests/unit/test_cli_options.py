"""Every CLI option that sets a setting is declared by its settings field: a test walks each one
and checks the flag, its help (the field's description, default and environment variable),
its choices, that the value given lands in the field, and that `marketpipe settings` names the
same variable. Every command has a description and an example."""

from __future__ import annotations

import argparse
import typing

import pytest

from marketpipe.cli import COMMAND_OPTIONS, SECTION_OPTIONS, build_parser, main
from marketpipe.cliopts import SectionOptions, shown_default
from marketpipe.settings import Settings, flatten_env

OPTIONS = [
    (command, options, field)
    for command, sections in COMMAND_OPTIONS.items()
    for options, _ in sections
    for field in options.fields
]


def subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def section_of(settings: Settings, options: SectionOptions) -> typing.Any:
    out: typing.Any = settings
    for part in options.path:
        out = getattr(out, part)
    return out


def test_every_section_option_is_on_a_command() -> None:
    assert {id(o) for o, _ in sum(COMMAND_OPTIONS.values(), ())} == {id(o) for o in SECTION_OPTIONS}


@pytest.mark.parametrize(("command", "options", "field"), OPTIONS,
                         ids=[f"{c}-{f}" for c, _, f in OPTIONS])  # fmt: skip
def test_the_flag_is_declared_by_its_field(
    command: str, options: SectionOptions, field: str
) -> None:
    info = options.model.model_fields[field]
    flag = options.flags()[field]
    action = next(
        a for a in subparser(build_parser(), command)._actions if flag in a.option_strings
    )
    env = options.env(field)
    help_text = (action.help or "").replace("%%", "%")
    assert info.description
    assert info.description.rstrip(".") in help_text
    assert f"env {env}" in help_text
    default = shown_default(info)
    if default is not None:
        assert f"default {default};" in help_text
    # `marketpipe settings` prints the very same variable name.
    assert env in flatten_env(Settings())
    args = typing.get_args(info.annotation)
    literal = [a for a in (info.annotation, *args) if typing.get_origin(a) is typing.Literal]
    if literal:
        assert action.choices == [str(c) for c in typing.get_args(literal[0])]


def flat(annotation: object) -> list[object]:
    """An annotation and what it is made of, Optional and Annotated unwrapped."""
    out = [annotation]
    for arg in typing.get_args(annotation):
        if typing.get_origin(annotation) is not typing.Literal:
            out += flat(arg)
    return out


def sample(options: SectionOptions, field: str) -> tuple[list[str], object]:
    """A value other than the default for the flag, and what the field should hold then."""
    info = options.model.model_fields[field]
    flag = options.flags()[field]
    default = info.get_default(call_default_factory=True)
    kinds = set(flat(info.annotation))
    literal = next((k for k in kinds if typing.get_origin(k) is typing.Literal), None)
    if literal is not None:
        choice = next(c for c in typing.get_args(literal) if c != default)
        return [flag, str(choice)], choice
    if bool in kinds:
        return ([f"--no-{flag[2:]}"], False) if default else ([flag], True)
    if int in kinds:
        return [flag, "7"], 7
    if float in kinds:
        return [flag, "0.25"], 0.25
    if any(typing.get_origin(k) is list for k in kinds):
        return [flag, "AAA,BBB"], ["AAA", "BBB"]
    if any(typing.get_origin(k) is dict for k in kinds):
        return [flag, "time=ts"], {"time": "ts"}
    special = {"start_at": "2024-03-08T14:30:00Z", "tz": "UTC", "address": "0.0.0.0"}
    value = special.get(field, "abc" if field != "delimiter" else ";")
    return [flag, value], value


@pytest.mark.parametrize(("command", "options", "field"), OPTIONS,
                         ids=[f"{c}-{f}" for c, _, f in OPTIONS])  # fmt: skip
def test_a_value_given_lands_in_its_field(
    command: str, options: SectionOptions, field: str
) -> None:
    argv, expected = sample(options, field)
    extra = ["file.csv"] if command == "replay" else []
    args = build_parser().parse_args([command, *argv, *extra])
    applied = options.apply(section_of(Settings(), options), args)
    assert getattr(applied, field) == expected


def test_a_bad_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--tps", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--tps" in err
    assert err.count("\n") == 1


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found += commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", commands(build_parser()), ids=" ".join)
def test_every_command_has_a_description_and_an_example(path: tuple[str, ...]) -> None:
    p = subparser(build_parser(), *path)
    assert p.description
    assert p.epilog
    assert p.epilog.startswith("example:\n  marketpipe ") or "marketpipe " in p.epilog
    assert (p.epilog.split("\n")[1].split("marketpipe ", 1)[1].split()[0]) == path[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("marketpipe ")


def test_a_subcommand_help_is_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["local", "up", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: marketpipe local up")
    assert "Start the local broker" in out
