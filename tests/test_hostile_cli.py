"""Every command over a corpus of hostile arguments and files: a clear message
and an exit status, never a traceback, a hang or the machine's memory. The
cases run in one child process under a 1.5 GB address-space limit and a time
limit per case (tests/hostile_runner.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.engine_db import database_url

START = "2026-01-05T09:00"
HOSTILE_TEMPLATES = [
    "{{ 'x'|center(1000000000) }}",
    "{{ '%01000000000d' % 1 }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ lipsum(10**6) }}",
    "{{ " + "(" * 70 + "first_name" + ")" * 70 + " }}",
    "{% if first_name %}" * 100 + "x" + "{% endif %}" * 100,
]


def write_files(folder: Path) -> dict[str, str]:
    """The hostile files, by name; returns their paths."""
    files: dict[str, bytes] = {
        "binary.campaign": bytes(range(256)) * 4,
        "nul.campaign": b'campaign "x" {\x00}',
        "huge.campaign": b"# " + b"x" * (6 * 1024 * 1024),
        "braces.campaign": b'campaign "x" {' + b"day 1 {" * 5000,
        "passwd.campaign": _campaign_reading("/etc/passwd"),
        "environ.campaign": _campaign_reading("../../../../proc/self/environ"),
        "stdin.campaign": _campaign_reading("/dev/stdin"),
        "not-json.json": b"{not json",
        "deep.json": b"[" * 100000 + b"]" * 100000,
        "version.json": b'{"schema_version": 99}',
        "people-latin1.csv": "email,first_name,company\nzoé@example.com,Zoé,Ça\n".encode("latin-1"),
        "people-no-email.csv": b"name,company\nAda,X\n",
        "people-semicolons.csv": b"email;first_name;company\nada@example.com;Ada;X\n",
        "people-nested.jsonl": (
            b'{"email": "a@example.com", "first_name": {"x": [1]}, "company": 1}\n'
            + b"[" * 50000
            + b"\n"
        ),
        "people-hostile.csv": (
            b'email,first_name,company\n"comma,victim@example.com",A,X\n'
            b'"""x""<evil@x.io>",B,X\n=HYPERLINK(1)@x.io,C,X\n'
            b'cr@example.com,"Bo\r\nBcc: x@evil.io",X\n' + b'open@example.com,"never closed\n'
        ),
        "people-huge-field.csv": b"email,first_name,company\na@example.com,"
        + b"x" * (17 * 1024 * 1024)
        + b",X\n",
        "empty.csv": b"",
        "config-types.toml": b'sender = "bob"\ndb = 5\n',
        "config-binary.toml": b"\xff\xfe\x00",
        "body.txt": b"\xff\xfe not text",
        "other.db": b"",
    }
    for index, template in enumerate(HOSTILE_TEMPLATES):
        files[f"template-{index}.campaign"] = _campaign_with_body(template)
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = str(folder / name)
    import sqlite3

    with sqlite3.connect(folder / "other.db") as connection:
        connection.execute("CREATE TABLE actions (x)")
        connection.execute("CREATE TABLE enrollments (y)")
    shutil.copytree(EXAMPLES, folder / "examples")
    (folder / "fifo").mkdir()
    os.mkfifo(folder / "fifo" / "pipe.j2")
    (folder / "fifo" / "c.campaign").write_bytes(_campaign_reading("pipe.j2"))
    paths["fifo.campaign"] = str(folder / "fifo" / "c.campaign")
    return paths


def _campaign_reading(path: str) -> bytes:
    return _campaign_with_body("x").replace(b'body "x"', f'body template "{path}"'.encode())


def _campaign_with_body(body: str) -> bytes:
    return (
        'campaign "hostile" {\n  requires first_name, company\n  day 1 {\n    email a {\n'
        f'      send choose\n      subject "Hi"\n      body {json.dumps(body)}\n    }}\n  }}\n}}\n'
    ).encode()


