"""Several sender mailboxes: the config declares them and says which sends for
whom (a person field such as `owner`, the campaign's name, a default); a
person keeps their mailbox for every email; each mailbox has its own caps and
throttle, and a throttled one never holds up the others."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.caps import DailyCap
from cadence.runtime.config import ConfigError, RuntimeConfig, load_config
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Mailbox, NoMailbox, Routing, Sender, Throttle
from cadence.runtime.schema import enrollments
from tests.engine_db import database_url

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Q1" {
  timezone "UTC"
  day 1 {
    email intro { send at 09:00 subject "Hi {{ first_name }}" body "Hi\\n{{ sender.signature }}" }
  }
  day 2 { email again { send at 09:00 follow up body "Again\\n{{ sender.signature }}" } }
}"""
SAM = Sender("Sam Seller", "sam@sam.example", "-- Sam")
KIM = Sender("Kim Closer", "Kim@kim.example", "-- Kim")


class Recorder:
    """A transport that keeps what it was given (a real outbox is tested below)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    def deliver(self, message: EmailMessage) -> None:
        self.messages.append(message)

    def close(self) -> None:
        pass


def enroll(engine: Engine, people: list[dict[str, Any]], source: str = SOURCE) -> None:
    ir = compile_source(source, "c.campaign").ir
    assert ir is not None
    report = engine.enroll(ir, people, T0, now=T0)
    assert not report.problems


def two_mailboxes(**routing: Any) -> tuple[list[Mailbox], Recorder, Recorder, Routing]:
    sam, kim = Recorder(), Recorder()
    boxes = [Mailbox("sam", SAM, sam), Mailbox("kim", KIM, kim)]
    keys = {"sam": "sam@sam.example", "kim": "kim@kim.example"}
    return boxes, sam, kim, Routing(keys, **routing)


def stored_mailboxes(engine: Engine) -> dict[str, str | None]:
    with engine.store.read() as connection:
        rows = connection.execute(select(enrollments.c.person, enrollments.c.mailbox))
        return {row.person: row.mailbox for row in rows}


def test_the_owner_field_picks_the_mailbox_by_name_or_address() -> None:
    routing = Routing(
        {"sam": "sam@sam.example", "kim": "kim@kim.example"},
        default="sam@sam.example",
        person_field="owner",
        campaigns={"Q1": "kim@kim.example"},
    )
    assert routing.route("other", {"owner": "Kim"}) == "kim@kim.example"
    assert routing.route("other", {"owner": " KIM@kim.example "}) == "kim@kim.example"
    assert routing.route("Q1", {}) == "kim@kim.example"  # no owner: the campaign's
    assert routing.route("Q1", {"owner": ""}) == "kim@kim.example"
    assert routing.route("other", {}) == "sam@sam.example"  # else the default
    with pytest.raises(NoMailbox, match="`owner` 'alex' is not a mailbox in the config"):
        routing.route("Q1", {"owner": "alex"})  # never quietly another seller's


def test_without_a_default_an_unrouted_campaign_is_named() -> None:
    routing = Routing({"sam": "sam@sam.example"}, campaigns={"Q1": "sam@sam.example"})
    with pytest.raises(NoMailbox, match="no mailbox sends for campaign 'Q2'"):
        routing.route("Q2", {})


def test_each_person_gets_email_from_their_owners_mailbox(engine: Engine) -> None:
    people = [
        {"email": "ann@a.example", "first_name": "Ann", "owner": "kim"},
        {"email": "bob@b.example", "first_name": "Bob", "owner": "sam"},
        {"email": "cy@c.example", "first_name": "Cy"},
    ]
    enroll(engine, people)
    boxes, sam, kim, routing = two_mailboxes(person_field="owner", default="sam@sam.example")
    dispatcher = Dispatcher(engine, mailboxes=boxes, routing=routing)
    assert dispatcher.run_once(T0 + dt.timedelta(hours=2)).sent == 3
    assert [m["To"] for m in kim.messages] == ["ann@a.example"]
    assert sorted(str(m["To"]) for m in sam.messages) == ["bob@b.example", "cy@c.example"]
    ann = kim.messages[0]
    assert ann["From"] == "Kim Closer <Kim@kim.example>"
    assert str(ann["Message-ID"]).endswith("@kim.example>")
    assert "-- Kim" in ann.get_content() and "-- Sam" in sam.messages[0].get_content()
    assert str(ann["List-Unsubscribe"]) == "<mailto:Kim@kim.example?subject=unsubscribe>"
    assert stored_mailboxes(engine) == {
        "ann@a.example": "kim@kim.example",
        "bob@b.example": "sam@sam.example",
        "cy@c.example": "sam@sam.example",
    }


def test_a_person_keeps_their_mailbox_when_the_routing_changes(engine: Engine) -> None:
    enroll(engine, [{"email": "ann@a.example", "first_name": "Ann", "owner": "kim"}])
    boxes, sam, kim, routing = two_mailboxes(person_field="owner")
    Dispatcher(engine, mailboxes=boxes, routing=routing).run_once(T0 + dt.timedelta(hours=2))
    # Everyone is Sam's now, but Ann's thread began with Kim: the follow-up too.
    changed = Routing(routing.keys, default="sam@sam.example")
    Dispatcher(engine, mailboxes=boxes, routing=changed).run_once(
        T0 + dt.timedelta(days=1, hours=2)
    )
    assert [m["Subject"] for m in kim.messages] == ["Hi Ann", "Re: Hi Ann"]
    assert kim.messages[1]["In-Reply-To"] == kim.messages[0]["Message-ID"]
    assert sam.messages == []


def test_a_person_whose_owner_has_no_mailbox_fails_with_the_reason(engine: Engine) -> None:
    enroll(engine, [{"email": "ann@a.example", "first_name": "Ann", "owner": "alex"}])
    boxes, sam, kim, routing = two_mailboxes(person_field="owner", default="sam@sam.example")
    report = Dispatcher(engine, mailboxes=boxes, routing=routing).run_once(
        T0 + dt.timedelta(hours=2)
    )
    assert (report.sent, report.failed) == (0, 1) and sam.messages == kim.messages == []
    failed = [entry for entry in engine.feed() if entry.event == "failed"]
    assert [entry.message for entry in failed] == [
        "send `intro` failed: `owner` 'alex' is not a mailbox in the config"
    ]
    assert stored_mailboxes(engine) == {"ann@a.example": None}  # chosen again on retry
    assert engine.retry_failed(T0 + dt.timedelta(hours=3), by="sam") == 1
    boxes.append(Mailbox("alex", Sender(email="alex@a.example"), Recorder()))
    known = Routing({**routing.keys, "alex": "alex@a.example"}, person_field="owner")
    Dispatcher(engine, mailboxes=boxes, routing=known).run_once(T0 + dt.timedelta(hours=3))
    assert stored_mailboxes(engine) == {"ann@a.example": "alex@a.example"}


def test_each_mailbox_has_its_own_daily_cap(engine: Engine) -> None:
    people = [{"email": f"p{n}@x.example", "first_name": "P", "owner": "sam" if n % 2 else "kim"}
              for n in range(10)]  # fmt: skip
    enroll(engine, people)
    boxes, sam, kim, routing = two_mailboxes(person_field="owner")
    boxes[0].daily_cap = DailyCap(SAM.email, 2)
    boxes[1].daily_cap = DailyCap(KIM.email, 4)
    report = Dispatcher(engine, mailboxes=boxes, routing=routing, batch=3).run_once(
        T0 + dt.timedelta(hours=2)
    )
    assert (report.sent, len(sam.messages), len(kim.messages)) == (6, 2, 4)
    rolled = [entry.message for entry in engine.feed() if entry.event == "rolled"]
    assert sum("daily cap of 2 for sam@sam.example" in m for m in rolled) == 3
    assert sum("daily cap of 4 for Kim@kim.example" in m for m in rolled) == 1


def test_a_throttled_mailbox_does_not_hold_up_the_others(engine: Engine) -> None:
    people = [{"email": f"p{n}@x.example", "first_name": "P", "owner": "sam" if n < 4 else "kim"}
              for n in range(8)]  # fmt: skip
    enroll(engine, people)
    boxes, _, _, routing = two_mailboxes(person_field="owner")
    clock = [0.0]
    order: list[str] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    boxes[0].throttle = Throttle(1, 60, clock=lambda: clock[0], sleep=sleep)
    for box, name in ((boxes[0], "sam"), (boxes[1], "kim")):
        recorder = box.transport
        assert isinstance(recorder, Recorder)
        recorder.deliver = lambda message, name=name, keep=recorder.deliver: (  # type: ignore[method-assign]
            order.append(name),
            keep(message),
        )[1]
    dispatcher = Dispatcher(engine, mailboxes=boxes, routing=routing, sleep=sleep)
    assert dispatcher.run_once(T0 + dt.timedelta(hours=2)).sent == 8
    assert order[:5] == ["sam", "kim", "kim", "kim", "kim"]  # Kim's went while Sam waited
    assert waits == [60.0, 60.0, 60.0]  # Sam: one a minute, nobody else waiting


def test_a_dispatcher_with_several_mailboxes_needs_a_routing(engine: Engine) -> None:
    boxes, *_ = two_mailboxes()
    with pytest.raises(ValueError, match="routing"):
        Dispatcher(engine, mailboxes=boxes)


CONFIG = """
outbox = "{outbox}"

