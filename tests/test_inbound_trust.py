"""Who can change a person's state through the inbox: only the person an email
went to (a reply, an unsubscribe request, an out-of-office), or a bounce that
shows it is about a send to the address it reports. Each attack is a message an
outsider who received one campaign email could write, read from a real Maildir,
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.engine import Engine
from cadence.runtime.inbox import Inbox, InboxSettings
from cadence.runtime.mailsources import maildir_messages
from cadence.runtime.message_ids import OUR_ID, MessageIds, references
from cadence.runtime.schema import actions, schema_version, store_secrets
from cadence.runtime.store import Store
from tests.engine_db import database_url
from tests.test_inbox import (
    CORPUS,
    SOURCE,
    T0,
    UNSUBSCRIBE,
    as_sent_to,
    engine,
    enrolled_by_the_cli,
    maildir_with,
    sent_ids,
    statuses,
)

__all__ = ["engine"]  # the fixture, on both databases
NOW = T0 + dt.timedelta(hours=3)
EVERYONE_ACTIVE = {
    "ada": "active", "bo": "active", "cy": "active", "dee": "active", "eve": "active",
    "grace": "active", "ken": "active", "margaret": "active", "zoe": "active",
}  # fmt: skip


def message(headers: dict[str, str], body: str, *, content_type: str = "text/plain") -> bytes:
    lines = [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def read(engine: Engine, tmp_path: Path, messages: list[bytes], **settings: object) -> list[str]:
    """The messages put in a Maildir and read by the inbox: each one's outcome."""
    folder = maildir_with(tmp_path / f"Maildir{len(list(tmp_path.iterdir()))}", messages)
    reader = Inbox(engine, InboxSettings(UNSUBSCRIBE, **settings))  # type: ignore[arg-type]
    done = list(reader.process_all(maildir_messages(folder), NOW))
    assert all(not isinstance(item, tuple) for item in done), done
    return [item.outcome for item in done if not isinstance(item, tuple)]


