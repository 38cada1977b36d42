"""What may reach a mail header: people's addresses, display names, subjects.

People files are untrusted input. An address is checked by `email-validator`
(syntax only, no network) and kept in its normalised form; a value that would
put a line break into a header (CR, LF, NEL, U+2028 and the rest of what
:meth:`str.splitlines` splits at) is refused where it enters, not at delivery.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address

from email_validator import EmailNotValidError, validate_email

from cadence.errors import CadenceError

# The common shape of an address (ASCII dot-atom local part, lower-case
# domain): for it the normalised form is the address itself once its domain
# has been accepted, so only the first address of each domain pays for the
# full check. Anything else goes through email-validator whole.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_PLAIN_DOMAIN = re.compile(r"[a-z0-9.-]+")
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


class AddressError(CadenceError, ValueError):
    """Not an address mail can be sent to; the message says why."""


class AddressChecker:
    """Checks and normalises people's addresses, remembering the domains it
    has accepted (a people file names few domains, many times)."""

    def __init__(self) -> None:
        self._domains: set[str] = set()

    def normalise(self, text: str) -> str:
        """The address in normal form; raises :class:`AddressError`."""
        local, at, domain = text.rpartition("@")
        if (
            at
            and domain in self._domains
            and len(local) <= _MAX_LOCAL
            and len(text) <= _MAX_ADDRESS
            and _PLAIN.fullmatch(local)
        ):
            return text
        try:
            # No SMTPUTF8: a local part beyond ASCII could not be delivered by
            # cadence's SMTP or written in a header; an international domain
            # is kept in its ASCII (punycode) form, which both take.
            result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as error:
            raise AddressError(str(error)) from None
        normalised = str(result.ascii_email or result.normalized)
        if _PLAIN.fullmatch(result.local_part) and _PLAIN_DOMAIN.fullmatch(result.domain):
            self._domains.add(result.domain)  # plain ASCII: its normal form is itself
        return normalised


# Unicode's categories Cc (C0 and C1 controls), Zl (U+2028) and Zp (U+2029),
# spelled out: one regex search instead of a category lookup per character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    """Line breaks of every kind (U+2028 too), NUL, escape and the other C0/C1
    control characters: nothing a header may hold."""
    return _CONTROL.search(text) is not None


def header_problem(text: str) -> str | None:
    """Why ``text`` cannot go into a mail header as it is, or ``None``.
    Besides line breaks: an RFC 2047 encoded word (``=?utf-8?q?=0A…?=``),
    which Python's email package and mail readers decode, line breaks and all."""
    if has_control(text):
        return "a line break or control character"
    if "=?" in text:
        return "an encoded word (=?…?=), which mail programs would decode"
    return None


def sender_address(name: str, email: str) -> Address:
    """The From address; raises :class:`AddressError` for a name or address
    that cannot be put in a header as it is (run-wide settings are checked
    before any send is claimed)."""
    problem = header_problem(name)
    if problem is not None:
        raise AddressError(f"the sender name {name!r} holds {problem}")
    if has_control(email) or any(char.isspace() for char in email):
        raise AddressError(f"the sender address {email!r} holds a space or control character")
    try:
        address = Address(display_name=name, addr_spec=email)
    except (HeaderParseError, ValueError, IndexError) as error:
        raise AddressError(f"the sender address {email!r} is not an address: {error}") from None
    if not address.username or not address.domain:
        raise AddressError(f"the sender address {email!r} is not an address: write NAME@DOMAIN")
    return address
