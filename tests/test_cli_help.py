"""Help that a pipe, a log or CI shows whole (every option's name, every command's summary, at 80 columns), and
usage errors as one ``error:`` line each."""

from __future__ import annotations

import re

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from tritonkit.cli import app

runner = CliRunner()
COMMAND = typer.main.get_command(app)
assert isinstance(COMMAND, typer.core.TyperGroup)


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", sorted(COMMAND.commands))
def test_every_option_name_is_printed_whole(name: str) -> None:
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for parameter in COMMAND.commands[name].params:
        for option in [*parameter.opts, *parameter.secondary_opts]:
            if option.startswith("-"):
                whole = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output)
                assert whole, f"{option} is cut off in:\n{result.output}"


def test_the_command_list_gives_each_summary_whole() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    printed = _words(result.output)
    for name, command in COMMAND.commands.items():
        summary = _words((command.help or "").split("\n\n")[0])
        assert f"{name} {summary}" in printed, f"{name}: {summary!r} is cut off in:\n{result.output}"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["bench"], "error: missing argument 'name'; 'tritonkit bench --help' lists what it takes"),
        (["bench", "m", "--window-s", "0"], "error: invalid value for '--window-s': Input should be greater than"),
        (["bench", "m", "--bogus"], "error: no such option: --bogus"),
        (["nosuch"], "error: no such command 'nosuch'; 'tritonkit --help' lists what it takes"),
    ],
    ids=["missing argument", "bad value", "unknown option", "unknown command"],
)
def test_a_usage_error_is_one_error_line(args: list[str], line: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()], result.output
    assert result.output.startswith(line), result.output