[mailboxes.sam]
email = "sam@sam.example"
name = "Sam Seller"
signature = "-- Sam"

[mailboxes.kim]
email = "kim@kim.example"
name = "Kim Closer"
signature = "-- Kim"
outbox = "{kim_outbox}"
daily_cap = 1

[routing]
person_field = "owner"
default = "sam"
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_run_sends_from_every_mailbox_of_its_config(tmp_path: Path, kind: str) -> None:
    (tmp_path / "q1.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text(
        "email,first_name,owner\nann@a.example,Ann,kim\nbob@b.example,Bob,\ncy@c.example,Cy,KIM\n"
    )
    config = tmp_path / "team.toml"
    config.write_text(CONFIG.format(outbox=tmp_path / "out", kim_outbox=tmp_path / "kim-out"))
    runner = CliRunner()
    with database_url(kind, tmp_path) as db:
        enrolled = runner.invoke(cli, [
            "enroll", str(tmp_path / "q1.campaign"), "--people", str(tmp_path / "people.csv"),
            "--start", "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z", "--db", db,
        ])  # fmt: skip
        assert enrolled.exit_code == 0, enrolled.output
        result = runner.invoke(
            cli, ["run", "--config", str(config), "--db", db, "--now", "2026-12-07T10:00Z"]
        )
        assert result.exit_code == 0, result.output
        assert "sent 2," in result.stderr  # Kim's cap of 1 rolled Cy to tomorrow
        feed = runner.invoke(cli, ["feed", "--db", db])
        assert "daily cap of 1 for kim@kim.example reached" in feed.output
    sam = [read(path) for path in (tmp_path / "out").glob("*.eml")]
    kim = [read(path) for path in (tmp_path / "kim-out").glob("*.eml")]
    assert [(m["From"], m["To"]) for m in sam] == [
        ("Sam Seller <sam@sam.example>", "bob@b.example")
    ]
    assert len(kim) == 1 and kim[0]["From"] == "Kim Closer <kim@kim.example>"


