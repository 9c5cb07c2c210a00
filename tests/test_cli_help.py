"""`steward --help` is complete: every command says what it does, and every option and argument is explained.

The tests walk the real click tree, so a command or option added later without help fails here.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from steward.cli import main


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under `command` (itself included), with the words that reach it from `steward`."""
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += walk(command.commands[name], (*path, name))
    return found


COMMANDS = walk(main)
IDS = [" ".join(path) or "steward" for path, _ in COMMANDS]


def test_the_walk_sees_the_whole_tree():
    paths = {" ".join(path) for path, _ in COMMANDS}
    # A few known leaves at each depth, so a broken walk cannot pass vacuously.
    assert {"serve", "worker", "scheduler", "db upgrade", "policy check", "export decisions", "doctor"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_has_a_summary(path, command):
    assert (command.help or "").strip(), f"`steward {' '.join(path)}` has no docstring"
    assert command.get_short_help_str(limit=200).strip()


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_option_has_help_and_every_argument_is_documented(path, command):
    where = f"steward {' '.join(path)}".strip()
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{where}: option {param.opts[0]} has no help text"
        elif isinstance(param, click.Argument):
            # Arguments have no help= in click; the docstring names them, as "REVISION" or "URL".
            name = (param.metavar or param.name or "").upper()
            assert name in (command.help or ""), f"{where}: argument {name} is not named in the docstring"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_exits_zero_and_lists_every_subcommand(path, command):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")
    if isinstance(command, click.Group):
        listed = result.output.split("Commands:", 1)[1]
        for name in command.commands:
            assert f"\n  {name} " in listed, f"{name} is missing from `steward {' '.join(path)} --help`"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.opts[-1] in result.output
