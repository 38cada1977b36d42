"""SMTP against a real server on loopback: STARTTLS and implicit TLS with a
certificate made here, AUTH required, certificates verified by default,
passwords only from the environment and never shown; every email carries
its unsubscribe headers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from sqlalchemy import func, select

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.delivery import OutboxTransport, TransportError
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from cadence.runtime.redact import redact
from cadence.runtime.schema import actions
from cadence.runtime.smtp import SmtpAccount, SmtpTransport, parse_smtp
from cadence.runtime.store import Store
from cadence.runtime.unsubscribe import UnsubscribeLinks
from tests.test_dispatch import free_port

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
SOURCE = 'campaign "c" { timezone "UTC" day 1 { email e { send choose subject "s" body "b" } } }'
USER, PASSWORD = "sam@example.com", "correct horse battery staple"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def authenticator(mailbox: Mailbox) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            mailbox.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # False: the server answers 535

    return check


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(ca),
        require_starttls=True,
        authenticator=authenticator(mailbox),
        auth_required=True,
    )
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=server_context(ca),
        authenticator=authenticator(mailbox),
        auth_required=True,
        auth_require_tls=False,  # the whole connection is TLS already
    )
    controller.start()
    yield mailbox, port
    controller.stop()


def enrolled(tmp_path: Path, people: int = 2) -> tuple[Engine, str]:
    db = str(tmp_path / "c.db")
    engine = Engine(Store.open(db, now=T0))
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": f"p{n}@example.com"} for n in range(people)], T0, now=T0)
    return engine, db


def statuses(engine: Engine) -> dict[str, int]:
    with engine.store.read() as connection:
        rows = connection.execute(select(actions.c.status, func.count()).group_by(actions.c.status))
        return dict(rows.all())  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is all TLS
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_delivery_is_encrypted_and_logged_in(
    security: str,
    starttls_server: tuple[Mailbox, int],
    tls_server: tuple[Mailbox, int],
    ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailbox, port = starttls_server if security == "starttls" else tls_server
    monkeypatch.setenv("SAM_PASSWORD", PASSWORD)
    account = SmtpAccount("127.0.0.1", port, security, USER, "SAM_PASSWORD", ca_file=ca_file)  # type: ignore[arg-type]
    engine, _ = enrolled(tmp_path)
    outcome = Dispatcher(engine, SmtpTransport(account), Sender("Sam", USER)).run_once(T0)
    assert outcome.sent == 2 and len(mailbox.messages) == 2
    assert mailbox.logins == [USER]  # one connection, logged in once
    assert mailbox.messages[0]["List-Unsubscribe"] == f"<mailto:{USER}?subject=unsubscribe>"


def test_wrong_credentials_stop_the_run_and_mark_nothing(
    starttls_server: tuple[Mailbox, int], ca_file: str, tmp_path: Path
) -> None:
    _, port = starttls_server
    engine, db = enrolled(tmp_path)
    config = tmp_path / "cadence.toml"
    config.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nusername = "{USER}"\n'
        f'password_env = "SAM_PASSWORD"\nca_file = "{ca_file}"\n'
        '[sender]\nemail = "sam@example.com"\n'
    )
    result = CliRunner(env={"SAM_PASSWORD": "wrong"}).invoke(
        cli, ["run", "--db", db, "--config", str(config), "--now", "2026-01-05T09:00:00Z"]
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"smtp {USER}@127.0.0.1:{port}: the server refused the login (535" in result.stderr
    assert "wrong" not in result.stderr
    assert statuses(engine) == {"pending": 2}


def test_a_login_refused_mid_run_gives_the_batch_back(
    starttls_server: tuple[Mailbox, int], ca_file: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, port = starttls_server
    monkeypatch.setenv("SAM_PASSWORD", "rotated")
    account = SmtpAccount("127.0.0.1", port, "starttls", USER, "SAM_PASSWORD", ca_file=ca_file)
    engine, _ = enrolled(tmp_path, people=3)
    with pytest.raises(TransportError, match="refused the login"):
        Dispatcher(engine, SmtpTransport(account), Sender()).run_once(T0)
    assert statuses(engine) == {"pending": 3}
    assert [send.attempts for send in engine.claim(T0, 10, worker="next")] == [1, 1, 1]


def test_certificates_are_verified_by_default(
    starttls_server: tuple[Mailbox, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = starttls_server
    monkeypatch.setenv("CADENCE_SMTP_PASSWORD", PASSWORD)
    transport = SmtpTransport(SmtpAccount("127.0.0.1", port, "starttls", USER))
    with pytest.raises(TransportError, match="certificate does not verify"):
        transport.check()
    insecure = SmtpTransport(SmtpAccount("127.0.0.1", port, "starttls", USER, verify=False))
    insecure.check()  # verify = false (for tests) connects
    insecure.close()


def test_starttls_asked_of_a_server_without_it_is_refused(tmp_path: Path) -> None:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(TransportError, match="STARTTLS"):
            SmtpTransport(SmtpAccount("127.0.0.1", port, "starttls")).check()
    finally:
        controller.stop()


def test_a_missing_password_is_one_clear_error(starttls_server: tuple[Mailbox, int]) -> None:
    _, port = starttls_server
    transport = SmtpTransport(SmtpAccount("127.0.0.1", port, "starttls", USER, "NO_SUCH_VAR"))
    with pytest.raises(TransportError, match="set the password in the environment variable"):
        transport.check()


@pytest.mark.parametrize(
    ("text", "account"),
    [
        ("127.0.0.1:2525", SmtpAccount("127.0.0.1", 2525, "none")),
        ("smtp://sam%40example.com@smtp.example.com",
         SmtpAccount("smtp.example.com", 587, "starttls", "sam@example.com")),
        ("smtps://smtp.example.com", SmtpAccount("smtp.example.com", 465, "tls")),
        ("smtp://[::1]:2525", SmtpAccount("::1", 2525, "starttls")),
    ],
)  # fmt: skip
def test_smtp_urls(text: str, account: SmtpAccount) -> None:
    assert parse_smtp(text) == account


def test_a_password_in_a_url_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="no password in the URL") as caught:
        parse_smtp("smtp://sam:hunter2@smtp.example.com")
    assert "hunter2" not in str(caught.value)
    assert redact("postgresql://app:hunter2@db:5432/x") == "postgresql://app:***@db:5432/x"
    result = CliRunner().invoke(cli, ["tasks", "--db", "mysql://app:hunter2@db/x"])
    assert result.exit_code == 2 and "hunter2" not in result.stderr and "***" in result.stderr


def test_one_click_unsubscribe_needs_https_and_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="https://"):
        UnsubscribeLinks.from_config(None, "http://example.com/u", USER)
    with pytest.raises(ValueError, match="CADENCE_UNSUBSCRIBE_SECRET"):
        UnsubscribeLinks.from_config(None, "https://example.com/u", USER)
    monkeypatch.setenv("CADENCE_UNSUBSCRIBE_SECRET", "s" * 32)
    links = UnsubscribeLinks.from_config("leave@example.com", "https://example.com/u", USER)
    engine, _ = enrolled(tmp_path, people=1)
    Dispatcher(engine, OutboxTransport(tmp_path / "out"), Sender(), unsubscribe=links).run_once(T0)
    (path,) = (tmp_path / "out").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    mailto, https = str(message["List-Unsubscribe"]).split(", ")
    assert mailto == "<mailto:leave@example.com?subject=unsubscribe>"
    assert https.startswith("<https://example.com/u?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = https.removesuffix(">").rpartition("token=")[2]
    assert links.person(token) == "p0@example.com"
    forged = links.token("p0@example.com").split(".")[1]
    other = UnsubscribeLinks.from_config(None, "https://example.com/u", USER)
    assert other.person(other.token("victim@example.com").split(".")[0] + "." + forged) is None


def test_run_over_smtp_without_a_sender_is_refused(tmp_path: Path) -> None:
    """Real mail from cadence@localhost would be refused or junked: a run that
    delivers over SMTP needs a sender; one into an outbox is warned, once."""
    engine, db = enrolled(tmp_path)
    refused = CliRunner().invoke(cli, ["run", "--db", db, "--smtp", "127.0.0.1:9",
                                       "--now", "2026-01-05T09:00:00Z"])  # fmt: skip
    assert refused.exit_code == 2
    assert refused.stderr == (
        "cadence: error: no sender to send as: set email in the config's [sender] (or "
        "[mailboxes.NAME]), or give --sender-email\n"
    )
    assert statuses(engine) == {"pending": 2}
    outbox = CliRunner().invoke(cli, ["run", "--db", db, "--outbox", str(tmp_path / "out"),
                                      "--now", "2026-01-05T09:00:00Z"])  # fmt: skip
    assert outbox.exit_code == 0, outbox.stderr
    assert outbox.stderr.count("warning: no sender set") == 1
