"""People files are untrusted: addresses are validated and normalised, nothing
that reaches a header may break a line, and exported plans cannot run in a
spreadsheet."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.addresses import AddressChecker, AddressError, sender_address
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine, EngineError
from cadence.runtime.mailboxes import Sender
from cadence.runtime.store import Store

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Headers" {
  requires first_name, notes
  day 1 {
    email a { send at 09:00 subject "Hi {{ first_name }}" body "{{ notes }}" }
  }
}
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def full_check(text: str) -> str | None:
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return str(result.ascii_email or result.normalized)


LOCAL = st.text(alphabet="abcXYZ09.+-_=!'\"(),<> @é", min_size=0, max_size=12)
DOMAIN = st.sampled_from(
    ["example.com", "Example.COM", "x.io", "exämple.com", "a..b.com", "localhost", "x.test",
     "-bad.com", "sub.example.co.uk", "1.2.3.4", "[127.0.0.1]", "EXAMPLE.com."]
)  # fmt: skip


@given(st.lists(st.tuples(LOCAL, DOMAIN), min_size=1, max_size=30))
def test_the_fast_path_agrees_with_email_validator(pairs: list[tuple[str, str]]) -> None:
    checker = AddressChecker()  # one checker: later addresses take the remembered-domain path
    for local, domain in pairs:
        text = f"{local}@{domain}"
        expected = full_check(text)
        try:
            found: str | None = checker.normalise(text)
        except AddressError:
            found = None
        assert found == expected, text


@pytest.mark.parametrize("length", [64, 65, 240, 250])
def test_long_addresses_agree_with_email_validator(length: int) -> None:
    checker = AddressChecker()
    checker.normalise("ada@example.com")  # example.com is now on the fast path
    text = "a" * length + "@example.com"
    try:
        found: str | None = checker.normalise(text)
    except AddressError:
        found = None
    assert found == full_check(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("comma,victim@example.com", "invalid characters"),
        ('"x"<evil@x.io>', "display name and angle brackets"),
        ('=HYPERLINK("http://x")@x.io', "invalid characters"),
        ("ada@example.com\r\nBcc: x@evil.io", "invalid characters"),
        ("ada@localhost", "should have a period"),
    ],
)
def test_hostile_addresses_are_refused_rows(address: str, reason: str, tmp_path: Path) -> None:
    people = tmp_path / "people.jsonl"
    people.write_text(
        '{"email": "ok@example.com", "first_name": "Ok", "notes": "n"}\n'
        + f'{{"email": {_json(address)}, "first_name": "X", "notes": "n"}}\n',
        encoding="utf-8",
    )
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE)
    planned = run("plan", str(campaign), "--people", str(people), "--start", "2026-01-05T08:00Z")
    assert planned.exit_code == 3
    assert "people.jsonl:2: skipped:" in planned.stderr and reason in planned.stderr
    assert "Traceback" not in planned.stderr
    db = str(tmp_path / "c.db")
    enrolled = run(
        "enroll", str(campaign), "--people", str(people), "--start", "2026-01-05T08:00Z",
        "--now", "2026-01-05T08:00Z", "--db", db,
    )  # fmt: skip
    assert enrolled.exit_code == 3 and reason in enrolled.stderr
    assert "enrolled 1 person" in enrolled.stderr


def _json(text: str) -> str:
    import json

    return json.dumps(text)


@pytest.mark.parametrize("breaker", ["\r", "\n", "\u2028", "\x85", "\x00", "\x1b"])
def test_a_field_a_subject_uses_may_not_break_a_header(breaker: str) -> None:
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    engine = Engine(Store.open("sqlite://", now=T0))
    rows = [
        {"email": "ada@example.com", "first_name": f"Ada{breaker}Bcc: x@evil.io", "notes": "n"},
        {"email": "bo@example.com", "first_name": "Bo", "notes": f"line one{breaker}line two"},
    ]
    report = engine.enroll(ir, rows, T0, now=T0)
    assert report.enrolled == 1  # a line break in the body's field is fine
    assert [p.line for p in report.problems] == [1]
    assert "`first_name` holds a line break or control character" in report.problems[0].message


def test_addresses_are_stored_normalised(tmp_path: Path) -> None:
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    engine = Engine(Store.open(str(tmp_path / "c.db"), now=T0))
    engine.enroll(ir, [{"email": "Ada@Example.COM", "first_name": "Ada", "notes": "n"}], T0, now=T0)
    assert [send.person for send in engine.due(T0 + dt.timedelta(hours=2))] == ["Ada@example.com"]


@pytest.mark.parametrize(
    ("name", "address"),
    [("Sam\nBcc: x@evil.io", "sam@example.com"), ("Sam", "sam@example.com\r\nBcc: x@evil.io"),
     ("Sam", "not an address"), ("Sam", "sam@"), ("Sam\x00", "sam@example.com")],
)  # fmt: skip
def test_a_bad_sender_is_refused_before_anything_is_claimed(
    name: str, address: str, tmp_path: Path
) -> None:
    with pytest.raises(AddressError):
        sender_address(name, address)
    db = str(tmp_path / "c.db")
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE)
    people = tmp_path / "p.csv"
    people.write_text("email,first_name,notes\nada@example.com,Ada,n\n")
    assert run("enroll", str(campaign), "--people", str(people), "--start", "2026-01-05T08:00Z",
               "--now", "2026-01-05T08:00Z", "--db", db).exit_code == 0  # fmt: skip
    result = run(
        "run", "--db", db, "--outbox", str(tmp_path / "out"), "--now", "2026-01-05T10:00:00Z",
        "--sender-name", name, "--sender-email", address,
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "sender" in result.stderr
    engine = Engine(Store.open(db, now=T0))
    assert len(engine.due(T0 + dt.timedelta(hours=2))) == 1  # still pending, not claimed


@pytest.mark.parametrize("name", ["Doe, Jane", "Zoë Åström", 'Sam "the man" O\'Neil', ""])
def test_display_names_are_encoded_as_headers_require(name: str, tmp_path: Path) -> None:
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    engine = Engine(Store.open(str(tmp_path / "c.db"), now=T0))
    engine.enroll(ir, [{"email": "ada@example.com", "first_name": "Ada", "notes": "n"}], T0, now=T0)
    outbox = OutboxTransport(tmp_path / "out")
    report = Dispatcher(engine, outbox, Sender(name, "sam@example.com")).run_once(
        T0 + dt.timedelta(hours=2)
    )
    assert report.sent == 1
    (path,) = (tmp_path / "out").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (name, "sam@example.com")
    assert message["To"].addresses[0].addr_spec == "ada@example.com"


def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE)
    people = tmp_path / "p.csv"
    people.write_text('email,first_name,notes\n=1+2@x.io,"=cmd|calc",@SUM(A1)\n')
    args = ["plan", str(campaign), "--people", str(people), "--start", "2026-01-05T08:00Z",
            "--format", "csv", "--render"]  # fmt: skip
    safe = run(*args).stdout.splitlines()[1]
    assert safe.startswith("'=1+2@x.io,") and safe.endswith(",Hi =cmd|calc,'@SUM(A1)")
    raw = run(*args, "--no-csv-safe").stdout.splitlines()[1]
    assert raw.startswith("=1+2@x.io,") and raw.endswith(",Hi =cmd|calc,@SUM(A1)")


def test_ics_escapes_every_kind_of_line_break(tmp_path: Path) -> None:
    from cadence.runtime.writers import _ics_text

    assert _ics_text("a\rb\r\nc\nd\u2028e\x00f;g,h\\") == "a\\nb\\nc\\nd\\ne" + "f\\;g\\,h\\\\"


ENCODED_BREAK = "=?utf-8?q?=0ABcc:_x@evil.io?="


def test_an_encoded_word_cannot_smuggle_a_header(tmp_path: Path) -> None:
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    engine = Engine(Store.open(str(tmp_path / "c.db"), now=T0))
    rows = [{"email": "ada@example.com", "first_name": f"Ada {ENCODED_BREAK}", "notes": "n"}]
    report = engine.enroll(ir, rows, T0, now=T0)
    assert report.enrolled == 0
    assert "an encoded word" in report.problems[0].message
    with pytest.raises(AddressError, match="encoded word"):
        sender_address(ENCODED_BREAK, "sam@example.com")


def test_an_edited_task_subject_that_cannot_be_a_header_is_refused(tmp_path: Path) -> None:
    source = """campaign "t" { timezone "UTC"
      day 1 { email a { send task subject "Hi" body "b" } }
      day 2 { email b { send with previous follow up body "again" } } }"""
    ir = compile_source(source, "t.campaign").ir
    assert ir is not None
    engine = Engine(Store.open(str(tmp_path / "c.db"), now=T0))
    engine.enroll(ir, [{"email": "ada@example.com"}], T0, now=T0)
    (task,) = engine.open_tasks()
    for subject in ("Hi\x0bBcc: x@evil.io", f"Hi {ENCODED_BREAK}"):
        with pytest.raises(EngineError, match="the subject holds"):
            engine.send_task(task.id, subject, "body", T0)
    assert [t.id for t in engine.open_tasks()] == [task.id]  # nothing changed


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('{"email": "a@example.com", "first_name": "\\ud800", "notes": "n"}', "unpaired surrogate"),
        ('{"email": "a@example.com", "first_name": {"x": 1}, "notes": "n"}', "is an object"),
        ('{"email": "a@example.com", "first_name": "A", "notes": [1, 2]}', "is a list"),
    ],
)
def test_json_lines_fields_are_plain_values(row: str, reason: str, tmp_path: Path) -> None:
    people = tmp_path / "p.jsonl"
    people.write_text(row + "\n", encoding="utf-8")
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE)
    result = run("plan", str(campaign), "--people", str(people), "--start", "2026-01-05T08:00Z",
                 "--format", "jsonl")  # fmt: skip
    assert result.exit_code == 3 and reason in result.stderr


def test_international_addresses_are_kept_in_a_form_mail_can_carry() -> None:
    checker = AddressChecker()
    assert checker.normalise("ada@bücher.de") == "ada@xn--bcher-kva.de"
    with pytest.raises(AddressError, match="Internationalized characters before the @"):
        checker.normalise("ü@example.com")


def test_control_characters_are_exactly_unicodes_cc_zl_and_zp() -> None:
    import unicodedata

    from cadence.runtime.addresses import has_control

    unsafe = {"Cc", "Zl", "Zp"}
    for point in range(0x110000):
        char = chr(point)
        assert has_control(f"a{char}b") == (unicodedata.category(char) in unsafe), hex(point)