def cases(paths: dict[str, str], db: str, folder: Path) -> list[dict[str, Any]]:
    example = str(folder / "examples" / "q1-outbound.campaign")
    people = str(folder / "examples" / "people.csv")
    found: list[dict[str, Any]] = []

    def case(name: str, *args: str, stdin: str | None = None) -> None:
        found.append({"name": name, "args": list(args), "stdin": stdin})

    # Campaign files and IR, through every command that reads them.
    for name in [n for n in paths if n.endswith((".campaign", ".json"))]:
        for command in ("check", "compile", "graph", "parse"):
            case(f"{command} {name}", command, paths[name])
        case(f"fmt --check {name}", "fmt", "--check", paths[name])
        case(f"plan {name}", "plan", paths[name], "--people", people, "--start", START,
             "--render", "--format", "jsonl")  # fmt: skip
        case(f"enroll {name}", "enroll", paths[name], "--people", people, "--start", START,
             "--now", "2026-01-01T00:00Z", "--db", db)  # fmt: skip
    case("check /dev/zero", "check", "/dev/zero")
    case("check a folder", "check", str(folder))
    case("fmt stdin binary", "fmt", "-", stdin="\x00\x01 campaign {")
    # People files.
    for name in [n for n in paths if n.startswith("people-") or n == "empty.csv"]:
        case(f"plan {name}", "plan", example, "--people", paths[name], "--start", START,
             "--format", "csv")  # fmt: skip
        case(f"enroll {name}", "enroll", example, "--people", paths[name], "--start", START,
             "--now", "2026-01-01T00:00Z", "--db", db)  # fmt: skip
    case("people is a folder", "plan", example, "--people", str(folder), "--start", START)
    # One endless line: refused at 1 MiB, not read until the memory runs out.
    case("plan /dev/zero", "plan", example, "--people", "/dev/zero", "--start", START)
    case("suppress import /dev/zero", "suppress", "import", "/dev/zero", "--db", db)
    case("migrate --people /dev/zero", "migrate", "x", "--to-version", "1", "--people",
         "/dev/zero", "--db", db)  # fmt: skip
    # Arguments.
    for start in ["0001-01-01T00:00", "99999-01-01", "9999-12-31T23:59:59-12:00", "now+1", "\x00",
                  "2026-02-30T09:00", "2026-01-05T25:00", "1e309"]:  # fmt: skip
        case(f"plan --start {start!r}", "plan", example, "--people", people, "--start", start)
        case(f"enroll --start {start!r}", "enroll", example, "--people", people,
             "--now", "2026-01-01T00:00Z", "--start", start, "--db", db)  # fmt: skip
    for override in ["breakup=25:00", "breakup", "=09:00", "nope=09:00", "breakup=9:99999999999"]:
        case(f"plan --at {override}", "plan", example, "--people", people, "--start", START,
             "--at", override)  # fmt: skip
    case("plan -o a folder", "plan", example, "--people", people, "--start", START, "-o",
         str(folder))  # fmt: skip
    case("plan -o /dev/full", "plan", example, "--people", people, "--start", START, "-o",
         "/dev/full")  # fmt: skip
    case("compile -o missing dir", "compile", example, "-o", str(folder / "no" / "x.json"))
    case("enroll the example", "enroll", example, "--people", people, "--now",
         "2026-01-01T00:00Z", "--start", START, "--db", db)  # fmt: skip
    for value in ["1/nan", "1/inf", "1/1e-320", "0/1", "-1/5", "1/-1", "x", "99999999999999/1"]:
        case(f"run --throttle {value}", "run", "--db", db, "--once", "--throttle", value,
             "--outbox", str(folder / "out"))  # fmt: skip
    for now in ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "yesterday", "2026"]:
        case(f"run --now {now}", "run", "--db", db, "--now", now, "--outbox", str(folder / "out"))
        case(f"bounce --at {now}", "bounce", "ada@example.com", "--db", db, "--at", now)
    for cap in ["0", "-5", "x", "99999999999"]:
        case(f"run --daily-cap {cap}", "run", "--db", db, "--once", "--daily-cap", cap,
             "--outbox", str(folder / "out"))  # fmt: skip
    for smtp in ["host:99999", "host:0", "host", ":25", "[::1]:x", "127.0.0.1:1"]:
        case(f"run --smtp {smtp}", "run", "--db", db, "--once", "--smtp", smtp)
    for name in ("config-types.toml", "config-binary.toml", "people-hostile.csv"):
        case(f"run --config {name}", "run", "--db", db, "--once", "--config", paths[name])
    case("run --config a folder", "run", "--db", db, "--once", "--config", str(folder))
    case("run --sender-name with a newline", "run", "--db", db, "--once", "--outbox",
         str(folder / "out"), "--sender-name", "Sam\nBcc: x@evil.io")  # fmt: skip
    case("run --sender-email bad", "run", "--db", db, "--once", "--outbox",
         str(folder / "out"), "--sender-email", "a@b@c")  # fmt: skip
    case("run --outbox a file", "run", "--db", db, "--once", "--outbox", people)
    for after in ["9223372036854775808", "-1", "x"]:
        case(f"feed --after {after}", "feed", "--db", db, "--after", after)
    for task_id in ["0", "-1", "99999999999999999999", "x", "123456"]:
        for action in ("send", "complete", "skip"):
            case(f"task {action} {task_id}", "task", action, task_id, "--db", db)
    for send_id in ["0", "99999999999999999999", "123456"]:
        case(f"settle {send_id}", "settle", send_id, "--sent", "--db", db)
    case("settle without a verdict", "settle", "1", "--db", db)
    case("retry with a bad --since", "retry", "--db", db, "--since", "tomorrow")
    case("retry an unknown campaign", "retry", "--db", db, "--campaign", "nope")
    case("task send --body-file binary", "task", "send", "1", "--db", db, "--body-file",
         paths["body.txt"])  # fmt: skip
    case("task send --body-file folder", "task", "send", "1", "--db", db, "--body-file",
         str(folder))  # fmt: skip
    case("tasks --due-before bad", "tasks", "--db", db, "--due-before", "2026-13-45")
    case("tasks --person huge", "tasks", "--db", db, "--person", "x" * 100000)
    case("tasks --person NUL", "tasks", "--db", db, "--person", "a\x00b")
    case("reply NUL", "reply", "a\x00b@example.com", "--db", db)
    case("retry --person NUL", "retry", "--db", db, "--person", "\x00")
    for event in ("reply", "bounce", "remove"):
        case(f"{event} unknown", event, "nobody@example.com", "--db", db)
        case(f"{event} unknown campaign", event, "ada@example.com", "--db", db, "--campaign",
             "\x00")  # fmt: skip
    case("unsubscribe a non-address", "unsubscribe", "not an address\r\n", "--db", db)
    case("suppress add hostile", "suppress", "add", "a@b", '"x"<evil@x.io>', "--db", db)
    for name in ("people-latin1.csv", "binary.campaign", "people-nested.jsonl", "empty.csv"):
        case(f"suppress import {name}", "suppress", "import", paths[name], "--db", db)
    case("suppress import a folder", "suppress", "import", str(folder), "--db", db)
    case("suppress list --reason odd", "suppress", "list", "--reason", "\x00", "--db", db)
    for name in ("binary.campaign", "huge.campaign", "people-hostile.csv", "empty.csv"):
        case(f"inbox {name}", "inbox", paths[name], "--db", db)
    case("inbox stdin garbage", "inbox", "-", "--db", db, stdin="\x00\xff From: \n\n")
    case("inbox a folder as a file", "inbox", str(folder), "--db", db)
    case("inbox a missing maildir", "inbox", "--maildir", str(folder / "nope"), "--db", db)
    case("inbox --explain NUL", "inbox", "--explain", "\x00", "--db", db)
    case("pause with a bad date", "pause", "ada@example.com", "--until", "2026-02-30", "--db", db)
    case("pause nobody", "pause", "nobody@example.com", "--until", "2026-12-09", "--db", db)
    case("resume nobody", "resume", "nobody@example.com", "--db", db)
    case("end unknown", "end", "no such campaign", "--db", db)
    case("end a short prefix", "end", "a", "--db", db)
    # Databases that are not ours, or not there.
    for bad_db in [paths["other.db"], paths["binary.campaign"], str(folder), "/dev/null",
                   "nonsense://x", "mysql://u@localhost/x", "postgresql://nobody@127.0.0.1:1/x",
                   str(folder / "missing" / "x.db")]:  # fmt: skip
        case(f"tasks --db {bad_db}", "tasks", "--db", bad_db)
        case(f"enroll --db {bad_db}", "enroll", example, "--people", people, "--now",
             "2026-01-01T00:00Z", "--start", START, "--db", bad_db)  # fmt: skip
    return found


def run_cases(folder: Path, db: str) -> list[dict[str, Any]]:
    paths = write_files(folder)
    corpus = cases(paths, db, folder)
    case_file = folder / "cases.json"
    case_file.write_text(json.dumps(corpus), encoding="utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "tests.hostile_runner", str(case_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
    )
    outcomes = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    assert len(outcomes) == len(corpus), finished.stderr[-3000:]
    return outcomes


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.mark.slow
def test_no_command_gives_a_traceback_on_hostile_input(db_url: str, tmp_path: Path) -> None:
    outcomes = run_cases(tmp_path, db_url)
    crashes = [o["name"] for o in outcomes if o.get("traceback")]
    hangs = [o["name"] for o in outcomes if o.get("timeout")]
    assert not crashes, crashes
    assert not hangs, hangs
    for outcome in outcomes:
        assert outcome["exit"] in (0, 1, 2, 3), outcome
        if outcome["exit"] == 2:  # a refusal is one clear line (click's usage errors excepted)
            assert "Traceback" not in outcome["stderr"], outcome