def read(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--sender-email", "x@y.example"), ("--daily-cap", "5"), ("--throttle", "1/60")],
)
def test_sender_options_are_refused_with_mailboxes(tmp_path: Path, flag: str, value: str) -> None:
    config = tmp_path / "team.toml"
    config.write_text(CONFIG.format(outbox=tmp_path / "out", kim_outbox=tmp_path / "k"))
    result = CliRunner().invoke(
        cli, ["run", "--config", str(config), "--db", str(tmp_path / "c.db"), flag, value]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"cadence: error: {flag} is for a config without mailboxes; set it in [mailboxes.NAME]\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[mailboxes.a]\nemail = "a@x.example"\n[mailboxes.b]\nemail = "b@x.example"\n',
         "several mailboxes: say which sends for whom in [routing]"),
        ('[mailboxes.a]\nemail = "a@x.example"\n[routing]\ndefault = "b"\n',
         "`routing.default`: no mailbox named 'b' (known: a)"),
        ('[mailboxes.a]\nemail = "a@x.example"\n[routing.campaigns]\nQ1 = "b"\n',
         "`routing.campaigns.'Q1'`: no mailbox named 'b' (known: a)"),
        ('[sender]\nemail = "a@x.example"\n[mailboxes.a]\nemail = "a@x.example"\n',
         "declare [sender] or [mailboxes.NAME] tables, not both"),
        ('[mailboxes.a]\nemail = "a@x.example"\n[mailboxes.b]\nemail = "A@x.example"\n'
         '[routing]\ndefault = "a"\n',
         "mailboxes a and b have the same address"),
        ('[mailboxes."a\\nb"]\nemail = "a@x.example"\n',
         "mailbox name 'a\\nb': use letters, digits, '-', '_' and '.'"),
        ('[mailboxes.a]\nemail = "a@x.example"\nsmtp = { host = "h", pasword_env = "X" }\n',
         "unknown setting 'mailboxes.a.smtp.pasword_env' (known: ca_file, host, password_env"),
        ('[mailboxes.a]\nemail = "a@x.example"\ncap = 3\n',
         "unknown setting 'mailboxes.a.cap' (known: cap_timezone, daily_cap, email"),
        ('[mailboxes.a]\nname = "A"\n', "`mailboxes.a.email`: field required"),
        ('[routing]\ndefault = "a"\n', "[routing] chooses among [mailboxes.NAME] tables"),
        ('[mailboxes.Sam]\nemail = "a@x.example"\n[mailboxes.sam]\nemail = "b@x.example"\n'
         '[routing]\ndefault = "sam"\n', "mailboxes Sam and sam have the same name"),
        ('outbox = "o"\nsmtp = "h:25"\n[mailboxes.a]\nemail = "a@x.example"\n',
         "the config has both smtp and outbox; choose one"),
        ('[mailboxes.a]\nemail = "a@x.example"\n[routing]\n',
         "[routing] says nothing: give it person_field, campaigns or a default"),
        ('[mailboxes.a]\nemail = "a@x.example"\n[routing]\nperson_field = ""\n',
         "`routing.person_field`: string should have at least 1 character"),
    ],
)  # fmt: skip
def test_a_wrong_mailbox_config_is_one_line_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_a_bad_mailbox_setting_names_the_mailbox(tmp_path: Path) -> None:
    config = tmp_path / "team.toml"
    config.write_text(
        '[mailboxes.sam]\nemail = "sam@x.example"\n'
        '[mailboxes.kim]\nemail = "kim@x.example"\ncap_timezone = "Mars/Base"\ndaily_cap = 3\n'
        '[routing]\ndefault = "sam"\n'
    )
    result = CliRunner().invoke(
        cli, ["run", "--config", str(config), "--db", str(tmp_path / "c.db"), "--once"]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "cadence: error: mailbox kim: cap_timezone 'Mars/Base' is not a time zone\n"
    )


