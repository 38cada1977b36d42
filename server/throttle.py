"""Failed logins, counted so that guessing a password is slow: after
:data:`PER_NAME` failures for one name from one address, or :data:`PER_ADDRESS`
from one address for any names, within :data:`WINDOW`, further logins from
there are refused (429) until the oldest failure is that old — before any
password is checked, so a guesser costs no hashing either.

Each attempt counts as a failure from the moment it is made (a login that
succeeds then clears its name's count from that address): attempts sent all
at once cannot all pass before the first has failed.

Counted per address, not per name alone: a stranger who knows a name cannot
lock its owner out. An IPv6 address counts by its /64 network (one machine
is given a whole one). The address is the client's as uvicorn sees it: behind
a reverse proxy, the proxy must pass it on (docs/serve.md). Kept in the
serving process: with N workers, each counts its own.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable

WINDOW = 15 * 60.0  # seconds a failure counts
PER_NAME = 5  # failures for one name from one address
PER_ADDRESS = 20  # failures from one address, all names
KEPT = 10_000  # addresses and names remembered at most (the oldest are forgotten)


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def attempt(self, address: str, name: str) -> float:
        """A login for ``name`` from ``address``: 0 when it may go ahead (and
        it is counted as failed until :meth:`succeeded` says otherwise), else
        the seconds until one may."""
        address = _network(address)
        wait = self.wait(address, name)
        if wait == 0:
            self.failed(address, name)
        return wait

    def wait(self, address: str, name: str) -> float:
        """Seconds until a login for ``name`` from ``address`` is taken (0: now)."""
        address = _network(address)
        now = self.clock()
        waits = [
            self._wait((address, name.casefold()), PER_NAME, now),
            self._wait((address, ""), PER_ADDRESS, now),
        ]
        return max(waits)

    def failed(self, address: str, name: str) -> None:
        address = _network(address)
        now = self.clock()
        for key in ((address, name.casefold()), (address, "")):
            if key not in self._failures and len(self._failures) >= KEPT:
                del self._failures[next(iter(self._failures))]  # the oldest key first made
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, address: str, name: str) -> None:
        address = _network(address)
        self._failures.pop((address, name.casefold()), None)
        everyone = self._failures.get((address, ""))
        if everyone:
            everyone.pop()  # this attempt was counted for the address too

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and now - failures[0] >= WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < limit:
            return 0.0
        return WINDOW - (now - failures[-limit])


def _network(address: str) -> str:
    """The address a count is kept for: an IPv6 address's /64 network."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address
