"""The long mode of the jqfast differential test: ``python benchmarks/jqdiff.py [EXAMPLES]``.

``tests/test_jq_differential.py`` draws programs from jqfast's grammar and JSON values that tell
jq and Python apart, and checks that whenever jqfast answers it answers what libjq answers. The
normal suite runs a few hundred examples on a fixed seed; this runs as many as asked (default
20,000, some minutes) for CI or before a release, and says how many programs and frames jqfast
answered for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "20000"
    env = dict(os.environ, MKSTREAM_JQ_DIFF_EXAMPLES=examples)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_jq_differential.py")], cwd=ROOT, env=env, check=False)
    print(f"{examples} examples in {time.monotonic() - start:.0f} s: {'PASS' if done.returncode == 0 else 'FAIL'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
