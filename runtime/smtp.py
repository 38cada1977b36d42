"""SMTP delivery: plain (a relay on this machine), STARTTLS or implicit TLS,
with AUTH; certificates are verified unless the config says otherwise.

Passwords never come from the command line: the config names an environment
variable (``password_env``), and nothing prints them (see :func:`redact`).
"""

from __future__ import annotations

import contextlib
import email.generator
import io
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from cadence.runtime import outgoing
from cadence.runtime.delivery import DeliveryError, TransportError
from cadence.runtime.redact import redact

Security = Literal["starttls", "tls", "none"]
DEFAULT_PASSWORD_ENV = "CADENCE_SMTP_PASSWORD"
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True)
class SmtpAccount:
    """How to reach and log in to one SMTP server."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password_env: str | None = None
    verify: bool = True
    ca_file: str | None = None

    @property
    def label(self) -> str:
        who = f"{self.username}@" if self.username else ""
        return f"{who}{self.host}:{self.port}"

    def password(self) -> str | None:
        """The password from the environment; :class:`TransportError` when a
        username is set and the variable is not."""
        if self.username is None:
            return None
        name = self.password_env or DEFAULT_PASSWORD_ENV
        value = os.environ.get(name)
        if not value:
            raise TransportError(
                f"smtp {self.label}: set the password in the environment variable {name}"
            )
        return value

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:  # documented as for testing only
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse_smtp(text: str) -> SmtpAccount:
    """``--smtp``: ``HOST:PORT`` (no TLS: a relay on this machine),
    ``smtp://[USER@]HOST[:PORT]`` (STARTTLS, port 587) or
    ``smtps://[USER@]HOST[:PORT]`` (implicit TLS, port 465). A password in
    the URL is refused: it would show in the process list and the shell's
    history. Raises :class:`ValueError`."""
    if "://" not in text:
        host, _, number = text.rpartition(":")
        return SmtpAccount(_host(host, text), _port(number, text), security="none")
    parts = urlsplit(text)
    schemes: dict[str, Security] = {"smtp": "starttls", "smtps": "tls"}
    security = schemes.get(parts.scheme)
    if security is None:
        raise ValueError(f"smtp {redact(text)!r}: use smtp:// (STARTTLS) or smtps:// (TLS)")
    if parts.password is not None:
        raise ValueError(
            f"smtp {redact(text)!r}: no password in the URL; put it in the environment "
            f"({DEFAULT_PASSWORD_ENV}, or password_env in the config)"
        )
    try:
        port = parts.port or DEFAULT_PORTS[security]
    except ValueError:
        raise ValueError(f"smtp {text!r}: the port must be a number from 1 to 65535") from None
    username = unquote(parts.username) if parts.username else None
    return SmtpAccount(_host(parts.hostname or "", text), port, security, username)


def _host(host: str, text: str) -> str:
    host = host.strip("[]")
    if not host or any(char.isspace() or ord(char) < 32 for char in host):
        raise ValueError(f"smtp {text!r}: write HOST:PORT, like 127.0.0.1:25, or an smtp:// URL")
    return host


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"smtp {text!r}: write HOST:PORT with a port from 1 to 65535, like 127.0.0.1:25"
        )
    return int(port)


# RFC 5321 §4.5.3.2: a client waits up to 10 minutes for the reply to the end
# of the message (servers scan it then); connecting is not worth as long.
CONNECT_TIMEOUT = 30.0
REPLY_TIMEOUT = 600.0


class _SMTP(smtplib.SMTP):
    """smtplib's client, noting when the whole message has been sent: a
    failure after that point may follow a delivery."""

    message_sent = False

    def send(self, s: Any) -> None:
        super().send(s)
        tail = s[-5:]
        if (tail.encode() if isinstance(tail, str) else bytes(tail)) == b"\r\n.\r\n":
            self.message_sent = True  # the end of DATA: the server has it all


class _SMTPS(_SMTP, smtplib.SMTP_SSL):
    """Implicit TLS (port 465), noting the end of DATA like :class:`_SMTP`."""


class SmtpTransport:
    """One SMTP connection, opened (encrypted, logged in) on first use and
    reopened after an error."""

    def __init__(
        self,
        host: str | SmtpAccount,
        port: int | None = None,
        *,
        timeout: float = REPLY_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if isinstance(host, SmtpAccount):
            self.account = host
        else:
            self.account = SmtpAccount(host, port or 25, security="none")
        self.host, self.port = self.account.host, self.account.port
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._smtp: _SMTP | None = None

    def check(self) -> None:
        """Connect and log in now: wrong credentials or TLS settings are one
        :class:`TransportError` before anything is claimed. A server that
        cannot be reached is not an error here (sends wait and retry)."""
        try:
            self._connection()
        except TransportError:
            raise
        except (OSError, smtplib.SMTPException):
            self._reset()

    def _connection(self) -> _SMTP:
        if self._smtp is None:
            self._smtp = self._open()
        self._smtp.message_sent = False
        return self._smtp

    def _open(self) -> _SMTP:
        account = self.account
        password = account.password()  # before connecting: a missing one is fatal
        smtp: _SMTP
        try:
            if account.security == "tls":
                smtp = _SMTPS(
                    account.host,
                    account.port,
                    timeout=self.connect_timeout,
                    context=account.tls_context(),
                )
            else:
                smtp = _SMTP(account.host, account.port, timeout=self.connect_timeout)
            if account.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=account.tls_context())
                smtp.ehlo()
            if account.username is not None and password is not None:
                _login(smtp, account.username, password)
            if smtp.sock is not None:  # now mail: RFC 5321's patience
                smtp.sock.settimeout(self.timeout)
        except smtplib.SMTPAuthenticationError as error:
            raise TransportError(
                f"smtp {account.label}: the server refused the login ({error.smtp_code} "
                f"{_text(error.smtp_error)})"
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            raise TransportError(f"smtp {account.label}: {error}") from None
        except ssl.SSLCertVerificationError as error:
            raise TransportError(
                f"smtp {account.label}: the server's certificate does not verify "
                f"({error.verify_message})"
            ) from None
        except ssl.SSLError as error:
            raise TransportError(f"smtp {account.label}: TLS failed ({error.reason})") from None
        return smtp

    def deliver(self, message: EmailMessage) -> None:
        smtp = None
        try:
            smtp = self._connection()
            found = outgoing.envelope(message)
            if found is None:
                smtp.send_message(message)
            else:  # what send_message does, without parsing the headers again
                sender, recipients = found
                smtp.sendmail(sender, recipients, _as_sent(message))
        except TransportError:
            self._reset()
            raise
        except smtplib.SMTPResponseException as error:
            self._reset()
            raise DeliveryError(
                f"{error.smtp_code} {_text(error.smtp_error)}",
                permanent=500 <= error.smtp_code < 600,
            ) from None
        except smtplib.SMTPRecipientsRefused as error:
            self._reset()
            code, reason = next(iter(error.recipients.values()))
            raise DeliveryError(
                f"{code} {reason.decode(errors='replace')}", permanent=500 <= code < 600
            ) from None
        except (OSError, smtplib.SMTPException) as error:
            self._reset()
            if smtp is not None and smtp.message_sent:
                raise DeliveryError(
                    f"{self.host}:{self.port} did not answer after the message was sent "
                    f"({error or type(error).__name__}): it may have been delivered",
                    permanent=False,
                    maybe_delivered=True,
                ) from None
            raise DeliveryError(
                f"cannot reach {self.host}:{self.port}: {error or type(error).__name__}",
                permanent=False,
            ) from None

    def _reset(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None


def _as_sent(message: EmailMessage) -> bytes:
    """The bytes ``smtplib.send_message`` sends for ``message``: its generator
    with CRLF line ends, which also quotes a body line starting "From " as
    ">From " (mbox style)."""
    with io.BytesIO() as out:
        email.generator.BytesGenerator(out).flatten(message, linesep="\r\n")
        return out.getvalue()


# Strongest first among what smtplib speaks; over TLS, PLAIN is as good as any.
_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """Log in with one mechanism the server offers. smtplib's own login()
    tries the next mechanism after a refusal, which some servers count as
    more failed logins (a lockout) and some never answer."""
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    mechanism = next((name for name in _MECHANISMS if name in offered), None)
    if mechanism is None:
        raise smtplib.SMTPNotSupportedError(
            f"the server offers no login smtplib can use ({' '.join(offered) or 'no AUTH'})"
        )
    smtp.user, smtp.password = username, password
    method = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
    smtp.auth(mechanism, method, initial_response_ok=mechanism != "LOGIN")


def _text(reply: Any) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