# ---- Message-IDs -------------------------------------------------------------------------------
def test_message_ids_are_signed_for_their_recipient(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    signer = engine.message_ids
    for name, sent in ids.items():
        (found,) = references(sent)
        assert found.token is not None and len(sent) <= 78 - len("Message-ID: ")
        assert signer.signed_for(found, f"{name}@example.com")
        assert signer.signed_for(found, f"{name.upper()}@Example.com")  # case does not matter
        assert not signer.signed_for(found, "mallory@example.com")
    # Another store's secret signs other tokens: a Message-ID is not portable.
    assert not MessageIds(b"another store").signed_for(references(ids["ada"])[0], "ada@example.com")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_store_secret_is_made_once_and_kept(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        found = []
        for _ in range(2):
            store = Store.open(url, now=T0)
            with store.read() as connection:
                found.append(connection.execute(select(store_secrets.c.value)).scalars().all())
            store.close()
        assert len(found[0]) == 1 and len(found[0][0]) == 32
        assert found[0] == found[1]


# ---- replies, unsubscribe requests, out-of-office ----------------------------------------------
def test_an_outsiders_remove_me_in_anothers_thread_changes_nobody(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    attack = message(
        {"From": "Mallory <mallory@evil.example>", "To": "sam@example.com",
         "Subject": "Re: Quick question", "Message-ID": "<m1@evil.example>",
         "In-Reply-To": ids["bo"], "References": ids["bo"]},
        "Please remove me from your list.",
    )  # fmt: skip
    (outcome,) = read(engine, tmp_path, [attack])
    assert outcome.startswith("not acted on: from another address than the recipient")
    assert "bo@example.com" in outcome
    assert statuses(engine) == EVERYONE_ACTIVE
    assert engine.suppressions() == []
    (note,) = [e for e in engine.feed() if e.event == "mail_not_acted_on"]
    assert note.person == "bo@example.com" and "mallory@evil.example" in note.message
    # `inbox --explain` says why.
    (record,) = Inbox(engine).explain("m1@evil.example")
    assert record.kind == "unsubscribe" and record.outcome == outcome


def test_a_colleagues_reply_in_the_thread_does_not_end_the_recipient(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    forwarded = as_sent_to("human-reply.eml", "ada", ids["ada"]).replace(
        b'"Lovelace, Ada" <ada@example.com>', b"Charles <charles@example.com>"
    )
    (outcome,) = read(engine, tmp_path, [forwarded])
    assert outcome.startswith("not acted on: from another address than the recipient")
    assert statuses(engine) == EVERYONE_ACTIVE


def test_a_message_id_pasted_into_a_body_is_not_what_a_reply_answers(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    pasted = message(
        {"From": "mallory@evil.example", "To": "sam@example.com", "Subject": "hello",
         "Message-ID": "<m2@evil.example>"},
        f"Thanks for your note!\n\nReferences: {ids['cy']}\nIn-Reply-To: {ids['cy']}\n",
    )  # fmt: skip
    (outcome,) = read(engine, tmp_path, [pasted])
    assert outcome == "ignored: mallory@evil.example is not active in any campaign"
    assert statuses(engine) == EVERYONE_ACTIVE


def test_a_forged_date_does_not_pause_anyone_for_decades(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    away = as_sent_to("outlook-ooo.eml", "eve", ids["eve"])
    away = away.replace(b"Date: Mon, 7 Dec 2026", b"Date: Mon, 7 Dec 2076")
    away = away.replace(b"Wednesday, December 9, 2026", b"2076-12-01")
    (outcome,) = read(engine, tmp_path, [away], away_days=7)
    # The date is read from the day cadence received it: 2076 is past the year's bound.
    assert "paused until 2026-12-14" in outcome, outcome
    assert statuses(engine)["eve"] == "active until 12-14"


def test_a_return_date_within_a_year_of_receipt_is_kept(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    away = as_sent_to("outlook-ooo.eml", "eve", ids["eve"])
    away = away.replace(b"Date: Mon, 7 Dec 2026", b"Date: Mon, 7 Dec 2076")  # the Date lies
    (outcome,) = read(engine, tmp_path, [away])
    assert "paused until 2026-12-09 (the date in the message)" in outcome


def test_an_out_of_office_about_anothers_email_pauses_nobody(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    away = as_sent_to("outlook-ooo.eml", "eve", ids["grace"])  # eve's auto-reply, grace's id
    (outcome,) = read(engine, tmp_path, [away])
    assert outcome.startswith("not acted on: from another address than the recipient")
    assert statuses(engine) == EVERYONE_ACTIVE


def test_references_to_many_sends_act_on_at_most_the_sender(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    key = OUR_ID.fullmatch(ids["ada"]).group(1)  # type: ignore[union-attr]
    guessed = " ".join(f"<cadence.{key}.{n}@example.com>" for n in range(1, 401))
    forged = " ".join(f"<cadence.{key}.{n}.{'a' * 20}@example.com>" for n in range(1, 50))
    real = " ".join(ids[name] for name in ("bo", "cy", "zoe"))
    pause_all = message(
        {"From": "zoe@example.com", "To": "sam@example.com", "Subject": "Out of office",
         "Auto-Submitted": "auto-replied", "Message-ID": "<m3@example.com>",
         "In-Reply-To": ids["bo"], "References": f"{real} {forged} {guessed}"},
        "I am away.",
    )  # fmt: skip
    (outcome,) = read(engine, tmp_path, [pause_all])
    assert "in 1 campaign(s)" in outcome
    paused = {name for name, state in statuses(engine).items() if state != "active"}
    assert paused == {"zoe"}


def test_guessed_unsigned_message_ids_are_nobodys(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    key = OUR_ID.fullmatch(ids["ada"]).group(1)  # type: ignore[union-attr]
    guessed = " ".join(f"<cadence.{key}.{n}@example.com>" for n in range(1, 401))
    attack = message(
        {"From": "mallory@evil.example", "To": "sam@example.com", "Subject": "Re: hi",
         "Auto-Submitted": "auto-replied", "Message-ID": "<m4@evil.example>",
         "References": guessed},
        "Out of office until next year.",
    )  # fmt: skip
    (outcome,) = read(engine, tmp_path, [attack])
    assert outcome == "ignored: mallory@evil.example is not active in any campaign"
    assert statuses(engine) == EVERYONE_ACTIVE


def test_a_forged_from_that_the_receiving_server_failed_is_not_acted_on(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    forged = b"Authentication-Results: mx.example.com; spf=fail smtp.mailfrom=ken@example.com;" \
        b" dkim=none; dmarc=fail (p=none) header.from=example.com\r\n" + \
        as_sent_to("unsubscribe-reply.eml", "ken", ids["ken"])  # fmt: skip
    (outcome,) = read(engine, tmp_path, [forged])
    assert outcome.startswith("not acted on: the receiving server's checks failed for "
                              "ken@example.com (dmarc=fail)")  # fmt: skip
    assert statuses(engine)["ken"] == "active" and engine.suppressions() == []
    (note,) = [e for e in engine.feed() if e.event == "mail_not_acted_on"]
    assert note.person == "ken@example.com" and "dmarc=fail" in note.message


@pytest.mark.parametrize(
    "header",
    [
        "From: ken@example.com <mallory@evil.example>",
        "From: ken@example.com, mallory@evil.example",
        "From: ken@example.com\r\nFrom: mallory@evil.example",
        "From: ken\x00@example.com",
    ],
)
def test_a_from_header_naming_no_single_address_acts_on_nobody(
    engine: Engine, tmp_path: Path, header: str
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    raw = message({"Subject": "Re: hi", "Message-ID": "<m6@evil.example>",
                   "In-Reply-To": ids["ken"]}, "Please remove me.")  # fmt: skip
    (outcome,) = read(engine, tmp_path, [header.encode() + b"\r\n" + raw])
    assert outcome == "ignored: no From address, or more than one"
    assert statuses(engine) == EVERYONE_ACTIVE


@pytest.mark.parametrize(
    "verdicts",
    [
        # OpenDKIM, then OpenDMARC: one server, two headers; the failure counts.
        [
            "mx.example.com; dkim=none (no signatures)",
            "mx.example.com; dmarc=fail (p=reject) header.from=example.com",
        ],
        # A pass for another From's domain says nothing of this one's failure.
        ["mx.example.com; dmarc=pass header.from=evil.example; dmarc=fail header.from=example.com"],
        # Exchange Online names no server.
        [
            "spf=fail (sender IP is 192.0.2.1) smtp.mailfrom=example.com; dkim=none; "
            "dmarc=fail action=oreject header.from=example.com;compauth=fail reason=000"
        ],
    ],
)
def test_every_verdict_of_the_receiving_server_counts(
    engine: Engine, tmp_path: Path, verdicts: list[str]
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    headers = "".join(f"Authentication-Results: {v}\r\n" for v in verdicts).encode()
    raw = headers + as_sent_to("unsubscribe-reply.eml", "ken", ids["ken"])
    (outcome,) = read(engine, tmp_path, [raw])
    assert outcome.startswith("not acted on: the receiving server's checks failed"), outcome
    assert statuses(engine)["ken"] == "active"


def test_a_report_naming_many_addresses_is_read_for_a_few(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    dsn = as_sent_to("postfix-dsn.eml", "bo", ids["bo"]).decode()
    block = "\r\nFinal-Recipient: rfc822; {0}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    extra = "".join(block.format(f"x{n}@example.com") for n in range(200))
    extra += block.format("ada@example.com") * 500
    dsn = dsn.replace("Final-Recipient:", extra.lstrip("\r\n") + "\r\nFinal-Recipient:", 1)
    (outcome,) = read(engine, tmp_path, [dsn.encode()])
    assert outcome.endswith("more addresses not read"), outcome[-200:]
    assert statuses(engine) == EVERYONE_ACTIVE


def test_only_the_named_receiving_servers_verdict_counts(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    verdicts = (
        b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com; dmarc=pass\r\n"
        b"Authentication-Results: other.example; dmarc=fail header.from=example.com\r\n"
    )
    reply = verdicts + as_sent_to("human-reply.eml", "ada", ids["ada"])
    (outcome,) = read(engine, tmp_path, [reply], authserv_id="mx.example.com")
    assert outcome.startswith("reply:")
    assert statuses(engine)["ada"] == "replied"


# ---- bounces ------------------------------------------------------------------------------------
def test_a_dsn_from_anyone_that_returns_none_of_our_headers_is_not_acted_on(
    engine: Engine, tmp_path: Path
) -> None:
    sent_ids(engine, tmp_path / "outbox")
    dsn = (CORPUS / "postfix-dsn.eml").read_text(encoding="utf-8")
    dsn = re.sub(r"From: .*", "From: Mallory <mallory@evil.example>", dsn, count=1)
    dsn = re.sub(r"Message-ID: <cadence[^>]*>", "Message-ID: <nothing-of-ours@x>", dsn)
    dsn = re.sub(r"<cadence\.[^>]*>", "", dsn)
    assert "cadence." not in dsn
    forged = as_sent_to_text(dsn, "bo")
    (outcome,) = read(engine, tmp_path, [forged])
    assert outcome == ("not acted on: bo@example.com: the report returns no Message-ID cadence "
                       "signed for a send to it")  # fmt: skip
    assert statuses(engine) == EVERYONE_ACTIVE
    assert engine.suppressions() == []


def test_a_dsn_returning_one_persons_message_id_does_not_bounce_another(
    engine: Engine, tmp_path: Path
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    # Mallory's own email's Message-ID, in a report that names bo.
    dsn = as_sent_to("postfix-dsn.eml", "bo", ids["margaret"])
    (outcome,) = read(engine, tmp_path, [dsn])
    assert "the report returns no Message-ID cadence signed for a send to it" in outcome
    assert statuses(engine) == EVERYONE_ACTIVE


@pytest.mark.parametrize(
    "name", ["postfix-dsn.eml", "exchange-ndr.eml", "gmail-dsn.eml", "exim-bounce.eml"]
)
def test_real_bounces_still_bounce(engine: Engine, tmp_path: Path, name: str) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    (outcome,) = read(engine, tmp_path, [as_sent_to(name, "cy", ids["cy"])])
    assert outcome.startswith("bounce: cy@example.com: suppressed"), outcome
    assert statuses(engine)["cy"] == "bounced"


def as_sent_to_text(text: str, person: str) -> bytes:
    domains = r"@(example\.com|contoso\.com|gmail\.com)"
    for original in ("ada", "bo", "cy", "dee", "eve", "grace", "ken", "margaret", "zoe"):
        text = re.sub(rf"\b{original}{domains}", f"{person}@example.com", text, flags=re.I)
    return text.encode("utf-8")


# ---- stores from before signing ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_message_ids_sent_before_signing_stay_recognised_as_sent(kind: str, tmp_path: Path) -> None:
    with database_url(kind, tmp_path) as url:
        store = Store.open(url, now=T0)
        engine = Engine(store)
        ir = compile_source(SOURCE, "loop.campaign").ir
        assert ir is not None
        engine.enroll(ir, [{"email": "ada@example.com"}, {"email": "bo@example.com"}], T0, now=T0)
        ids = sent_ids(engine, tmp_path / "outbox")
        legacy = {name: re.sub(r"\.[a-z2-7]{20}@", "@", sent) for name, sent in ids.items()}
        with store.transaction() as connection:  # as a version 12 store recorded them
            for name, sent in legacy.items():
                connection.execute(
                    update(actions).where(actions.c.message_id == ids[name]).values(message_id=sent)
                )
            connection.execute(text("DROP TABLE store_secrets"))
            connection.execute(schema_version.delete().where(schema_version.c.version > 12))
        engine.close()
        engine = Engine(Store.open(url, now=T0))  # the upgrade makes a secret
        try:
            other = as_sent_to("human-reply.eml", "bo", legacy["ada"])
            reply = as_sent_to("human-reply.eml", "ada", legacy["ada"]).replace(b"CAreply1", b"x")
            nobodys = re.sub(r"\.\d+@", ".999999@", legacy["ada"])  # the shape, no send's id
            guessed = as_sent_to("human-reply.eml", "ada", nobodys)
            outcomes = read(engine, tmp_path, [other, reply, guessed.replace(b"CAreply1", b"y")])
            assert sorted(o.split(":")[0] for o in outcomes) == ["ignored", "not acted on", "reply"]
            assert statuses(engine) == {"ada": "replied", "bo": "active"}
            # An unsigned Message-ID shows no bounce is about its address: it
            # can be guessed, and a bounce need not come from the person.
            dsn = as_sent_to("postfix-dsn.eml", "bo", legacy["bo"])
            (outcome,) = read(engine, tmp_path, [dsn])
            assert outcome.endswith(
                "the report returns no Message-ID cadence signed for a send to it"
            )
            assert statuses(engine)["bo"] == "active" and engine.suppressions() == []
        finally:
            engine.close()


def test_inbox_explain_shows_why_nothing_was_done(tmp_path: Path) -> None:
    runner, db = enrolled_by_the_cli(tmp_path)
    outbox = tmp_path / "outbox"
    sent = runner.invoke(
        cli,
        [
            "run",
            "--db",
            db,
            "--outbox",
            str(outbox),
            "--sender-email",
            "sam@example.com",
            "--now",
            "2026-12-07T10:00Z",
            "--once",
        ],
    )
    assert sent.exit_code == 0, sent.output
    (path,) = outbox.glob("*.eml")
    ada_id = str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                 ["Message-ID"]).strip()  # fmt: skip
    attack = tmp_path / "attack.eml"
    attack.write_bytes(message(
        {"From": "mallory@evil.example", "To": "sam@example.com", "Subject": "unsubscribe",
         "Message-ID": "<m5@evil.example>", "In-Reply-To": ada_id},
        "remove me",
    ))  # fmt: skip
    result = runner.invoke(cli, ["inbox", str(attack), "--db", db, "--now", "2026-12-07T12:00Z"])
    assert result.exit_code == 0, result.output
    assert "not acted on: from another address than the recipient" in result.stdout
    explained = runner.invoke(cli, ["inbox", "--explain", "m5@evil.example", "--db", db]).stdout
    assert "outcome    not acted on: from another address than the recipient" in explained
    status = runner.invoke(cli, ["status", "ada@example.com", "--db", db])
    assert "active" in status.stdout
