"""`cadence serve`'s HTTP API, through a real client (httpx, FastAPI's test
client) against the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cadence.runtime.engine import Engine
from cadence.server import create_app
from cadence.service import Application
from cadence.service.credentials import create_token
from tests.conftest import EXAMPLES, ROOT

T0 = dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)
SOURCE = (EXAMPLES / "q1-outbound.campaign").read_text()
TEMPLATES = {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()}
CAMPAIGN = {"source": SOURCE, "name": "q1.campaign", "templates": TEMPLATES}
ADA = {"email": "ada@example.com", "first_name": "Ada", "company": "Acme"}
PROBLEM = "application/problem+json"


class Server:
    def __init__(self, engine: Engine) -> None:
        self.application = Application(engine, lambda: T0)
        self.app = create_app(self.application, max_body=64 * 1024)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        store = engine.store
        self.writer, _ = create_token(store, "crm", read_only=False, now=T0)
        self.reader, _ = create_token(store, "dashboard", read_only=True, now=T0)

    def call(self, method: str, path: str, token: str | None = "writer", **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {getattr(self, token, token)}"
        return self.client.request(method, path, headers=headers, **kw)

    def campaign(self) -> str:
        answer = self.call("POST", "/api/v1/campaigns", json=CAMPAIGN)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["identity"])


@pytest.fixture
def server(engine: Engine) -> Iterator[Server]:
    yield Server(engine)


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"].startswith("urn:cadence:problem:")
    assert body["request_id"] == answer.headers["x-request-id"]
    return body


def test_a_campaign_goes_in_people_are_enrolled_and_their_tasks_worked(server: Server) -> None:
    campaign = server.campaign()
    answer = server.call(
        "POST",
        f"/api/v1/campaigns/{campaign}/enrollments",
        json={"people": [ADA, {"email": "bad"}], "start": "2026-01-05T09:00"},
    )
    assert answer.status_code == 201, answer.text
    done = answer.json()
    assert (done["enrolled"], len(done["problems"])) == (1, 1)
    assert done["problems"][0]["line"] == 2
    [call] = server.call("GET", "/api/v1/tasks", params={"kind": "call"}).json()
    assert call["notes"] == "Ask about Acme hiring plans" and call["company"] == "Acme"
    assert server.call("GET", f"/api/v1/tasks/{call['id']}").json() == call
    assert server.call("POST", f"/api/v1/tasks/{call['id']}/complete").status_code == 204
    status = server.call("GET", "/api/v1/people/ada@example.com").json()
    assert status["enrollments"][0]["state"] == "active"
    page = server.call("GET", "/api/v1/feed", params={"limit": 2}).json()
    assert page["items"][0]["event"] == "enrolled"
    rest = server.call("GET", "/api/v1/feed", params={"after": page["next_after"]}).json()
    assert "task_closed" in [item["event"] for item in rest["items"]]


def test_an_enroll_as_csv_takes_its_start_from_the_query(server: Server) -> None:
    campaign = server.campaign()
    csv = "email,first_name,company\nada@example.com,Ada,Acme\nbob@example.com,Bob,\n"
    answer = server.call(
        "POST",
        f"/api/v1/campaigns/{campaign}/enrollments",
        params={"start": "2026-01-05T09:00", "at": "breakup=10:15"},
        content=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    done = answer.json()
    assert done["enrolled"] == 1
    assert [(p["line"], p["message"]) for p in done["problems"]] == [(3, "missing field `company`")]


def test_a_csv_line_that_is_not_utf8_is_a_row_problem(server: Server) -> None:
    campaign = server.campaign()
    csv = b"email,first_name,company\nada@example.com,Ada,Acme\nbob@example.com,B\xe9b,X\n"
    answer = server.call(
        "POST",
        f"/api/v1/campaigns/{campaign}/enrollments",
        params={"start": "2026-01-05T09:00"},
        content=csv,
        headers={"Content-Type": "text/csv"},
    )
    done = answer.json()
    assert done["enrolled"] == 1 and done["problems"][0]["line"] == 3
    assert "UTF-8" in done["problems"][0]["message"]


def test_a_retried_enroll_with_its_idempotency_key_gets_the_first_answer(server: Server) -> None:
    campaign = server.campaign()
    body = {"people": [ADA], "start": "2026-01-05T09:00"}
    path = f"/api/v1/campaigns/{campaign}/enrollments"
    first = server.call("POST", path, json=body, headers={"Idempotency-Key": "k1"})
    again = server.call("POST", path, json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.json()["enrolled"] == 1
    assert again.headers["idempotent-replayed"] == "true"
    other = server.call(
        "POST", path, json={**body, "start": "now"}, headers={"Idempotency-Key": "k1"}
    )
    assert _problem(other, 422)["type"] == "urn:cadence:problem:idempotency-key-reused"
    # Without the key, the engine itself never enrolls a person twice either.
    plain = server.call("POST", path, json=body)
    assert (plain.json()["enrolled"], plain.json()["already"]) == (0, 1)


def test_a_failed_request_does_not_keep_its_idempotency_key(server: Server) -> None:
    path = "/api/v1/campaigns"
    broken = {**CAMPAIGN, "templates": {}}
    first = server.call("POST", path, json=broken, headers={"Idempotency-Key": "k2"})
    assert _problem(first, 422)["type"] == "urn:cadence:problem:campaign-invalid"
    assert first.json()["diagnostics"][0]["code"] == "C020"
    fixed = server.call("POST", path, json=broken, headers={"Idempotency-Key": "k2"})
    assert fixed.status_code == 422  # run again, not replayed
    assert "idempotent-replayed" not in fixed.headers


ROUTES = [
    ("GET", "/api/v1/campaigns"),
    ("POST", "/api/v1/campaigns"),
    ("POST", "/api/v1/campaigns/check"),
    ("GET", "/api/v1/campaigns/{campaign}"),
    ("POST", "/api/v1/campaigns/{campaign}/enrollments"),
    ("GET", "/api/v1/people/{person}"),
    ("POST", "/api/v1/people/{person}/pause"),
    ("POST", "/api/v1/people/{person}/resume"),
    ("POST", "/api/v1/people/{person}/remove"),
    ("POST", "/api/v1/events"),
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/{task_id}"),
    ("POST", "/api/v1/tasks/{task_id}/send"),
    ("POST", "/api/v1/tasks/{task_id}/schedule"),
    ("POST", "/api/v1/tasks/{task_id}/complete"),
    ("POST", "/api/v1/tasks/{task_id}/skip"),
    ("GET", "/api/v1/feed"),
    ("GET", "/api/v1/feed/stream"),
    ("GET", "/api/v1/suppressions"),
    ("POST", "/api/v1/suppressions"),
    ("DELETE", "/api/v1/suppressions/{email}"),
]
EXAMPLE_PARAMETERS = {
    "campaign": "x",
    "person": "a@example.com",
    "task_id": "1",
    "email": "a@example.com",
}


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_a_token_and_a_read_only_one_changes_nothing(
    server: Server, method: str, route: str
) -> None:
    path = route.format(**EXAMPLE_PARAMETERS)
    for token in (None, "cad_not-a-token", "Bearer-less"):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if token == "Bearer-less":
            headers = {"Authorization": server.writer}
        answer = server.call(method, path, token=None, headers=headers, json={})
        assert _problem(answer, 401)["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    if path.endswith("/stream"):
        return  # it would stream for ever: a reader's stream is in test_server_live.py
    answer = server.call(method, path, token="reader", json={})
    if method == "GET":
        assert answer.status_code in (200, 404), answer.text
    else:
        assert "read-only" in _problem(answer, 403)["detail"]


def test_every_route_is_in_the_openapi_document(server: Server) -> None:
    document = server.call("GET", "/api/v1/openapi.json", token=None).json()
    routes = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert routes == set(ROUTES)  # and so each is in the authorization test above
    assert server.call("GET", "/docs", token=None).status_code == 404  # no CDN-hosted explorer


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "kind"),
    [
        (
            "POST",
            "/api/v1/campaigns",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed-json",
        ),
        ("POST", "/api/v1/campaigns", {"json": {"source": 5}}, 422, "invalid-input"),
        (
            "POST",
            "/api/v1/campaigns/x/enrollments",
            {"content": b"a,b", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported-media-type",
        ),
        (
            "POST",
            "/api/v1/campaigns/nope/enrollments",
            {"json": {"people": [], "start": "now"}},
            404,
            "not-found",
        ),
        (
            "POST",
            "/api/v1/campaigns/x/enrollments",
            {"content": b"{oops", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed-json",
        ),
        (
            "POST",
            "/api/v1/campaigns/x/enrollments",
            {"json": {"people": "ada"}},
            422,
            "invalid-input",
        ),
        ("GET", "/api/v1/tasks/999", {}, 404, "not-found"),
        ("GET", "/api/v1/tasks/99999999999999999999", {}, 422, "invalid-input"),
        ("POST", "/api/v1/tasks/99999999999999999999/skip", {}, 422, "invalid-input"),
        ("GET", "/api/v1/feed", {"params": {"after": 2**70}}, 422, "invalid-input"),
        ("GET", "/api/v1/feed", {"params": {"after": 2**31}}, 422, "invalid-input"),
        ("GET", "/api/v1/tasks", {"params": {"offset": 2**70}}, 422, "invalid-input"),
        ("POST", "/api/v1/tasks/999/complete", {}, 404, "not-found"),
        ("POST", "/api/v1/tasks/999/schedule", {"json": {"at": "soon"}}, 422, "invalid-input"),
        ("POST", "/api/v1/tasks/999/schedule", {"json": {}}, 404, "not-found"),
        ("GET", "/api/v1/tasks", {"params": {"limit": 100000}}, 422, "invalid-input"),
        ("GET", "/api/v1/people/nobody@example.com", {}, 404, "not-found"),
        (
            "POST",
            "/api/v1/events",
            {"json": {"type": "reply", "person": "nobody@example.com"}},
            409,
            "refused",
        ),
        (
            "POST",
            "/api/v1/events",
            {"json": {"type": "explode", "person": "a@b.c"}},
            422,
            "invalid-input",
        ),
        ("GET", "/api/v1/nothing-here", {}, 404, "not-found"),
        (
            "POST",
            "/api/v1/campaigns/check",
            {"content": b"x" * (65 * 1024), "headers": {"Content-Type": "application/json"}},
            413,
            "too-large",
        ),
        (
            "POST",
            "/api/v1/campaigns",
            {"json": CAMPAIGN, "headers": {"Idempotency-Key": "k" * 256}},
            400,
            "bad-idempotency-key",
        ),
    ],
)
def test_bad_requests_are_problems_and_change_nothing(
    server: Server, method: str, path: str, kw: dict[str, Any], status: int, kind: str
) -> None:
    answer = server.call(method, path, **kw)
    assert _problem(answer, status)["type"] == f"urn:cadence:problem:{kind}"
    assert server.application.campaigns() == []
    assert server.application.feed() == []


def test_a_body_without_a_length_is_counted_as_it_arrives(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    answer = server.call(
        "POST",
        "/api/v1/campaigns/check",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert _problem(answer, 413)["detail"].startswith("the body is larger than 65536 bytes")


def test_a_server_error_answers_with_the_request_id_only(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("secret internals")

    server.application.campaigns = broken  # type: ignore[method-assign]
    answer = server.call("GET", "/api/v1/campaigns")
    body = _problem(answer, 500)
    assert "secret" not in answer.text and body["request_id"] in body["detail"]
    assert body["request_id"] in caplog.text and "secret internals" in caplog.text


def test_events_suppressions_and_people(server: Server) -> None:
    campaign = server.campaign()
    server.call(
        "POST", f"/api/v1/campaigns/{campaign}/enrollments",
        json={"people": [ADA, {**ADA, "email": "bob@example.com"}], "start": "2026-01-05T09:00"},
    )  # fmt: skip
    paused = server.call(
        "POST", "/api/v1/people/bob@example.com/pause", json={"until": "2026-02-01"}
    )
    assert paused.json() == {"count": 1}
    assert server.call("POST", "/api/v1/people/bob@example.com/resume", json={}).json() == {
        "count": 1
    }
    assert server.call("POST", "/api/v1/people/bob@example.com/remove", json={}).status_code == 204
    event = {"type": "unsubscribe", "person": "ada@example.com"}
    key = {"Idempotency-Key": "unsub-1"}
    reached = server.call("POST", "/api/v1/events", json=event, headers=key)
    assert reached.json() == {"count": 1}
    retried = server.call("POST", "/api/v1/events", json=event, headers=key)
    assert retried.json() == {"count": 1} and retried.headers["idempotent-replayed"] == "true"
    [entry] = server.call("GET", "/api/v1/suppressions").json()
    assert (entry["email"], entry["reason"], entry["source"]) == (
        "ada@example.com",
        "unsubscribed",
        "api:crm",
    )
    added = server.call(
        "POST", "/api/v1/suppressions", json={"emails": ["x@example.com", "nope"]}
    ).json()
    assert (added["added"], len(added["problems"])) == (1, 1)
    assert server.call("DELETE", "/api/v1/suppressions/x@example.com").json() == {"count": 1}


def _email_task_of_ada(server: Server) -> dict[str, Any]:
    """Ada enrolled, her tasks before her email task skipped: that task."""
    campaign = server.campaign()
    server.call(
        "POST", f"/api/v1/campaigns/{campaign}/enrollments",
        json={"people": [ADA], "start": "2026-01-05T09:00"},
    )  # fmt: skip
    while others := [
        t for t in server.call("GET", "/api/v1/tasks").json() if t["kind"] != "email_task"
    ]:
        assert server.call("POST", f"/api/v1/tasks/{others[0]['id']}/skip").status_code == 204
    [email] = server.call("GET", "/api/v1/tasks", params={"kind": "email_task"}).json()
    return dict(email)


def test_an_email_task_is_sent_with_the_edits(server: Server) -> None:
    email = _email_task_of_ada(server)
    assert email["subject"] == "One more idea for Acme"
    sent = server.call("POST", f"/api/v1/tasks/{email['id']}/send", json={"body": "By hand"})
    assert sent.status_code == 204
    again = server.call("POST", f"/api/v1/tasks/{email['id']}/send", json={})
    assert "already sent" in _problem(again, 409)["detail"]
    history = server.call("GET", "/api/v1/people/ada@example.com").json()["enrollments"][0][
        "history"
    ]
    assert any(step["step"] == "personal" and step["status"] == "sent" for step in history)
    assert json.dumps(history)  # plain JSON all the way down


def test_an_email_task_is_scheduled_for_cadence_to_send(server: Server) -> None:
    email = _email_task_of_ada(server)
    assert email["zone"] == "America/New_York"
    path = f"/api/v1/tasks/{email['id']}/schedule"
    far = server.call("POST", path, json={"at": "2031-01-01T09:00:00Z"})
    assert "at most 366 days ahead" in _problem(far, 409)["detail"]
    answer = server.call("POST", path, json={"body": "Edited", "at": "2026-01-20T08:30:00"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": email["id"], "at": "2026-01-20T13:30:00Z"}
    again = server.call("POST", path, json={})
    assert "scheduled already" in _problem(again, 409)["detail"]
    assert server.call("GET", "/api/v1/tasks", params={"kind": "email_task"}).json() == []
    said = [i["message"] for i in server.call("GET", "/api/v1/feed").json()["items"]]
    assert "email task `personal` goes at 2026-01-20 08:30 EST" in said


def test_the_routes_in_the_docs_are_written_from_the_openapi_document() -> None:
    script = ROOT / "tools" / "http_reference.py"
    spec = importlib.util.spec_from_file_location("http_reference", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "serve.md").read_text(encoding="utf-8")
    assert text == module.written(text), "run: python tools/http_reference.py"


def test_an_idempotency_key_is_forgotten_after_a_day(engine: Engine) -> None:
    from cadence.server.idempotency import _claim, _keep

    store = engine.store
    assert _claim(store, "token:1", "k", "first request", T0) is None
    _keep(store, "token:1", "k", 201, b"{}")
    assert _claim(store, "token:1", "k", "first request", T0) == (201, b"{}")
    later = T0 + dt.timedelta(hours=25)
    assert _claim(store, "token:1", "k", "another request", later) is None  # free again


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/people/a%00b@example.com", None),
        ("GET", "/api/v1/tasks?person=a%00b", None),
        ("POST", "/api/v1/events", {"type": "bounce", "person": "a\u0000@example.com"}),
        ("DELETE", "/api/v1/suppressions/a%00b@example.com", None),
    ],
)
def test_a_nul_in_a_text_is_refused_not_a_server_error(
    server: Server, method: str, path: str, body: Any
) -> None:
    answer = server.call(method, path, json=body) if body else server.call(method, path)
    assert answer.status_code < 500, answer.text  # PostgreSQL refuses NUL; SQLite takes it
    assert server.application.suppressions() == []


def test_a_stale_claim_of_an_idempotency_key_is_taken_over(engine: Engine) -> None:
    from cadence.server.idempotency import STALE, _claim
    from cadence.server.problems import Problem

    store = engine.store
    assert _claim(store, "token:1", "k", "r", T0) is None  # the first request died at work
    with pytest.raises(Problem, match="still at work"):
        _claim(store, "token:1", "k", "r", T0 + STALE / 2)
    assert _claim(store, "token:1", "k", "r", T0 + STALE * 2) is None  # taken over once
    with pytest.raises(Problem, match="still at work"):
        _claim(store, "token:1", "k", "r", T0 + STALE * 2)


def test_an_enroll_run_again_skips_who_replied_unless_again(server: Server) -> None:
    campaign = server.campaign()
    path = f"/api/v1/campaigns/{campaign}/enrollments"
    body = {"people": [ADA], "start": "2026-01-05T09:00"}
    assert server.call("POST", path, json=body).json()["enrolled"] == 1
    reply = server.call("POST", "/api/v1/events", json={"type": "reply", "person": ADA["email"]})
    assert reply.status_code == 200, reply.text
    again = server.call("POST", path, json={**body, "start": "2026-01-12T09:00"}).json()
    assert again["enrolled"] == 0
    assert again["problems"][0]["message"] == (
        "`ada@example.com` replied on 2026-01-05: not enrolled again; `--again` enrolls them anew"
    )
    anew = server.call("POST", path, json={**body, "start": "2026-01-12T09:00", "again": True})
    assert anew.json()["enrolled"] == 1, anew.text
    states = [e["state"] for e in server.call("GET", "/api/v1/people/ada@example.com").json()
              ["enrollments"]]  # fmt: skip
    assert states == ["active", "ended"]
