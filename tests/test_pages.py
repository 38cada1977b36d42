"""The command center's pages through a real HTTP client: logging in, the
session cookie, CSRF on every form, and what each page shows and does."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cadence.runtime.engine import Engine
from cadence.server import create_app
from cadence.server.throttle import PER_NAME, WINDOW
from cadence.service import Application
from cadence.service.logins import add_user, disable_user
from tests.conftest import EXAMPLES

T0 = dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"


class Site:
    def __init__(self, engine: Engine) -> None:
        self.application = Application(engine, lambda: T0)
        self.client = TestClient(create_app(self.application), follow_redirects=False)
        add_user(engine.store, "sam", PASSWORD, T0)
        source = (EXAMPLES / "q1-outbound.campaign").read_text()
        templates = {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()}
        campaign = self.application.add_campaign(source, "q1.campaign", templates).identity
        ada = {
            "email": "ada@example.com",
            "first_name": "<script>alert(1)</script>",
            "company": "Acme",
        }
        self.application.enroll(campaign, [ada], start="2026-01-05T09:00")

    def log_in(self, password: str = PASSWORD, next: str = "/tasks") -> Any:
        page = self.client.get("/login", params={"next": next})
        csrf = _field(page.text, "csrf")
        return self.client.post(
            "/login", data={"name": "sam", "password": password, "csrf": csrf, "next": next}
        )

    def csrf(self) -> str:
        return _field(self.client.get("/tasks").text, "csrf")


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, html
    return found.group(1)


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    yield Site(engine)


def test_every_page_needs_a_login_and_comes_back_after_it(site: Site) -> None:
    for path in ("/tasks", "/tasks/1", "/feed", "/feed/stream", "/people?email=ada@example.com"):
        answer = site.client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    logged = site.log_in(next="/feed")
    assert logged.status_code == 303 and logged.headers["location"] == "/feed"
    cookie = logged.headers["set-cookie"]
    assert "cadence_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert site.client.get("/feed").status_code == 200


def test_a_wrong_password_or_a_forged_login_form_is_refused(site: Site) -> None:
    wrong = site.log_in(password="not the password")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    assert "cadence_session" not in wrong.headers.get("set-cookie", "")
    forged = site.client.post("/login", data={"name": "sam", "password": PASSWORD, "csrf": "x"})
    assert forged.status_code == 403


def test_guessing_a_password_is_refused_after_a_few_tries(site: Site) -> None:
    for _ in range(PER_NAME):
        assert site.log_in(password="guess").status_code == 401
    refused = site.log_in()  # even the right password, from here, for a while
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= WINDOW + 1
    assert "cadence_session" not in refused.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"]
)
def test_after_logging_in_a_visit_never_leaves_the_site(site: Site, target: str) -> None:
    assert site.log_in(next=target).headers["location"] == "/tasks"


def test_a_form_without_the_sessions_token_changes_nothing(site: Site) -> None:
    site.log_in()
    [call] = site.application.tasks(kind="call")
    for token in ("", "forged"):
        answer = site.client.post(f"/tasks/{call.id}/complete", data={"csrf": token})
        assert answer.status_code == 403
    assert [t.id for t in site.application.tasks(kind="call")] == [call.id]
    done = site.client.post(f"/tasks/{call.id}/complete", data={"csrf": site.csrf()})
    assert done.status_code == 303 and done.headers["location"] == "/tasks"
    assert site.application.tasks(kind="call") == []
    assert f"Task {call.id} done." in site.client.get("/tasks").text
    assert f"Task {call.id} done." not in site.client.get("/tasks").text  # said once


def test_a_link_cannot_make_a_page_say_what_it_likes(site: Site) -> None:
    site.log_in()
    for query in ("notice=Your+account+is+locked", "problem=Call+0900-SCAM"):
        page = site.client.get(f"/tasks?{query}").text
        assert "locked" not in page and "SCAM" not in page
    site.client.cookies.set("cadence_said", "not-base64-json!")
    assert site.client.get("/tasks").status_code == 200
    # A cookie planted by another site (a sibling domain, plain HTTP) is not signed.
    planted = base64.urlsafe_b64encode(json.dumps({"notice": "Call 0900-SCAM"}).encode())
    site.client.cookies.set("cadence_said", planted.decode() + ".00")
    assert "SCAM" not in site.client.get("/tasks").text
    site.client.cookies.set("cadence_said", base64.urlsafe_b64encode(b"[" * 3000).decode())
    assert site.client.get("/tasks").status_code == 200


def test_the_task_pages_show_what_to_do_and_escape_what_people_wrote(site: Site) -> None:
    site.log_in()
    listing = site.client.get("/tasks", params={"kind": "call"}).text
    assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;" in listing
    [call] = site.application.tasks(kind="call")
    page = site.client.get(f"/tasks/{call.id}").text
    assert "Ask about Acme hiring plans" in page and "Done" in page
    assert site.client.get("/tasks/999", follow_redirects=True).text.count("no open task 999") == 1


def _email_task(site: Site) -> Any:
    while others := [t for t in site.application.tasks() if t.kind != "email_task"]:
        site.application.skip_task(others[0].id)
    [email] = site.application.tasks(kind="email_task")
    return email


def _step(site: Site, step: str) -> Any:
    history = site.application.status("ada@example.com").enrollments[0].history
    [found] = [s for s in history if s.step == step]
    return found


def test_an_email_task_is_composed_prefilled_and_cadence_sends_the_edits_now(site: Site) -> None:
    site.log_in()
    email = _email_task(site)
    page = site.client.get(f"/tasks/{email.id}").text
    assert 'value="One more idea for Acme"' in page and 'id="to" value="ada@example.com"' in page
    assert "their time, America/New_York" in page
    sent = site.client.post(
        f"/tasks/{email.id}/send",
        data={"csrf": site.csrf(), "subject": "One more idea", "body": "Edited\r\nby hand",
              "action": "now"},
    )  # fmt: skip
    assert sent.status_code == 303 and sent.headers["location"] == "/tasks"
    assert f"Task {email.id} goes now." in site.client.get("/tasks").text
    # A send now, for the dispatcher: due at once, with the text as edited.
    [due] = site.application.engine.due(T0)
    assert due.step == "personal"
    assert _step(site, "personal").status == "pending"
    assert "email task `personal` goes now" in site.client.get("/feed").text


def test_an_email_task_scheduled_goes_at_the_recipients_time(site: Site) -> None:
    site.log_in()
    email = _email_task(site)
    scheduled = site.client.post(
        f"/tasks/{email.id}/send",
        data={"csrf": site.csrf(), "subject": "Later", "body": "b", "action": "schedule",
              "send_at": "2026-01-20T08:30"},
    )  # fmt: skip
    assert scheduled.status_code == 303
    # 08:30 in New York is 13:30 UTC.
    assert f"Task {email.id} goes at 2026-01-20 13:30 UTC." in site.client.get("/tasks").text
    goes = dt.datetime(2026, 1, 20, 13, 30, tzinfo=dt.UTC)
    engine = site.application.engine
    while earlier := engine.claim(goes - dt.timedelta(minutes=1)):  # what was due before it
        for send in earlier:
            assert send.step != "personal"
            engine.mark_sent(send, f"<{send.action_id}@example.com>", goes)
    assert [d.step for d in engine.due(goes)] == ["personal"]
    again = site.client.post(f"/tasks/{email.id}/send", data={"csrf": site.csrf(), "action": "now"})
    assert again.headers["location"] == f"/tasks/{email.id}"
    assert "scheduled already" in site.client.get(f"/tasks/{email.id}", follow_redirects=True).text


@pytest.mark.parametrize("send_at", ["", "tomorrow", "2026-13-01T10:00"])
def test_a_schedule_without_a_time_it_can_read_changes_nothing(site: Site, send_at: str) -> None:
    site.log_in()
    email = _email_task(site)
    answer = site.client.post(
        f"/tasks/{email.id}/send",
        data={"csrf": site.csrf(), "action": "schedule", "send_at": send_at},
    )
    assert answer.headers["location"] == f"/tasks/{email.id}"
    assert "Choose a day and time" in site.client.get(f"/tasks/{email.id}").text
    assert [t.id for t in site.application.tasks(kind="email_task")] == [email.id]


def test_an_email_task_sent_from_elsewhere_is_recorded_with_the_edits(site: Site) -> None:
    site.log_in()
    email = _email_task(site)
    sent = site.client.post(
        f"/tasks/{email.id}/send",
        data={"csrf": site.csrf(), "subject": "One more idea", "body": "Edited\r\nby hand",
              "action": "record"},
    )  # fmt: skip
    assert sent.status_code == 303
    assert _step(site, "personal").status == "sent"
    assert site.application.engine.due(T0) == []
    assert "task `personal` sent" in site.client.get("/feed").text


def test_logging_out_or_disabling_ends_the_session(site: Site, engine: Engine) -> None:
    site.log_in()
    assert site.client.post("/logout", data={"csrf": site.csrf()}).status_code == 303
    assert site.client.get("/tasks").status_code == 303
    site.log_in()
    disable_user(engine.store, "sam", T0)
    assert site.client.get("/tasks").status_code == 303
    assert site.log_in().status_code == 401


def test_pages_carry_headers_that_keep_the_browser_safe(site: Site) -> None:
    answer = site.client.get("/login")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert site.client.get("/static/cadence.css").status_code == 200


def test_the_person_page_is_their_timeline(site: Site) -> None:
    site.log_in()
    page = site.client.get("/people", params={"email": "ADA@example.com"}).text
    assert "Q1 Outbound - VP Engineering" in page and "day 8" in page
    # The InMail waits behind the call: tasks are done in order.
    assert "waits for task <code>ring</code>" in page
    unknown = site.client.get("/people", params={"email": "nobody@example.com"})
    assert unknown.status_code == 303 and unknown.headers["location"] == "/tasks"
    assert "never enrolled" in site.client.get("/tasks").text


def test_a_form_sent_after_the_session_ended_comes_back_to_its_page(site: Site) -> None:
    answer = site.client.post("/tasks/5/send", data={"csrf": "x", "body": "text"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/tasks/5"
    answer = site.client.post("/logout", data={"csrf": "x"})
    assert answer.headers["location"] == "/login?next=/tasks"
