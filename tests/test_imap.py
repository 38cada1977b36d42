"""Reading an IMAP mailbox on a real IMAP server (pymap) on loopback, over
TLS with a certificate made here: new messages are acted on once, nothing on
the server changes (not even the \\Seen flag), and a refused login is one line."""

from __future__ import annotations

import imaplib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from cadence.cli import cli
from cadence.runtime.mailsources import ImapAccount, SourceError, imap_messages, parse_imap
from tests.test_dispatch import free_port

USER, PASSWORD = "sam", "imap secret"
MESSAGE = (
    b"From: Grace <grace@example.com>\r\nTo: sam@example.com\r\nSubject: your note\r\n"
    b"Date: Tue, 8 Dec 2026 12:00:00 -0500\r\nMessage-ID: <imap-1@mail.example.com>\r\n"
    b"Content-Type: text/plain\r\n\r\nHi Sam, call me next week.\r\n"
)


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    folder = tmp_path_factory.mktemp("imap")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from pymap.main import main; main()", "--host", "127.0.0.1",
         "--port", str(port),
         "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem"),
         "dict", "--demo-user", USER, "--demo-password", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for it to listen (a start-up, not a timed test)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("pymap did not start") from None
                time.sleep(0.1)
        yield port, str(folder / "ca.pem")
    finally:
        server.terminate()
        server.wait(timeout=10)


def deliver_to_server(port: int, data: bytes) -> None:
    client = imaplib.IMAP4(host="127.0.0.1", port=port)
    client.starttls()  # pymap offers STARTTLS on its plain port
    client.login(USER, PASSWORD)
    client.append("INBOX", None, None, data)
    client.logout()


def seen_flags(port: int, ca_file: str) -> list[bytes]:
    import ssl

    client = imaplib.IMAP4(host="127.0.0.1", port=port)
    client.starttls(ssl_context=ssl.create_default_context(cafile=ca_file))
    client.login(USER, PASSWORD)
    client.select("INBOX", readonly=True)
    _, data = client.uid("FETCH", "1:*", "(FLAGS)")
    client.logout()
    return [item for item in data if isinstance(item, bytes)]


def test_imap_urls() -> None:
    assert parse_imap("imaps://sam%40example.com@imap.gmail.com") == ImapAccount(
        "imap.gmail.com", 993, "sam@example.com", "INBOX", "tls"
    )
    assert parse_imap("imap://sam@127.0.0.1:1143/Replies").security == "starttls"
    with pytest.raises(ValueError, match="no password in the URL"):
        parse_imap("imaps://sam:pw@host")


def test_the_inbox_reads_an_imap_mailbox_once_and_changes_nothing(
    imap_server: tuple[int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca_file = imap_server
    deliver_to_server(port, MESSAGE)
    monkeypatch.setenv("CADENCE_IMAP_PASSWORD", PASSWORD)
    db = str(tmp_path / "c.db")
    campaign = tmp_path / "c.campaign"
    campaign.write_text('campaign "c" { day 1 { email a { send at 09:00 subject "s" body "b" } } }')
    people = tmp_path / "p.csv"
    people.write_text("email\ngrace@example.com\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["enroll", str(campaign), "--people", str(people), "--start",
                               "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z", "--db", db]
                         ).exit_code == 0  # fmt: skip
    config = tmp_path / "cadence.toml"
    config.write_text(
        f'[inbox]\nimap = "imap://{USER}@127.0.0.1:{port}/INBOX"\nca_file = "{ca_file}"\n'
    )
    flags_before = seen_flags(port, ca_file)
    result = runner.invoke(cli, ["inbox", "--config", str(config), "--db", db,
                                 "--now", "2026-12-08T18:00Z"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "<imap-1@mail.example.com>  reply: `on reply` ran in 1 campaign(s)\n"
    again = runner.invoke(cli, ["inbox", "--config", str(config), "--db", db])
    assert "read 0 message(s)" in again.stderr  # known UIDs are not even fetched
    assert seen_flags(port, ca_file) == flags_before  # not \\Seen, not moved, not deleted


def test_a_refused_imap_login_is_one_line(
    imap_server: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca_file = imap_server
    monkeypatch.setenv("CADENCE_IMAP_PASSWORD", "wrong")
    account = ImapAccount("127.0.0.1", port, USER, security="starttls", ca_file=ca_file)
    with pytest.raises(SourceError, match="the server refused the login"):
        list(imap_messages(account))
    unverified = ImapAccount("127.0.0.1", port, USER, security="starttls")
    with pytest.raises(SourceError, match="certificate does not verify"):
        list(imap_messages(unverified))
    os.environ.pop("CADENCE_IMAP_PASSWORD")
    with pytest.raises(SourceError, match="set the password"):
        list(imap_messages(account))


def test_the_inbox_reads_every_mailbox_and_one_refused_login_stops_only_that_one(
    imap_server: tuple[int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca_file = imap_server
    deliver_to_server(port, MESSAGE.replace(b"imap-1@", b"imap-2@"))
    monkeypatch.setenv("SAM_IMAP", PASSWORD)
    monkeypatch.setenv("KIM_IMAP", "not the password")
    db = str(tmp_path / "c.db")
    config = tmp_path / "team.toml"
    url = f"imap://{USER}@127.0.0.1:{port}"
    config.write_text(
        f'[mailboxes.kim]\nemail = "kim@example.com"\nimap = "{url}/Kim"\n'
        'imap_password_env = "KIM_IMAP"\n'
        f'[mailboxes.sam]\nemail = "sam@example.com"\nimap = "{url}/INBOX"\n'
        'imap_password_env = "SAM_IMAP"\n'
        f'[routing]\ndefault = "sam"\n[inbox]\nca_file = "{ca_file}"\n'
    )
    result = CliRunner().invoke(cli, ["inbox", "--config", str(config), "--db", db])
    assert result.exit_code == 2
    refused, summary = result.stderr.splitlines()
    assert refused.startswith("cadence: inbox: imap sam@127.0.0.1:")
    assert "/Kim: the server refused the login" in refused  # Kim's password, Kim's mailbox
    assert summary.startswith("read ") and not summary.endswith("none")  # Sam's was read
