"""Shared test fixtures: a live simulator per test, and the real-server recording."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from misskey_cli.simulator import Simulator

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def _load_frames() -> tuple[dict[str, Any], ...]:
    with open(FIXTURES / "frames.jsonl", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


def fixture_frames(what: str | None = None) -> list[dict[str, Any]]:
    """Lines of tests/fixtures/frames.jsonl (real Misskey frames), those whose ``what`` starts with ``what``.

    Each line is {what, viewer, how, raw, result}; a frame line also gets ``frame``, ``raw`` parsed.
    """
    out = []
    for line in _load_frames():
        if what is None or line["what"].startswith(what):
            item = dict(line)
            if item.get("raw"):
                item["frame"] = json.loads(item["raw"])
            out.append(item)
    return out


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A running simulator on a free loopback port: no generated traffic, no ticks."""
    simulator = Simulator(rate=0, ticks=False, seed=1234)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()
    assert simulator.errors == [], simulator.errors
