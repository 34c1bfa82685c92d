"""Shared test fixtures (a live simulator per test, the real-server recording, shared jq workers) and the
session's setup: the package compiled and the test modules rewritten once, the machine's settings cleared."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from misskey_cli.simulator import Simulator

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package once, so that the hundreds of mkstream processes the tests spawn load it
    as a user's install would, instead of each compiling every module again (where
    PYTHONDONTWRITEBYTECODE is set, as on CI's machines, nothing would ever write the cache).
    Clear the machine's settings (``MACHINE_SETTINGS``) for this process and every one it starts, and
    let SIGINT through to them."""
    import compileall

    import misskey_cli

    compileall.compile_dir(str(Path(misskey_cli.__file__).parent), quiet=2, workers=1)
    for name in MACHINE_SETTINGS:
        os.environ.pop(name, None)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background of a script (``.ci/run &``), which ignores SIGINT: every mkstream
        # the tests start would inherit that and rightly keep ignoring Ctrl-C, and the tests that
        # press it would fail.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        _rewrite_once(config)


def _rewrite_once(config: pytest.Config) -> None:
    """Before pytest-xdist starts its workers: pytest's rewritten test modules, written once.

    Each worker rewrites the asserts of every test module (and of the plugins' packages, hypothesis
    among them) as it collects: 4-6 s of CPU a worker. pytest caches the result only where it may
    write bytecode, and all the workers start at once, so each would do it all again. One
    collection here, allowed to write, leaves the cache the workers then read. Best effort: if it
    fails or times out, the workers rewrite as before.
    """
    tests = Path(__file__).parent
    tag = f"{sys.implementation.cache_tag}-pytest-{pytest.__version__}.pyc"
    cached = tests / "__pycache__"
    if all((cached / f"{source.stem}.{tag}").exists()
           and (cached / f"{source.stem}.{tag}").stat().st_mtime >= source.stat().st_mtime
           for source in tests.glob("test_*.py")):
        return
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    modules = sorted(tests.glob("test_*.py"), key=lambda path: -path.stat().st_size)
    halves = [modules[0::2], modules[1::2]]  # one collection per core
    collections = []
    with contextlib.suppress(OSError):
        for half in halves:
            collections.append(subprocess.Popen(
                [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                 *map(str, half)],
                cwd=config.rootpath, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for collection in collections:
        try:
            collection.wait(timeout=120)
        except subprocess.TimeoutExpired:
            collection.kill()
            collection.wait()


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


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and nesting, with scalars reduced to their kind."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _children() -> set[int]:
    """The processes this one started that are still running (Linux; elsewhere none are known)."""
    pids: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as listing:
                pids.update(int(pid) for pid in listing.read().split())
    return pids


@pytest.fixture(autouse=True)
def _no_mkstream_outlives_its_test() -> Iterator[None]:
    """The last guard of "every process a test starts ends": an mkstream a test started and left
    running (its own bounded wait failed, say) is killed when the test ends. The jq workers a
    session shares (``shared_jq``) are left alone."""
    before = _children()
    yield
    for pid in _children() - before:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read()
            if b"misskey_cli" in command and b"jqworker" not in command:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def shared_jq() -> Iterator[Callable[..., Any]]:
    """``shared_jq(renderer, ...)``: the renderers use one libjq worker per program and arguments.

    Each Renderer with a filter starts its own worker process (about 40 ms of CPU); tests that
    compare many renderers of the same few programs share them instead. A worker that a test
    stops mid-frame is started again by its next use.
    """
    from misskey_cli.output.jqworker import JqProcess

    workers: dict[tuple[str, str], JqProcess] = {}

    def share(*renderers: Any) -> Any:
        for renderer in renderers:
            own = renderer.program
            if own is not None:
                key = (own.program, json.dumps(own.args, sort_keys=True))
                if key not in workers:
                    # The pool's own: a renderer closes its program when it is collected, and a
                    # collection during another renderer's frame would kill the worker under it.
                    workers[key] = JqProcess(own.program, own.args)
                renderer.program = workers[key]
        return renderers if len(renderers) > 1 else renderers[0]

    yield share
    for worker in workers.values():
        worker.close()


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


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_sim(certificate):
    """A simulator serving wss (and https) with that certificate."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Simulator(ssl_context=context) as sim:
        yield sim


# Tests see neither the machine's proxy and terminal settings nor its mkstream config and credentials:
# these are removed for the whole session (a test that sets one uses monkeypatch, which puts it back
# to removed), and each test gets a config home of its own, made only if the test writes there.
MACHINE_SETTINGS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                    "ALL_PROXY", "MISSKEY_HOST", "MISSKEY_TOKEN", "MKSTREAM_PROFILE", "NO_COLOR", "FORCE_COLOR",
                    "COLORTERM", "COLUMNS", "LINES")


@pytest.fixture(autouse=True)
def _no_config_from_the_machine(monkeypatch: pytest.MonkeyPatch, _config_homes: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_config_homes / f"{next(_HOMES)}-no-config"))


_HOMES = itertools.count()


@pytest.fixture(scope="session")
def _config_homes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-homes")