def test_a_config_without_mailboxes_is_one_mailbox() -> None:
    from cadence.runtime.mailboxes import mailbox_settings

    config = RuntimeConfig.model_validate({"sender": {"email": "s@x.example", "daily_cap": 9}})
    settings = mailbox_settings(config)
    assert list(settings) == ["default"]
    assert (settings["default"].email, settings["default"].daily_cap) == ("s@x.example", 9)


def test_mailboxes_sharing_an_outbox_share_one_transport(tmp_path: Path) -> None:
    from cadence.runtime.mailboxes import open_mailboxes

    config = RuntimeConfig.model_validate({
        "outbox": str(tmp_path / "out"),
        "mailboxes": {"a": {"email": "a@x.example"}, "b": {"email": "b@x.example"}},
        "routing": {"default": "a"},
    })  # fmt: skip
    opened = open_mailboxes(config)
    assert len(opened.transports) == 1
    assert isinstance(opened.mailboxes[0].transport, OutboxTransport)
    assert opened.mailboxes[0].transport is opened.mailboxes[1].transport
    assert opened.routing.route("any", {}) == "a@x.example"


class Refusing(Recorder):
    """A transport whose login was refused (a password rotated mid-run)."""

    def deliver(self, message: EmailMessage) -> None:
        from cadence.runtime.delivery import TransportError

        raise TransportError("the server refused the login")


