"""The README opens with the two commands that work on a fresh machine, and CI runs the second."""

from __future__ import annotations

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
