"""`cadence serve` on a real socket: uvicorn on loopback, a real HTTP client.
What only a live server shows: the feed's event stream as entries happen,
and a reconnect with Last-Event-ID that misses nothing."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn

from cadence.runtime.engine import Engine
from cadence.server import create_app
from cadence.service import Application
from cadence.service.credentials import create_token
from tests.conftest import EXAMPLES

T0 = dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)
CAMPAIGN = {
    "source": (EXAMPLES / "q1-outbound.campaign").read_text(),
    "name": "q1.campaign",
    "templates": {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()},
}
WAIT = 20.0  # seconds a step may take before the test gives up (never reached when it works)


class Live:
    def __init__(self, engine: Engine) -> None:
        self.application = Application(engine, lambda: T0)
        app = self.app = create_app(self.application, feed_poll=0.02, stream_recheck=0.05)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        token, _ = create_token(engine.store, "crm", read_only=False, now=T0)
        self.headers = {"Authorization": f"Bearer {token}"}
        reader, _ = create_token(engine.store, "wallboard", read_only=True, now=T0)
        self.reader = {"Authorization": f"Bearer {reader}"}

    def __enter__(self) -> Live:
        self.thread.start()
        started = threading.Event()
        while not self.server.started:
            started.wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=self.headers, timeout=WAIT)


@pytest.fixture
def live(engine: Engine) -> Iterator[Live]:
    with Live(engine) as running:
        yield running


def _events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a stream, as id, event and data."""
    found: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if event:
                found.append(event)
                event = {}
            if len(found) == count:
                return found
            continue
        field, _, value = line.partition(": ")
        event[field] = json.loads(value) if field == "data" else value
    raise AssertionError(f"the stream ended after {found}")


def test_the_feed_streams_entries_as_they_happen_and_resumes_after_the_last_seen(
    live: Live,
) -> None:
    added = live.post("/api/v1/campaigns", CAMPAIGN).json()
    path = f"/api/v1/campaigns/{added['identity']}/enrollments"
    people = [{"email": f"p{n}@example.com", "first_name": "P", "company": "C"} for n in range(3)]
    per_person = 8  # `enrolled`, then a `queued` or `task_opened` for each of its 7 steps
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=WAIT) as client:
        with client.stream("GET", "/api/v1/feed/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            live.post(path, {"people": people[:2], "start": "2026-01-05T09:00"})
            first = _events(stream.iter_lines(), 2 * per_person)
        assert {e["event"] for e in first} == {"feed"}
        assert [e["data"]["person"] for e in first if e["data"]["event"] == "enrolled"] == [
            "p0@example.com",
            "p1@example.com",
        ]
        # Away a moment: one more enrolls; back with the last id seen.
        live.post(path, {"people": people[2:], "start": "2026-01-05T09:00"})
        resume = {"Last-Event-ID": first[-1]["id"]}
        with client.stream("GET", "/api/v1/feed/stream", headers=resume) as stream:
            missed = _events(stream.iter_lines(), per_person)
        assert {e["data"]["person"] for e in missed} == {"p2@example.com"}
        assert int(missed[0]["id"]) == int(first[-1]["id"]) + 1


def test_the_stream_needs_a_token_and_a_read_only_one_may_watch(live: Live) -> None:
    answer = httpx.get(live.url + "/api/v1/feed/stream", timeout=WAIT)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    with httpx.stream(
        "GET", live.url + "/api/v1/feed/stream", headers=live.reader, timeout=WAIT
    ) as stream:
        assert stream.status_code == 200


def test_a_stream_ends_when_its_token_is_revoked(live: Live, engine: Engine) -> None:
    from cadence.service.credentials import revoke_token

    with httpx.stream(
        "GET", live.url + "/api/v1/feed/stream", headers=live.reader, timeout=WAIT
    ) as stream:
        assert stream.status_code == 200
        revoke_token(engine.store, "wallboard", T0)
        live.app.state.believed.clear()  # as if the few seconds a token is believed had passed
        assert list(stream.iter_lines()) in ([], [""], [": still here", ""])  # it ends