def test_a_mailbox_that_cannot_log_in_stops_alone(engine: Engine) -> None:
    people = [{"email": f"p{n}@x.example", "first_name": "P", "owner": "sam" if n < 2 else "kim"}
              for n in range(4)]  # fmt: skip
    enroll(engine, people)
    boxes, _, kim, routing = two_mailboxes(person_field="owner")
    boxes[0].transport = Refusing()
    report = Dispatcher(engine, mailboxes=boxes, routing=routing).run_once(
        T0 + dt.timedelta(hours=2)
    )
    assert report.sent == 2 and len(kim.messages) == 2  # Kim's went all the same
    assert report.down == {"mailbox sam (sam@sam.example)": "the server refused the login"}
    assert len(engine.due(T0 + dt.timedelta(hours=2))) == 2  # Sam's were given back


def test_one_sender_sends_everything_even_after_its_address_changed(engine: Engine) -> None:
    enroll(engine, [{"email": "ann@a.example", "first_name": "Ann"}])
    Dispatcher(engine, Recorder(), Sender(email="old@x.example")).run_once(
        T0 + dt.timedelta(hours=2)
    )
    renamed = Recorder()
    Dispatcher(engine, renamed, Sender(email="new@x.example")).run_once(
        T0 + dt.timedelta(days=1, hours=2)
    )
    assert [m["From"] for m in renamed.messages] == ["new@x.example"]


def test_a_removed_mailbox_is_said_and_its_people_can_be_moved(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    enroll(engine, [{"email": "ann@a.example", "first_name": "Ann", "owner": "kim"}])
    boxes, _, _, routing = two_mailboxes(person_field="owner")
    Dispatcher(engine, mailboxes=boxes, routing=routing).run_once(T0 + dt.timedelta(hours=2))
    # Kim left; the config now has Sam and Lee.
    lee = Mailbox("lee", Sender(email="lee@lee.example"), Recorder())
    team = [boxes[0], lee]
    keys = Routing({"sam": "sam@sam.example", "lee": "lee@lee.example"}, default="sam@sam.example")
    later = T0 + dt.timedelta(days=1, hours=2)
    with caplog.at_level("WARNING", logger="cadence.dispatch"):
        assert Dispatcher(engine, mailboxes=team, routing=keys).run_once(later).sent == 0
    assert "1 due send(s) are for mailbox kim@kim.example, which is not in this config" in (
        caplog.text
    )
    assert engine.move_mailbox("Kim@kim.example", "lee@lee.example") == 1
    assert Dispatcher(engine, mailboxes=team, routing=keys).run_once(later).sent == 1
    assert isinstance(lee.transport, Recorder) and len(lee.transport.messages) == 1


def test_mailboxes_move_names_the_count(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "c.db")
    result = runner.invoke(cli, ["mailboxes", "move", "kim@x.example", "lee@x.example", "--db", db])
    assert result.exit_code == 0 and result.stderr == (
        "moved 0 people from kim@x.example to lee@x.example\n"
    )
    bad = runner.invoke(cli, ["mailboxes", "move", "kim@x.example", "not an address", "--db", db])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
