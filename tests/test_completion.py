"""Shell completion: the committed scripts are current, and TAB completes what the catalogue knows.

Completions are tested through click's ``ShellComplete.get_completions`` (what every shell's script
asks for), through the zsh/fish wire format (descriptions), and once through a real bash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner
from helpers import run_cli

from misskey_cli.cli.group import completion_script, main

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"bash": "mkstream.bash", "zsh": "_mkstream", "fish": "mkstream.fish"}


def as_mkstream(env: dict[str, str]):
    """Run the CLI under its installed name, as a shell's completion script does (the variable is
    derived from it)."""
    return CliRunner().invoke(main, [], prog_name="mkstream", env=env, catch_exceptions=False)


def complete(*words: str, incomplete: str = "") -> list[str]:
    return [item.value for item in items(*words, incomplete=incomplete)]


def items(*words: str, incomplete: str = ""):
    return ShellComplete(main, {}, "mkstream", "_MKSTREAM_COMPLETE").get_completions(list(words), incomplete)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_committed_scripts_are_what_the_code_generates(shell):
    committed = (ROOT / "completions" / SCRIPTS[shell]).read_bytes()
    regenerate = f"regenerate: mkstream completion {shell} > completions/{SCRIPTS[shell]}"
    assert committed == completion_script(shell).encode(), regenerate
    # `mkstream completion SHELL` and click's own `_MKSTREAM_COMPLETE=SHELL_source` print the same bytes.
    printed = run_cli("completion", shell)
    assert printed.exit_code == 0 and printed.stdout_bytes == committed
    sourced = as_mkstream({"_MKSTREAM_COMPLETE": f"{shell}_source"})
    assert sourced.stdout_bytes == committed


@pytest.mark.parametrize(("words", "incomplete", "expected"), [
    ((), "c", ["capture", "channels", "completion", "connect"]),
    ((), "pro", ["profiles", "proxy"]),
    (("connect",), "--to", ["--token", "--token-file"]),
    (("connect",), "--no-t", ["--no-timestamps"]),
    (("connect",), "loc", ["localTimeline"]),
    (("connect",), "user", ["userList"]),
    (("connect", "localTimeline"), "hash", ["hashtag"]),
    (("send",), "queue", ["queueStats"]),
    (("channels",), "rev", ["reversi", "reversiGame"]),
    (("completion",), "", ["bash", "zsh", "fish"]),
    (("connect", "--format"), "", ["pretty", "ndjson", "raw", "line"]),
    (("connect", "--color"), "a", ["auto", "always"]),
    (("send", "queueStats", "requestLog", "--auth"), "", ["query", "header"]),
    (("capture", "--style"), "monok", ["monokai"]),
])
def test_commands_options_channels_and_choices(words, incomplete, expected):
    assert complete(*words, incomplete=incomplete) == expected


@pytest.mark.parametrize(("incomplete", "expected"), [
    ("hashtag?", ["hashtag?q="]),
    ("'hashtag?", ["'hashtag?q="]),  # a caller that kept the shell's open quote gets it back
    ("localTimeline?with", ["localTimeline?withRenotes=", "localTimeline?withReplies=", "localTimeline?withFiles="]),
    ("userList:work?listId=9abc&withF", ["userList:work?listId=9abc&withFiles="]),
    ("localTimeline?withFiles=", ["localTimeline?withFiles=true", "localTimeline?withFiles=false"]),
    ("localTimeline?withFiles=f", ["localTimeline?withFiles=false"]),
    ("userList?listId=", []),  # an id: nothing to offer
    ("noSuchChannel?", []),
])
def test_params_inside_a_channel_spec(incomplete, expected):
    assert complete("connect", incomplete=incomplete) == expected


@pytest.mark.parametrize(("words", "incomplete", "expected"), [
    (("connect", "localTimeline", "-p"), "", ["withRenotes=", "withReplies=", "withFiles="]),
    (("connect", "-p", "withFiles=true", "userList", "-p"), "li", ["listId="]),
    (("connect", "hashtag?q=misskey", "homeTimeline", "--param"), "", ["q=", "withRenotes=", "withFiles="]),
    (("connect", "localTimeline", "-p"), "withReplies=t", ["withReplies=true"]),
    (("send", "chatUser", "read", "-p"), "", ["otherId="]),
    (("connect", "main", "-p"), "", []),
])
def test_param_names_for_the_channels_on_the_line(words, incomplete, expected):
    assert complete(*words, incomplete=incomplete) == expected


def test_descriptions_come_from_the_catalogue():
    [channel] = items("connect", incomplete="localT")
    assert channel.help == "public notes from this server's users"
    [param] = items("connect", "userList", "-p", incomplete="listI")
    assert param.help == "the list's id"


@pytest.mark.parametrize(("shell", "line"), [
    ("zsh", "plain\nlocalTimeline\npublic notes from this server's users"),
    ("fish", "plain,localTimeline\tpublic notes from this server's users"),
])
def test_zsh_and_fish_show_the_channel_description(shell, line):
    env = {"_MKSTREAM_COMPLETE": f"{shell}_complete", "COMP_WORDS": "mkstream connect localT"}
    env["COMP_CWORD"] = "2" if shell == "zsh" else "localT"  # fish passes the word itself
    assert as_mkstream(env).stdout.strip() == line


def test_profile_names_come_from_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "xdg" / "mkstream" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.work]\nhost = "misskey.example"\n[profiles.local]\nhost = "localhost:3000"\n'
                      '[profiles.wiki]\n')
    assert complete("connect", "--profile", incomplete="w") == ["work", "wiki"]
    assert [i.help for i in items("connect", "--profile", incomplete="")] == ["misskey.example", "localhost:3000", ""]
    other = tmp_path / "other.toml"
    other.write_text("[profiles.elsewhere]\n")
    assert complete("send", "--config", str(other), "--profile", incomplete="") == ["elsewhere"]
    config.write_text("not toml [")
    assert complete("connect", "--profile", incomplete="") == []  # a broken file completes nothing, quietly


BREAKS = " \t\n\"'><=;|&(:"  # bash's default COMP_WORDBREAKS


def bash_words(line):
    """COMP_WORDS as bash makes them: split at blanks, and at each word-break character too."""
    words, word = [], ""
    for char in line:
        if char in " \t":
            if word:
                words.append(word)
            word = ""
        elif char in BREAKS:
            if word and word[-1] not in BREAKS:
                words.append(word)
                word = ""
            word += char
        else:
            if word and word[-1] in BREAKS:
                words.append(word)
                word = ""
            word += char
    words.append(word)
    return words


def run_bash_completion(tmp_path, line):
    """Source the committed script in a real bash and complete ``line`` as bash would; COMPREPLY."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    shim = tmp_path / "bin" / "mkstream"  # the CLI under its installed name, from this checkout
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f"#!/bin/sh\nexec '{sys.executable}' -c 'from misskey_cli.cli.group import main; "
                    f"main(prog_name=\"mkstream\")' \"$@\"\n")
    shim.chmod(0o755)
    words = bash_words(line)
    script = ROOT / "completions" / "mkstream.bash"
    words_array = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (f"source '{script}'\n"
               f"COMP_LINE='{line}'; COMP_POINT={len(line)}\n"
               f"COMP_WORDS=({words_array}); COMP_CWORD={len(words) - 1}\n"
               "_mkstream_completion mkstream\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = dict(os.environ, PATH=str(shim.parent) + os.pathsep + os.environ.get("PATH", ""),
               XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    env.pop("_MKSTREAM_COMPLETE", None)
    # An empty working directory, so a `?` in a word has nothing to glob against.
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], check=False, cwd=work, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(("line", "expected"), [
    ("mkstream connect localT", ["localTimeline"]),
    ("mkstream connect hashtag?", ["hashtag?q="]),
    ("mkstream connect localTimeline -p withR", ["withRenotes=", "withReplies="]),
    # bash breaks these words at = and :, and replaces only what follows the break.
    ("mkstream connect localTimeline -p withFiles=", ["=true", "=false"]),
    ("mkstream connect localTimeline -p withFiles=t", ["true"]),
    ("mkstream connect localTimeline?withFiles=f", ["false"]),
    ("mkstream connect userList:work?listId=1&with", ["withRenotes=", "withFiles="]),
])
def test_real_bash_completes_channels_and_params(tmp_path, line, expected):
    assert run_bash_completion(tmp_path, line) == expected
