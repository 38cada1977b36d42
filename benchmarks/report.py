"""`cadence report` for a plan of 100,000 people (issue 14: <= 10 s), as a
whole command: compile, plan every person, count the sends by day and hour,
draw the charts, write the page.

Run: ``python benchmarks/report.py [--people 100000]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plan import TESTED, write_people  # the same campaign and people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-report-bench-"))
    (folder / "bench.campaign").write_text(TESTED, encoding="utf-8")
    people = folder / "people.jsonl"
    write_people(people, args.people)
    command = [
        sys.executable, "-m", "cadence", "report", str(folder / "bench.campaign"),
        "--people", str(people), "--start", "2026-03-06T09:00", "-o", str(folder / "r.html"),
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    took = time.perf_counter() - began
    size = (folder / "r.html").stat().st_size
    print(f"report           {took:.2f} s for {args.people:,} people ({size / 1024:.0f} KB; "
          "goal <= 10 s)")  # fmt: skip


if __name__ == "__main__":
    main()
