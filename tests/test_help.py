"""Help that teaches: every command explains itself and ends with examples; the README's reference
section is the real ``--help`` output; ``mkstream channels NAME`` gives a command that works.

The reference is regenerated with ``MKSTREAM_UPDATE_DOCS=1 python -m pytest tests/test_help.py``.
"""

from __future__ import annotations

import inspect
import os
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from misskey_cli.cli.group import COMMANDS, all_commands, main
from misskey_cli.core.channels import CHANNELS
from misskey_cli.errors import ExitCode

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- BEGIN REFERENCE -->", "<!-- END REFERENCE -->"
WIDTH = 100


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MKSTREAM_PROFILE", raising=False)


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), prog_name="mkstream", terminal_width=WIDTH, env=env,
                              catch_exceptions=False)


def command_names() -> list[str]:
    with click.Context(main) as ctx:
        return main.list_commands(ctx)


def help_text(*command: str) -> str:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def reference() -> str:
    parts = [BEGIN, "## Reference", "",
             "Every command's `--help`, generated from the code (a test fails when it is stale); refresh it",
             "with `MKSTREAM_UPDATE_DOCS=1 python -m pytest tests/test_help.py`.", ""]
    for command in ((), *((name,) for name in command_names())):
        parts += [f"### `{' '.join(('mkstream', *command))}`", "", "```text", help_text(*command).rstrip(), "```", ""]
    parts.append(END)
    return "\n".join(parts)


@pytest.mark.parametrize("command", ["", *command_names()])
def test_every_command_has_help_ending_in_examples(command):
    words = (command,) if command else ()
    cmd = all_commands()[command] if command else main
    assert (cmd.help or "").strip(), f"{command or 'mkstream'} has no help text"
    blocks = help_text(*words).rstrip("\n").split("\n\n")
    heading, *examples = blocks[-1].splitlines()
    assert heading.strip() == "Examples:", f"{command}: the help must end with an Examples: block"
    assert 2 <= len(examples) <= 3
    assert all(" mkstream " in f" {line.strip()}" for line in examples), examples


def test_short_help_lists_every_command():
    top = help_text()
    for name in command_names():
        assert f"  {name} " in top


def test_readme_reference_is_current():
    text = README.read_text(encoding="utf-8")
    fresh = reference()
    if os.environ.get("MKSTREAM_UPDATE_DOCS") == "1":
        before = text[:text.index(BEGIN)] if BEGIN in text else text.rstrip("\n") + "\n\n"
        after = text[text.index(END) + len(END):] if END in text else "\n"
        README.write_text(before + fresh + after, encoding="utf-8")
        text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README.md has no reference section: run with MKSTREAM_UPDATE_DOCS=1"
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == fresh, "README.md reference is stale: MKSTREAM_UPDATE_DOCS=1 python -m pytest tests/test_help.py"
    assert text.rstrip().endswith(END), "the reference section closes the README"


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.name)
def test_channel_detail_shows_params_events_and_an_example(channel):
    result = invoke("channels", channel.name)
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith(f"{channel.name}: {channel.summary}\n")
    for param in channel.params:
        assert f"  {param.name} " in out
    assert "params:" in out and f"events:    {channel.events[0]}" in out
    assert f"example:   {channel.example}\n" in out


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.name)
def test_catalogue_examples_are_commands_that_pass_validation(channel, tmp_path):
    """Each example, pointed at a closed port, gets as far as connecting (exit 3, not 2)."""
    (tmp_path / ".misskey-token").write_text("tok-example\n")
    words = shlex.split(channel.example.partition(" | ")[0])
    assert words[0] == "mkstream", channel.example
    token = () if "--token-file" in words else ("--token", "tok-example")
    result = invoke(*words[1:], "--host", "http://127.0.0.1:9", *token, "-q", env={"HOME": str(tmp_path)})
    assert result.exit_code == ExitCode.CONNECT_FAILED, (channel.example, result.stderr)


def test_unknown_channel_detail_suggests_the_name():
    result = invoke("channels", "localTimline")
    assert result.exit_code == ExitCode.USAGE
    assert "unknown channel localTimline (did you mean localTimeline" in result.stderr


def test_help_starts_fast_without_heavy_imports():
    probe = ("import sys, misskey_cli.cli.group; "
             "print(sorted(m for m in ('tomllib', 'jq', 'pygments', 'websocket', 'websockets') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_groups_command_summaries_are_the_commands_own():
    # The group lists its commands without building them (start-up): the table must not drift.
    commands = all_commands()
    assert sorted(commands) == sorted(COMMANDS)
    for name, command in commands.items():
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert COMMANDS[name] == first, name


def test_version_and_help_build_no_command():
    probe = ("import sys; from misskey_cli.cli.group import main\n"
             "try:\n    main(['--help'], prog_name='mkstream')\nexcept SystemExit:\n    pass\n"
             "print('misskey_cli.cli.commands' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "False" and "connect" in done.stdout
