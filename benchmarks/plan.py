"""Plan speed: 100,000 people x a 6-step campaign (recipient zones, skip
weekends) written as JSON Lines to a file, beside the floor: the same number
of rows written by orjson.dumps alone.

Goals (issue 4): >= 150k contact-steps/s without rendering (within 15x of the
floor), >= 20k/s with --render, peak RSS under 200 MB.
Run: ``python benchmarks/plan.py [--people 100000] [--render-people 20000]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

CAMPAIGN = """campaign "Plan benchmark" {
  timezone recipient else "America/New_York"
  skip weekends
  requires first_name, company

  day 1 {
    email intro {
      send choose
      subject "Quick question, {{ first_name }}"
      body \"\"\"
        Hi {{ first_name }},

        How does {{ company }} ship releases today?
        \"\"\"
    }
  }

  day 3 {
    email bump {
      send with previous
      follow up
      body "Bumping this up, {{ first_name }}."
    }
    call ring { notes "Ask {{ first_name }} about {{ company }}" }
  }

  day 5 {
    email idea {
      send at 09:30
      subject "An idea for {{ company }}"
      body "Hi {{ first_name }}, one idea for {{ company }}."
    }
    inmail connect { message "Hi {{ first_name }}" }
  }

  day 8 {
    email breakup {
      send at 14:00
      subject "Closing the loop"
      body "Thanks, {{ first_name }}."
    }
  }
}
"""
ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Stockholm",
    "Asia/Tokyo",
    "Australia/Sydney",
    "",
    "Not/AZone",
]


def write_people(path: Path, count: int) -> None:
    rng = random.Random(3)
    with path.open("wb") as out:
        for n in range(count):
            person = {
                "email": f"person{n}@example.com",
                "first_name": f"P{n}",
                "company": f"Company {n % 997}",
                "timezone": rng.choice(ZONES),
            }
            out.write(orjson.dumps(person) + b"\n")


PROBE = """import sys
from cadence.cli import main
try:
    main()
except SystemExit:
    status = open('/proc/self/status').read()
    print(next(l for l in status.splitlines() if l.startswith('VmHWM')).split()[1], file=sys.stderr)
    raise
"""


def run_plan(folder: Path, people: Path, render: bool) -> tuple[float, int, int]:
    """Time `cadence plan` in a child process; its rows and peak RSS (KB, VmHWM:
    ru_maxrss would carry this process's own peak across exec)."""
    output = folder / ("rendered.jsonl" if render else "plan.jsonl")
    command = [
        sys.executable,
        "-c",
        PROBE,
        "plan",
        str(folder / "bench.campaign"),
        "--people",
        str(people),
        "--start",
        "2026-03-06T09:00",
        "--format",
        "jsonl",
        "-o",
        str(output),
    ] + (["--render"] if render else [])
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak = int(done.stderr.strip().splitlines()[-1])
    rows = sum(1 for _ in output.open("rb"))
    return elapsed, rows, peak


def floor(rows: int, folder: Path) -> float:
    """orjson alone writing the same number of rows of the same shape."""
    row = {
        "person": "person1@example.com",
        "step": "intro",
        "day": 1,
        "kind": "email",
        "due": dt.datetime(2026, 3, 6, 14, tzinfo=dt.UTC),
        "local": dt.datetime(2026, 3, 6, 14, tzinfo=dt.UTC),
        "due_date": dt.date(2026, 3, 6),
        "thread": None,
        "waits_for": None,
        "note": None,
    }
    option = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
    start = time.perf_counter()
    with (folder / "floor.jsonl").open("wb") as out:
        for _ in range(rows):
            out.write(orjson.dumps(row, option=option))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--render-people", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-plan-bench-"))
    os.environ.setdefault("CADENCE_CACHE_DIR", str(folder / "cache"))
    (folder / "bench.campaign").write_text(CAMPAIGN, encoding="utf-8")
    people = folder / "people.jsonl"
    write_people(people, args.people)

    elapsed, rows, peak = run_plan(folder, people, render=False)
    floor_time = floor(rows, folder)
    print(
        f"plan             {rows / elapsed:10,.0f} contact-steps/s ({rows:,} rows in "
        f"{elapsed:.2f} s, whole command; goal >= 150,000)"
    )
    print(
        f"orjson floor     {rows / floor_time:10,.0f} rows/s (plan is {elapsed / floor_time:.1f}x "
        "the floor; goal within 15x)"
    )
    print(f"peak RSS         {peak / 1024:10.0f} MB (goal < 200)")

    small = folder / "people-small.jsonl"
    write_people(small, args.render_people)
    elapsed, rows, _ = run_plan(folder, small, render=True)
    print(
        f"plan --render    {rows / elapsed:10,.0f} contact-steps/s ({rows:,} rows; goal >= 20,000)"
    )


if __name__ == "__main__":
    main()
