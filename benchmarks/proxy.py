"""How much ``mkstream proxy`` costs a client: ``python benchmarks/proxy.py [--count N] [--rounds R]``.

The client is the raw-limit loop (``rawlimit.py``: a bare websocket-client receive loop) and the
server ``sender.py`` blasting ~1.5 KB note frames. Each round times the client receiving N notes
straight from the sender, then through ``mkstream proxy`` writing NDJSON records to /dev/null,
then through the proxy writing ``--format line`` records; figures are the medians over the
rounds, and the ratio is taken within each round. Start-up is excluded: the clock starts when the
client is started against a proxy that already listens, so the handshake is included (once).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def timed_client(url: str, count: int) -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, str(HERE / "rawlimit.py"), url, str(count)], check=True, stdout=subprocess.DEVNULL,
                   timeout=600)
    return time.perf_counter() - started


def through_proxy(sender_port: int, count: int, run: str, output: list[str]) -> float:
    proxy = subprocess.Popen([PYTHON, "-m", "misskey_cli", "proxy", "--host", f"http://127.0.0.1:{sender_port}",
                              "--listen", "127.0.0.1:0", "-o", "/dev/null", *output], stderr=subprocess.PIPE)
    try:
        assert proxy.stderr is not None
        found = re.search(rb"127\.0\.0\.1:(\d+),", proxy.stderr.readline())
        assert found, "the proxy did not start"
        return timed_client(f"ws://127.0.0.1:{int(found.group(1))}/bench/{run}/blast/{count}", count)
    finally:
        proxy.send_signal(signal.SIGINT)
        try:
            proxy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.communicate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sender = subprocess.Popen([PYTHON, str(HERE / "sender.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert sender.stdout is not None
        port = json.loads(sender.stdout.readline())["port"]
        rows: dict[str, list[float]] = {"direct": [], "proxy --ndjson": [], "proxy --line": [],
                                        "ratio --ndjson": [], "ratio --line": []}
        for n in range(args.rounds):
            direct = timed_client(f"ws://127.0.0.1:{port}/bench/d{n}/blast/{args.count}", args.count)
            ndjson = through_proxy(port, args.count, f"p{n}", ["--ndjson"])
            line = through_proxy(port, args.count, f"l{n}", ["--line", "--width", "100"])
            rows["direct"].append(args.count / direct)
            rows["proxy --ndjson"].append(args.count / ndjson)
            rows["proxy --line"].append(args.count / line)
            rows["ratio --ndjson"].append(direct / ndjson)
            rows["ratio --line"].append(direct / line)
        for name, values in rows.items():
            unit = "" if name.startswith("ratio") else " rec/s"
            shown = ", ".join(f"{v:,.2f}" if not unit else f"{v:,.0f}" for v in values)
            median = statistics.median(values)
            print(f"{name:16} {median:,.2f}{unit} (rounds: {shown})" if not unit
                  else f"{name:16} {median:,.0f}{unit} (rounds: {shown})")
    finally:
        sender.stdin.close()  # type: ignore[union-attr]
        sender.wait(timeout=30)


if __name__ == "__main__":
    main()
