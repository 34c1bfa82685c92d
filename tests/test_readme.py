"""The README opens with the two commands that work on a fresh machine, and CI runs the second."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_code_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert match and text.index(match.group(0)) < text.index("\n## "), "the README must open with a sh block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_and_demo_then_install_and_test():
    install_and_run, install_and_test = first_code_block()
    assert install_and_run.startswith("pip install . && mkstream connect localTimeline --demo")
    assert install_and_test.startswith("pip install '.[test]' && ") and "pytest" in install_and_test


def test_ci_runs_the_readme_test_command():
    _, install_and_test = first_code_block()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install_and_test in ci


PACKAGE = ROOT / "misskey_cli"
LAYOUT_HEADING = "## How the code is laid out"


def layout_rows() -> list[str]:
    """The modules the README's layout table names, as paths relative to misskey_cli/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert LAYOUT_HEADING in text, f"the README must have a section {LAYOUT_HEADING!r}"
    section = text.split(LAYOUT_HEADING, 1)[1]
    section = re.split(r"\n## |\n<!-- ", section, maxsplit=1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)


def package_modules() -> list[str]:
    """Every module of the package, relative to misskey_cli/ (a package's ``__init__`` is its sub-package)."""
    return sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                  if path.name != "__init__.py" and "__pycache__" not in path.parts)


def first_docstring_line(relative: str) -> str:
    doc = ast.get_docstring(ast.parse((PACKAGE / relative).read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring: write one)"


def test_readme_layout_names_every_module_and_only_modules_that_exist():
    named = layout_rows()
    assert named, "the README's layout table has no rows"
    modules = package_modules()
    problems = [f"misskey_cli/{module} is not in the README's {LAYOUT_HEADING!r} table: add the row "
                f"| `{module}` | <its one job> |  (its docstring begins: {first_docstring_line(module)})"
                for module in modules if module not in named]
    problems += [f"the README's {LAYOUT_HEADING!r} table names `{row}`, but misskey_cli/{row} does not exist: "
                 "remove or rename its row" for row in named if row not in modules]
    problems += [f"the README's {LAYOUT_HEADING!r} table names `{row}` twice" for row in set(named)
                 if named.count(row) > 1]
    assert not problems, "\n".join(problems)
