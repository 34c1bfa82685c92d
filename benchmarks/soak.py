"""Soak: mkstream against the simulator with a random fault every few seconds, counting every frame.

    python benchmarks/soak.py                   # 2 minutes
    python benchmarks/soak.py --minutes 10 --rate 500

A sender numbers every frame (``seq``) and sends it on the live socket only, remembering which
socket carried it. A fault injector drops TCP, closes with 1000/1001/1011/4000, freezes the peer
(half-open) or restarts the server, at random: each fault comes once the stream has been up for
5.5 s (mkstream resets its backoff after 5 s) plus ``--fault-every`` seconds on average.
mkstream's output is the sequence numbers it wrote. At the end the script prints:

- frames sent while connected, records written, reconnects;
- duplicates: a seq written twice;
- losses: a seq missing while a later frame of the same socket arrived, or missing before a
  clean close (nothing may be lost on a socket that closed properly);
- in flight at an abrupt fault: the tail of a socket that died without a close frame (TCP
  drop, freeze, server restart), which no client can receive: reported, not counted as lost.

Exit status 0 when there are no losses and no duplicates.

    python benchmarks/soak.py --notes --minutes 0.5   # what CI runs
    python benchmarks/soak.py --kill --minutes 0.5    # and this

``--notes`` soaks the backfill instead: notes are posted at ``--rate`` whether mkstream is
connected or not (the simulator keeps them in the history its HTTP timelines answer from), and
the faults include outages where handshakes are refused for a few seconds. Every note posted,
connected or not, must be written exactly once and in id order: it prints notes posted, written,
lost, duplicated.

``--kill`` soaks ``--state`` with ``-o FILE`` under a supervisor loop: mkstream is killed with
SIGKILL at random moments (right after the log grew, right after the state file changed, at a
random time, in its first milliseconds), sometimes ended with SIGTERM (must be 143) or by its own
``--duration``, and started again at once, also during outages, while the server faults as with
``--notes``. At the end one last run catches up; every note posted must be in the log exactly
once, in id order, with no torn line: it prints runs, kills, notes posted, written, lost,
duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from misskey_cli.simulator import Simulator  # noqa: E402 - after the sys.path line above

FAULTS = ("drop", "close-1000", "close-1001", "close-1011", "close-4000", "freeze", "restart")
ABRUPT = {"drop", "freeze", "restart"}
STABLE_AFTER = 5.5


def apply_fault(sim: Simulator, fault: str) -> None:
    """One of FAULTS or NOTE_FAULTS, to every socket of ``sim`` ("outage": refuse every handshake
    from now on and drop the sockets; ``sim.refuse_next(0)`` ends it)."""
    if fault == "outage":
        sim.refuse_next(10_000)
    if fault in ("drop", "outage"):
        sim.drop_all()
    elif fault == "freeze":
        sim.freeze_all()
    elif fault == "restart":
        sim.stop()
        sim.start()
    else:
        sim.close_all(int(fault.split("-")[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=None, help="frames per second (default 200; 40 with --notes)")
    parser.add_argument("--fault-every", type=float, default=2.0,
                        help="mean seconds between faults, after each reconnected stream has lived 5.5 s")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--notes", action="store_true", help="soak the backfill: notes posted while down too")
    parser.add_argument("--kill", action="store_true", help="soak --state: kill -9 and restart mkstream, again and again")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.kill:
        args.rate = args.rate or 20.0
        return soak_kill(args, rng)
    if args.notes:
        args.rate = args.rate or 40.0
        return soak_notes(args, rng)
    args.rate = args.rate or 200.0

    sim = Simulator(ping_interval=1.0, ping_timeout=3.0).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--host", f"http://{sim.host_port}",
         "--ndjson", "--jq", ".body.seq", "--reconnect-delay", "0.1", "--ping-interval", "0.5",
         "--ping-timeout", "1.5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    written: list[int] = []

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            written.append(int(line))

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()

    sent_on: dict[int, int] = {}  # seq -> socket index
    fault_of: dict[int, str] = {}  # socket index -> the fault that ended it
    lock = threading.Lock()
    stop = threading.Event()
    end = time.monotonic() + args.minutes * 60

    def send() -> None:
        seq = 0
        tick = 0.02  # frames go out in small batches, one hop to the server thread per batch
        per_tick = max(1, round(args.rate * tick))
        next_at = time.monotonic()
        while not stop.is_set():
            with lock:
                live = sim.connections()
                sockets = [index for index, channel, _, _ in live if channel == "localTimeline"]
                if sockets:
                    frames = [{"type": "channel", "body": {"id": "localTimeline", "type": "note", "seq": seq + n}}
                              for n in range(1, per_tick + 1)]
                    if sim.inject_many(frames, socket=sockets[-1]):
                        for n in range(1, per_tick + 1):
                            sent_on[seq + n] = sockets[-1]
                        seq += per_tick
            next_at += tick
            # Sleeping outside the lock lets the fault injector in between batches.
            time.sleep(max(0.001, next_at - time.monotonic()))

    injected: list[str] = []

    def inject_faults() -> None:
        while time.monotonic() < end:
            # A fault while mkstream is still reconnecting from the last one would test nothing.
            with contextlib.suppress(TimeoutError):
                sim.wait_for_subscription("localTimeline", timeout=60)
            # mkstream resets its backoff once a connection has lived 5 s; faulting sooner would
            # only measure its (deliberately) growing delays against a flapping server.
            gap = STABLE_AFTER + rng.expovariate(1.0 / args.fault_every)
            time.sleep(max(0.0, min(gap, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            fault = rng.choice(FAULTS)
            injected.append(fault)
            with lock:  # no frame is sent while a fault is being applied, so its socket is known
                live = [index for index, channel, _, _ in sim.connections() if channel == "localTimeline"]
                for index in live:
                    fault_of[index] = fault
                apply_fault(sim, fault)
            print(f"  {time.strftime('%H:%M:%S')} fault: {fault}", flush=True)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    faults = threading.Thread(target=inject_faults, daemon=True)
    faults.start()
    faults.join()
    stop.set()
    sender.join()
    # Let the last frames arrive: wait until the output stops growing.
    settled = -1
    while settled != len(written):
        settled = len(written)
        time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    reader.join(timeout=10)
    sim.stop()

    counts = Counter(written)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    received = set(counts)
    by_socket: dict[int, list[int]] = {}
    for seq, index in sorted(sent_on.items()):
        by_socket.setdefault(index, []).append(seq)
    losses, in_flight = 0, 0
    for index, seqs in by_socket.items():
        got = [s for s in seqs if s in received]
        last = max(got) if got else 0
        missing = [s for s in seqs if s not in received]
        gaps = [s for s in missing if s < last]
        tail = [s for s in missing if s > last]
        losses += len(gaps)
        if fault_of.get(index) in ABRUPT:
            in_flight += len(tail)
        else:
            losses += len(tail)
    order_ok = written == sorted(written)
    reconnects = err.decode().count("reconnecting in")

    print()
    print(f"duration             {args.minutes:g} min, {len(injected)} faults ({len(fault_of)} on a live stream), rate {args.rate:g}/s")
    print(f"frames sent          {len(sent_on)} (while connected)")
    print(f"records written      {len(written)}")
    print(f"reconnects           {reconnects}")
    print(f"duplicates           {duplicates}")
    print(f"losses               {losses}")
    print(f"in flight at abrupt faults (undeliverable, not losses): {in_flight}")
    print(f"in order             {'yes' if order_ok else 'NO'}")
    print(f"mkstream exit        {proc.returncode}")
    ok = duplicates == 0 and losses == 0 and order_ok and proc.returncode == 143
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


NOTE_FAULTS = ("drop", "close-1001", "close-1011", "freeze", "restart", "outage")


def soak_notes(args: argparse.Namespace, rng: random.Random) -> int:
    sim = Simulator(ping_interval=1.0, ping_timeout=3.0).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--host", f"http://{sim.host_port}",
         "--jq", ".body.body.id", "-r", "--reconnect-delay", "0.1", "--ping-interval", "0.5", "--ping-timeout", "1.5",
         "--stats"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    written: list[str] = []

    def read_output() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            written.append(line.decode().strip())

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    posted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    end = time.monotonic() + args.minutes * 60

    def post() -> None:
        tick = 1.0 / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            with lock:  # not while the server restarts
                posted.append(sim.post_note(text=f"soak {len(posted)}")["id"])
            next_at += tick
            time.sleep(max(0.0005, next_at - time.monotonic()))

    injected: list[str] = []

    def inject_faults() -> None:
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                sim.wait_for_subscription("localTimeline", timeout=60)
            time.sleep(max(0.0, min(STABLE_AFTER + rng.expovariate(1.0 / args.fault_every), end - time.monotonic())))
            if time.monotonic() >= end:
                break
            fault = rng.choice(NOTE_FAULTS)
            injected.append(fault)
            with lock:
                apply_fault(sim, fault)
            if fault == "outage":  # notes keep being posted while every handshake is refused
                time.sleep(rng.uniform(1.0, 3.0))
                sim.refuse_next(0)
            print(f"  {time.strftime('%H:%M:%S')} fault: {fault}", flush=True)

    sim.wait_for_subscription("localTimeline", timeout=60)  # notes from before mkstream started are not its to write
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    faults = threading.Thread(target=inject_faults, daemon=True)
    faults.start()
    faults.join()
    stop.set()
    poster.join()
    # Wait until everything posted is written (backfill after the last fault may still be paging).
    deadline = time.monotonic() + 60
    while len(set(written)) < len(posted) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    reader.join(timeout=10)
    sim.stop()

    counts = Counter(written)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    lost = [note_id for note_id in posted if note_id not in counts]
    order_ok = written == sorted(written, key=lambda i: (len(i), i))
    text = err.decode()
    print()
    print(f"duration             {args.minutes:g} min, {len(injected)} faults ({', '.join(injected)}), "
          f"rate {args.rate:g} notes/s")
    print(f"notes posted         {len(posted)} (connected or not)")
    print(f"notes written        {len(written)}")
    print(f"reconnects           {text.count('reconnecting in')}")
    backfilled = sum(int(n) for n in re.findall(r"backfilled (\d+) notes", text))
    print(f"backfilled           {backfilled}")
    print(f"lost                 {len(lost)}")
    print(f"duplicated           {duplicates}")
    print(f"in id order          {'yes' if order_ok else 'NO'}")
    print(f"mkstream exit        {proc.returncode}")
    ok = not lost and duplicates == 0 and order_ok and proc.returncode == 143 and injected
    if not ok:
        print("lost (index in posting order):", [posted.index(i) for i in lost][:50])
        print(text[-3000:])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


KILLS = ("after a write", "after a state save", "at random", "at once", "sigterm", "duration")


def soak_kill(args: argparse.Namespace, rng: random.Random) -> int:
    import tempfile

    sim = Simulator(ping_interval=1.0, ping_timeout=3.0).start()
    work = Path(tempfile.mkdtemp(prefix="mkstream-soak-"))
    state, log = work / "ltl.state", work / "ltl.log"
    posted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    end = time.monotonic() + args.minutes * 60

    def command(*extra: str) -> list[str]:
        return [sys.executable, "-m", "misskey_cli", "connect", "localTimeline", "--host", f"http://{sim.host_port}",
                "--jq", ".body.body.id", "-r", "--state", str(state), "-o", str(log), "--reconnect-delay", "0.1",
                "--ping-interval", "0.5", "--ping-timeout", "1.5", "--max-retries", "1000", *extra]

    def post() -> None:
        tick = 1.0 / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            with lock:
                posted.append(sim.post_note(text=f"soak {len(posted)}")["id"])
            next_at += tick
            time.sleep(max(0.0005, next_at - time.monotonic()))

    injected: list[str] = []

    def inject_faults() -> None:
        while not stop.is_set():
            time.sleep(rng.expovariate(1.0 / (args.fault_every * 2)))
            fault = rng.choice(NOTE_FAULTS)
            injected.append(fault)
            with lock:
                apply_fault(sim, fault)
            if fault == "outage":
                time.sleep(rng.uniform(0.5, 2.0))
                sim.refuse_next(0)

    def changed(path: Path, timeout: float) -> None:
        """Until ``path`` changes (size or mtime), polled: the moment to kill right after."""
        def seen() -> tuple[int, int] | None:
            with contextlib.suppress(OSError):
                info = path.stat()
                return info.st_size, info.st_mtime_ns
            return None

        before, deadline = seen(), time.monotonic() + timeout
        while seen() == before and time.monotonic() < deadline:
            time.sleep(0.001)

    def logged() -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return log.read_text().splitlines()
        return []

    # The first run makes the state: notes from before mkstream ever ran are not its to write.
    first = subprocess.Popen(command(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sim.wait_for_subscription("localTimeline", timeout=60)
    posted.append(sim.post_note(text="soak start")["id"])
    while posted[0] not in logged():
        time.sleep(0.01)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=30)
    kills: Counter[str] = Counter()
    bad_exits: list[str] = []
    runs = 1
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    faults = threading.Thread(target=inject_faults, daemon=True)
    faults.start()
    while time.monotonic() < end:
        how = rng.choice(KILLS)
        extra = ("--duration", f"{rng.uniform(0.5, 3.0):.2f}") if how == "duration" else ()
        proc = subprocess.Popen(command(*extra), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        runs += 1
        if how == "after a write":
            changed(log, rng.uniform(0.5, 4.0))
        elif how == "after a state save":
            changed(state, rng.uniform(0.5, 4.0))
        elif how in ("at random", "sigterm"):
            time.sleep(rng.uniform(0.05, 3.0))
        elif how == "at once":
            time.sleep(rng.uniform(0.0, 0.3))
        if how == "duration":
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            expected = 0
        else:
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            expected = 143 if how == "sigterm" else -signal.SIGKILL
        kills[how] += 1
        if proc.returncode != expected:
            bad_exits.append(f"{how}: exit {proc.returncode}: {err.decode()[-500:]}")
    stop.set()
    poster.join()
    faults.join()
    sim.refuse_next(0)
    opened = sim.sockets_opened
    last = subprocess.Popen(command(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # The catch-up run is asked to stop only once it has connected: a SIGTERM while the interpreter
    # itself is still starting (before any Python runs) would end it with -15, whatever mkstream does.
    while (sim.sockets_opened <= opened or not set(posted) <= set(logged())) and time.monotonic() < deadline:
        time.sleep(0.2)
    last.send_signal(signal.SIGTERM)
    _, err = last.communicate(timeout=30)
    sim.stop()

    written = logged()
    counts = Counter(written)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    lost = [note_id for note_id in posted if note_id not in counts]
    torn = [line for line in written if line not in set(posted)]
    order_ok = written == sorted(written, key=lambda i: (len(i), i))
    leftovers = [p.name for p in work.iterdir() if ".tmp-" in p.name]
    print()
    print(f"duration             {args.minutes:g} min, rate {args.rate:g} notes/s, {len(injected)} server faults")
    print(f"runs                 {runs + 1} (1 to start; {', '.join(f'{k} {v}' for k, v in kills.most_common())}; "
          "1 to catch up)")
    print(f"notes posted         {len(posted)}")
    print(f"notes written        {len(written)}")
    print(f"lost                 {len(lost)}")
    print(f"duplicated           {duplicates}")
    print(f"torn or foreign      {len(torn)}")
    print(f"in id order          {'yes' if order_ok else 'NO'}")
    print(f"bad exits            {len(bad_exits)}")
    print(f"temporary files left {len(leftovers)}")
    ok = (not lost and not duplicates and not torn and order_ok and not bad_exits and not leftovers
          and last.returncode == 143)
    if not ok:
        print("lost (index in posting order):", [posted.index(i) for i in lost][:50])
        for line in bad_exits[:5]:
            print(line)
        print(err.decode()[-2000:])
    print(f"work files in {work}" if not ok else "PASS")
    if ok:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print("FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
