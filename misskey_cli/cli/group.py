"""The ``mkstream`` group: the entry point, the list of commands, and click's errors in mkstream's style.

The commands (``commands.py``) are loaded when one is needed, so ``mkstream --help`` and
``--version`` start without building every command's options.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import MutableMapping
from typing import Any, NoReturn

import click

from misskey_cli import __version__
from misskey_cli.cli.options import fail
from misskey_cli.cli.params import CONTEXT_SETTINGS
from misskey_cli.errors import ExitCode

# ----- the group ------------------------------------------------------------------------------


# Each command's summary (the first paragraph of its help), so that the group's --help and
# --version need not build every command's options; tests/test_help.py checks them against the
# commands themselves (cli/commands.py).
COMMANDS = {
    "capture": "Capture notes and write their noteUpdated events (reactions, votes, deletion).",
    "channels": "List the channels a Misskey server offers, or show one in detail.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
    "connect": "Connect channels on one socket and write every frame they deliver.",
    "doctor": "Check, step by step, why a stream does not work.",
    "login": "Get a token through MiAuth and keep it in a profile.",
    "logout": "Remove a profile and the token file login made for it.",
    "profiles": "List the profiles in the config file: name, host, auth mode, token source.",
    "proxy": "Relay a client's traffic to a server and write every frame, both ways.",
    "replay": "Replay recordings through the output options, as if the frames arrived now.",
    "send": "Connect CHANNEL, send it one message, and write what arrives.",
    "serve": "Run the built-in Misskey-compatible streaming simulator (and its HTTP API).",
}


def all_commands() -> MutableMapping[str, click.Command]:
    """Build (once) and return every command, registered on ``main``."""
    if not main.commands:
        from misskey_cli.cli.commands import COMMANDS as BUILT

        for command in BUILT:
            main.add_command(command)
    return main.commands


class MkstreamGroup(click.Group):
    """Loads its commands when one is needed, and reports click's usage errors the way mkstream
    reports its own: one line, one hint."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            all_commands()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        # A bare Command with the same help shortens it exactly as the real one would.
        rows = [(name, click.Command(name, help=COMMANDS[name]).get_short_help_str(limit)) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _main_shell_completion(self, *args: Any, **kwargs: Any) -> None:
        from misskey_cli.cli.completion import register_bash_completion

        register_bash_completion()  # only when completing: importing it would slow every start-up
        super()._main_shell_completion(*args, **kwargs)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(ExitCode.SIGINT)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `mkstream` alone: the help, as click shows it
                exc.show()
                sys.exit(exc.exit_code)
            hint = None
            if exc.ctx is not None:
                names, ctx = [], exc.ctx
                while ctx.parent is not None:
                    names.append(ctx.info_name or "")
                    ctx = ctx.parent
                hint = f"see '{' '.join(['mkstream', *reversed(names)])} --help'"
            fail(exc.format_message(), ExitCode.USAGE, hint)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:
                raise
            stdout_failed(exc)
        sys.exit(code if isinstance(code, int) else 0)



# What writing the help, a listing or a report can meet (a full disk, a quota, a dead device): the
# commands that read files turn their errors into usage errors before this, and the streaming
# commands report their own output errors.
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def stdout_failed(exc: OSError) -> NoReturn:
    """One line, as the streaming commands say it, and exit 1. What is still buffered for stdout is
    dropped, so the interpreter's last flush does not fail again with a traceback."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    fail(f"cannot write to stdout: {exc.strerror or exc}", ExitCode.RUNTIME_ERROR)


@click.group(cls=MkstreamGroup, context_settings=CONTEXT_SETTINGS, epilog="""\b
Examples:
  mkstream connect localTimeline --demo -n 3
  mkstream channels hashtag
  mkstream connect 'hashtag?q=misskey' homeTimeline --profile work --jq .body.body.text -r""")
@click.version_option(__version__, "-V", "--version", prog_name="mkstream")
def main() -> None:
    """Watch and debug the Misskey streaming API.

    Opens the WebSocket, connects channels and note captures, and writes every frame the server
    sends, optionally through jq, as coloured JSON on a terminal or NDJSON in a pipe.

    Run 'mkstream channels' for the channels and their params, 'mkstream COMMAND --help' for a
    command's options, and 'mkstream profiles --help' to keep servers and tokens in a config file.
    """



def completion_script(shell: str) -> str:
    """The completion script of the whole command line for SHELL."""
    from misskey_cli.cli.completion import completion_script as script

    all_commands()
    return script(main, shell)


if __name__ == "__main__":  # pragma: no cover
    main()
