"""A reader that stops reading: the socket stays alive, memory stays bounded, nothing is lost for good.

mkstream keeps reading the socket and answering pings whatever the reader does. Records wait in
memory up to --max-backlog; past it new frames are dropped (with a loud notice and a count) and,
once the reader catches up, the notes among them are fetched again by the backfill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import SAFETY

from misskey_cli.simulator import Simulator


def test_a_paused_reader_past_the_backlog_bound_loses_no_note_and_keeps_the_socket():
    # A server with a short keepalive drops a client whose pings wait behind megabytes of data.
    with Simulator(ping_interval=0.05, ping_timeout=1.0) as sim:
        read_end, write_end = os.pipe()
        proc = subprocess.Popen([sys.executable, "-m", "misskey_cli", "connect", "localTimeline",
                                 "--host", f"http://{sim.host_port}", "--max-backlog", "1M",
                                 # Ends when the last note is written (no idle wait); every drop fits the backfill.
                                 "-n", "1200", "--backfill-max", "2000", *SAFETY], stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        os.close(write_end)
        sim.wait_for_subscription("localTimeline")
        posted = [sim.post_note(text=f"{n} " + "あ" * 1500)["id"] for n in range(1200)]  # ~6 MB: past the bound
        pongs = sim.pongs
        sim.wait_for_pongs(pongs + 40)  # 2 s of pings answered, more than the server's patience, while blocked
        assert sim.sockets_opened == 1 and sim.open_sockets == 1
        with os.fdopen(read_end, "rb") as reader:  # the reader comes back
            out = reader.read()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    written = [json.loads(line)["body"]["body"]["id"] for line in out.splitlines()]
    assert written == posted, err.decode()
    text = err.decode()
    assert "stdout is not reading: 1 MB of records wait (--max-backlog); dropping new frames" in text
    assert "stdout caught up;" in text and "backfilled" in text
