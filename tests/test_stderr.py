"""Every line on stderr goes through the notices object, which redacts the token and escapes control characters.

The command line reports its own errors and warnings (before a run, or without one) through
``output.notices.stderr_notices``; a direct ``click.echo(..., err=True)`` or ``sys.stderr.write``
elsewhere would bypass both rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import run_cli

PACKAGE = Path(__file__).resolve().parent.parent / "misskey_cli"
NOTICES = PACKAGE / "output" / "notices.py"


def writes_stderr(call: ast.Call) -> bool:
    """``click.echo(..., err=True)``, ``print(..., file=sys.stderr)`` or ``sys.stderr.write(...)``."""
    err = any(k.arg == "err" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
              for k in call.keywords)
    to_file = any(k.arg == "file" and "stderr" in ast.unparse(k.value) for k in call.keywords)
    func = call.func
    write = isinstance(func, ast.Attribute) and func.attr == "write" and "stderr" in ast.unparse(func.value)
    return err or to_file or write


def direct_stderr_writes(tree: ast.AST) -> list[int]:
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and writes_stderr(node))


def test_direct_stderr_writes_are_found():
    code = "click.echo('x', err=True)\nprint('y', file=sys.stderr)\nsys.stderr.write('z')\nclick.echo('ok')\n"
    assert direct_stderr_writes(ast.parse(code)) == [1, 2, 3]


def test_no_module_but_notices_writes_stderr_directly():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py")) if path != NOTICES
             for line in direct_stderr_writes(ast.parse(path.read_text(encoding="utf-8")))]
    assert not found, "write stderr through output.notices (stderr_notices() before a run):\n" + "\n".join(found)


def test_a_usage_error_quoting_control_characters_is_one_escaped_line():
    result = run_cli("connect", "localTimeline", "--jq", ".a \x1b[2J |")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("mkstream: error: ") and "\x1b" not in result.stderr
