"""`cadence plan`: every output format, exit codes, and bad input as one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence.cli import cli
from cadence.compiler import compile_file
from cadence.compiler.ir import dump_ir
from tests.conftest import EXAMPLES

EXAMPLE = str(EXAMPLES / "q1-outbound.campaign")
START = "2026-01-02T10:00"  # read in America/New_York, the campaign's zone
KEYS = ["person", "step", "day", "kind", "due", "local", "due_date", "thread", "waits_for", "note",
        "send_date"]  # fmt: skip


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,first_name,company\nada@example.com,Ada,Acme\nbo@example.com,Bo,Bee\n",
        encoding="utf-8",
    )
    return path


def test_jsonl_rows_have_exactly_the_documented_keys(people: Path) -> None:
    result = run("plan", EXAMPLE, "--people", str(people), "--start", START, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 14
    assert all(list(row) == KEYS for row in rows)
    assert rows[0] == {
        "person": "ada@example.com",
        "step": "intro",
        "day": 1,
        "kind": "email",
        "due": "2026-01-02T15:00:00Z",
        "local": "2026-01-02T10:00:00-05:00",
        "due_date": "2026-01-02",
        "thread": None,
        "waits_for": None,
        "note": None,
        "send_date": "2026-01-02",
    }
    assert [r["person"] for r in rows] == ["ada@example.com"] * 7 + ["bo@example.com"] * 7
    assert "planned 14 actions for 2 people" in result.stderr


def test_render_adds_subject_and_body(people: Path) -> None:
    result = run(
        "plan",
        EXAMPLE,
        "--people",
        str(people),
        "--start",
        START,
        "--format",
        "jsonl",
        "--render",
        "--sender-name",
        "Sam",
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert list(rows[0]) == [*KEYS, "subject", "body"]
    assert rows[1]["subject"] == "Re: Quick question, Ada"


def test_csv_has_a_header_and_the_same_rows(people: Path) -> None:
    result = run("plan", EXAMPLE, "--people", str(people), "--start", START, "--format", "csv")
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0] == KEYS
    assert table[1][:5] == ["ada@example.com", "intro", "1", "email", "2026-01-02T15:00:00Z"]
    assert len(table) == 15


def test_table_is_a_timeline_per_person(people: Path) -> None:
    result = run("plan", EXAMPLE, "--people", str(people), "--start", START, "--format", "table")
    assert result.stdout.startswith("ada@example.com\n  day 1   Fri 2026-01-02 10:00 EST")
    assert "(reply to intro)" in result.stdout


def test_ics_is_an_icalendar_file(people: Path) -> None:
    result = run("plan", EXAMPLE, "--people", str(people), "--start", START, "--format", "ics")
    text = result.stdout_bytes.decode()
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert text.endswith("END:VCALENDAR\r\n")
    assert text.count("BEGIN:VEVENT") == 14
    assert "DTSTART:20260102T150000Z\r\n" in text
    assert "DTSTART;VALUE=DATE:20260106\r\n" in text  # the call task, all day
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))


def test_output_file_is_written_atomically(people: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.jsonl"
    result = run("plan", EXAMPLE, "--people", str(people), "--start", START, "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert len(out.read_text().splitlines()) == 14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv", "plan.jsonl"]


def test_compiled_ir_and_jsonl_people_from_stdin(tmp_path: Path) -> None:
    ir = compile_file(EXAMPLES / "q1-outbound.campaign").ir
    assert ir is not None
    compiled = tmp_path / "q1.json"
    compiled.write_text(dump_ir(ir))
    stdin = '{"email": "ada@example.com", "first_name": "Ada", "company": "Acme"}\n'
    result = run(
        "plan",
        str(compiled),
        "--people",
        "-",
        "--start",
        "2026-01-02T15:00:00Z",
        "--format",
        "jsonl",
        stdin=stdin,
    )
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 7


def test_launch_override(people: Path) -> None:
    result = run(
        "plan",
        EXAMPLE,
        "--people",
        str(people),
        "--start",
        START,
        "--format",
        "jsonl",
        "--at",
        "breakup=11:45",
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    breakup = next(r for r in rows if r["step"] == "breakup")
    assert breakup["local"] == "2026-01-08T11:45:00-05:00"


def test_skipped_people_are_listed_with_their_line_and_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,first_name,company\nada@example.com,Ada,Acme\nnope,X,Y\nbo@example.com,Bo,\n",
        encoding="utf-8",
    )
    result = run("plan", EXAMPLE, "--people", str(path), "--start", START, "--format", "jsonl")
    assert result.exit_code == 3
    assert f"cadence: {path}:3: skipped: `nope` is not an email address" in result.stderr
    assert f"cadence: {path}:4: skipped: missing field `company`" in result.stderr
    assert len(result.stdout.splitlines()) == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "next tuesday"], "is not an ISO 8601 time"),
        (["--start", START, "--at", "nope=10:00"], "no step `nope`"),
        (["--start", START, "--at", "breakup=25:00"], "is not a time of day"),
        (["--start", START, "--at", "breakup"], "write STEP=HH:MM"),
        (["--start", START, "--at", "bump=10:00"], "is not sent at a fixed time"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(people: Path, args: list[str], message: str) -> None:
    result = run("plan", EXAMPLE, "--people", str(people), *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stderr.startswith("cadence: error: ")


def test_unreadable_people_file_exits_2() -> None:
    result = run("plan", EXAMPLE, "--people", "missing.csv", "--start", START)
    assert result.exit_code == 2
    assert result.stderr == "cadence: error: missing.csv: No such file or directory\n"


def test_ir_of_an_unknown_version_exits_2(tmp_path: Path, people: Path) -> None:
    future = tmp_path / "future.json"
    future.write_text('{"schema_version": 9}')
    result = run("plan", str(future), "--people", str(people), "--start", START)
    assert result.exit_code == 2
    assert "schema_version 9 is not supported" in result.stderr
    assert result.stderr.count("\n") == 1


def test_campaign_with_errors_exits_1(people: Path) -> None:
    broken = Path(__file__).parent / "cases" / "compile" / "duplicate-step.campaign"
    result = run("plan", str(broken), "--people", str(people), "--start", START)
    assert result.exit_code == 1
    assert "C008" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_memory_stays_flat_for_200k_people(tmp_path: Path) -> None:
    """200,000 people through `cadence plan` to a file: peak RSS well under 200 MB."""
    people = tmp_path / "people.jsonl"
    with people.open("w") as out:
        for n in range(200_000):
            out.write(f'{{"email": "p{n}@example.com", "first_name": "P", "company": "C"}}\n')
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would
    # report the test runner's own peak.
    probe = (
        "import sys\n"
        "from cadence.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n"
        "    status = open('/proc/self/status').read()\n"
        "    peak = next(l for l in status.splitlines() if l.startswith('VmHWM'))\n"
        "    print(peak.split()[1], file=sys.stderr)\n    raise\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "plan",
            EXAMPLE,
            "--people",
            str(people),
            "--start",
            START,
            "--format",
            "jsonl",
            "-o",
            str(tmp_path / "plan.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 120, f"peak RSS {peak_mb:.0f} MB"
    assert sum(1 for _ in (tmp_path / "plan.jsonl").open()) == 1_400_000


@pytest.mark.parametrize(("format", "safe"), [("jsonl", True), ("csv", True), ("csv", False)])
def test_rows_built_per_zone_match_rows_written_action_by_action(
    format: str, safe: bool, tmp_path: Path
) -> None:
    # Without rendering, plan writes each zone's rows once with a gap for the
    # person; the same plan written action by action must be the same bytes:
    # zones, unknown zones (a note naming the person's text), weekend moves,
    # and addresses a spreadsheet would read as formulas.
    import datetime as dt

    from cadence.runtime.plan_command import Options, run_plan
    from cadence.runtime.planner import plan
    from cadence.runtime.writers import write_plan

    zones = ["America/New_York", "Asia/Kolkata", "", "Not/AZone", 'bad, "zone"', "UTC"]
    people = tmp_path / "people.jsonl"
    with people.open("w") as out:
        for n in range(60):
            lead = ["=", "+", "-", ""][n % 4]
            person = {"email": f"{lead}p{n}@Example.com", "timezone": zones[n % 6]}
            out.write(json.dumps(person | {"first_name": "Ann", "company": "Acme, Inc"}) + "\n")
    ir = compile_file(EXAMPLES / "global-webinar.campaign").ir
    assert ir is not None
    start = dt.datetime(2026, 3, 7, 9, 0, tzinfo=dt.UTC)  # a Saturday
    fast = tmp_path / f"fast.{format}"
    report = run_plan(ir, str(people), Options(start, {}, {}), format, False, str(fast),
                      csv_safe=safe)  # fmt: skip
    assert report.people == 60 and not report.problems
    rows = [json.loads(line) for line in people.open()]
    slow = io.BytesIO()
    write_plan(plan(ir, rows, start), slow, format, csv_safe=safe)  # type: ignore[arg-type]
    assert fast.read_bytes() == slow.getvalue()
    assert report.actions == len(slow.getvalue().splitlines()) - (format == "csv")


def test_unknown_zones_are_said_once_per_value(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    rows = [f"p{n}@example.com,P{n},Acme,europe/london" for n in range(4)]
    rows += ["q@example.com,Q,Acme,", "r@example.com,R,Acme,Asia/Tokyo"]
    people.write_text("email,first_name,company,timezone\n" + "\n".join(rows) + "\n")
    source = tmp_path / "office.campaign"
    source.write_text((EXAMPLES / "office-hours.campaign").read_text())
    result = run("plan", str(source), "--people", str(people), "--start", "2026-01-05T09:00",
                 "--format", "jsonl")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f'cadence: {people}: warning: 4 people: timezone "europe/london" is not a known zone: '
        'using Europe/Stockholm (did you mean "Europe/London"?)',
        f"cadence: {people}: warning: 1 person: no timezone given: using Europe/Stockholm",
    ]
    notes = {json.loads(r)["person"]: json.loads(r)["note"] for r in result.stdout.splitlines()}
    assert "not a known zone" in notes["p0@example.com"] and notes["r@example.com"] is None


def test_rows_say_the_date_a_send_goes_out(tmp_path: Path) -> None:
    """`intro` is `send choose` in an 08:00-17:30 window: launched at 18:00, it
    goes the next morning — its row's `send_date` — though its day is the 5th."""
    people = tmp_path / "people.csv"
    people.write_text("email,first_name,company,timezone\nada@example.com,Ada,Acme,Europe/Oslo\n")
    result = run("plan", str(EXAMPLES / "office-hours.campaign"), "--people", str(people),
                 "--start", "2026-01-05T18:00", "--format", "jsonl")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    intro = next(json.loads(line) for line in result.stdout.split("\n") if '"intro"' in line)
    assert (intro["due_date"], intro["send_date"]) == ("2026-01-05", "2026-01-06")
    ring = next(json.loads(line) for line in result.stdout.split("\n") if '"ring"' in line)
    assert ring["send_date"] is None  # a task: its day is `due_date`
