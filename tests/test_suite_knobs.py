"""The test suite's knobs (docs/cli.md §7): documented, and a bad value is a usage error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SAFETY, run_cli

from misskey_cli.errors import ExitCode

KNOBS = ("MKSTREAM_DEMO_RATE", "MKSTREAM_DRAIN_TIMEOUT")


def test_every_knob_is_documented():
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    assert all(f"`{knob}`" in text for knob in KNOBS)


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast", "1e9", ""])
def test_a_bad_knob_value_is_one_line_and_exit_2(knob, value):
    result = run_cli("connect", "localTimeline", "--demo", "-n", "1", *SAFETY, env={knob: value})
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert result.stderr.count("\n") == 1 and f"mkstream: error: {knob}=" in result.stderr
