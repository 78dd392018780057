"""``streamseg --help`` and every command's help: each command and option described, in plain
text (no raw markup), and every default shown is the one the option really has."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamseg.cli import build_parser

MARKUP = re.compile(r"%\(|`|\*|:class:|:func:")


def parsers(parser: argparse.ArgumentParser, name: str = "streamseg") -> Iterator[
        tuple[str, argparse.ArgumentParser, argparse._SubParsersAction | None]]:
    """Every parser, the top-level one included, with its full command name."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield name, parser, subs[0] if subs else None
    for sub in subs:
        for child_name, child in sub.choices.items():
            yield from parsers(child, f"{name} {child_name}")


ALL = list(parsers(build_parser()))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def test_every_command_is_covered() -> None:
    names = {name for name, _, _ in ALL}
    assert {"streamseg worker", "streamseg api", "streamseg dev", "streamseg generate",
            "streamseg replay", "streamseg inspect", "streamseg forget", "streamseg bench",
            "streamseg kafka fetch", "streamseg kafka start"} <= names


@pytest.mark.parametrize(("name", "parser", "sub"), ALL, ids=[n for n, _, _ in ALL])
def test_help__describes_every_command_and_option_in_plain_text(
        name: str, parser: argparse.ArgumentParser, sub: argparse._SubParsersAction | None) -> None:
    text = parser.format_help()
    assert not MARKUP.search(text), f"{name}: raw markup in\n{text}"
    assert parser.description, f"{name} has no description"
    for action in options(parser):
        assert action.help and action.help.strip(), f"{name} {action.dest}: no help"
    if sub is not None:
        for choice in sub._choices_actions:
            assert choice.help and choice.help.strip(), f"{name} {choice.dest}: no help"


@pytest.mark.parametrize(("name", "parser", "sub"), ALL, ids=[n for n, _, _ in ALL])
def test_help__shows_the_true_default_of_every_option_that_has_one(
        name: str, parser: argparse.ArgumentParser, sub: argparse._SubParsersAction | None) -> None:
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    formatter = parser._get_formatter()
    for action in options(parser):
        if action.default in (None, False) or not action.option_strings:
            continue
        shown_help = " ".join(formatter._expand_help(action).split())
        assert shown_help in text
        shown = re.findall(r"\(default: ([^)]*)\)", shown_help)
        said = action.help and "default" in action.help
        assert shown or said, f"{name} {action.option_strings[-1]}: default not shown"
        if shown:
            assert shown == [str(action.default)], f"{name} {action.option_strings[-1]}"


def test_dev_workdir__default_is_streamseg_data_under_the_current_folder() -> None:
    args = build_parser().parse_args(["dev"])
    assert args.workdir == Path("streamseg-data")
    assert "(default: streamseg-data)" in " ".join(
        dict((n, p) for n, p, _ in ALL)["streamseg dev"].format_help().split())
