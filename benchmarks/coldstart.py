"""Cold start: `cadence check` on a ten-line campaign, as a new process each
time, beside the floor of importing the libraries checking needs
(``python -c "import lark, networkx, pydantic, jinja2"``). Runs alternate so
both meet the same machine. Goal (issue 12): at most 1.3x the floor.

Run: ``python benchmarks/coldstart.py [--runs 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = """campaign "Small" {
  day 1 {
    email intro {
      send choose
      subject "Hello"
      body "Hi there"
    }
  }
}
"""


def seconds(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-coldstart-"))
    campaign = folder / "small.campaign"
    campaign.write_text(SMALL)
    env = {**os.environ, "CADENCE_CACHE_DIR": str(folder / "cache")}
    # An installed cadence has its bytecode compiled (pip does it, as it did for
    # the floor's libraries); with writing it turned off, every run would
    # compile cadence's sources again and measure that instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = Path(sys.executable).with_name("cadence")
    check = [str(script), "check", str(campaign)]
    floor = [sys.executable, "-c", "import lark, networkx, pydantic, jinja2"]
    seconds(check, env)  # the parser's tables and the bytecode are made and kept once
    checks, floors = [], []
    for _ in range(args.runs):
        floors.append(seconds(floor, env))
        checks.append(seconds(check, env))
    took, base = statistics.median(checks), statistics.median(floors)
    print(f"cadence check    {took * 1000:6.0f} ms median ({args.runs} runs)")
    print(
        f"floor            {base * 1000:6.0f} ms (import lark, networkx, pydantic, jinja2); "
        f"check is {took / base:.2f}x the floor; goal <= 1.3x"
    )


if __name__ == "__main__":
    main()
