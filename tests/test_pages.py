"""The command center's pages through a real HTTP client: logging in, the
session cookie, CSRF on every form, and what each page shows and does."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cadence.runtime.engine import Engine
from cadence.server import create_app
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
    assert done.status_code == 303 and "notice=" in done.headers["location"]
    assert site.application.tasks(kind="call") == []


def test_the_task_pages_show_what_to_do_and_escape_what_people_wrote(site: Site) -> None:
    site.log_in()
    listing = site.client.get("/tasks", params={"kind": "call"}).text
    assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;" in listing
    [call] = site.application.tasks(kind="call")
    page = site.client.get(f"/tasks/{call.id}").text
    assert "Ask about Acme hiring plans" in page and "Done" in page
    assert site.client.get("/tasks/999", follow_redirects=True).text.count("no open task 999") == 1


def test_an_email_task_is_composed_prefilled_and_sent_with_the_edits(site: Site) -> None:
    site.log_in()
    while others := [t for t in site.application.tasks() if t.kind != "email_task"]:
        site.application.skip_task(others[0].id)
    [email] = site.application.tasks(kind="email_task")
    page = site.client.get(f"/tasks/{email.id}").text
    assert 'value="One more idea for Acme"' in page and 'id="to" value="ada@example.com"' in page
    sent = site.client.post(
        f"/tasks/{email.id}/send",
        data={"csrf": site.csrf(), "subject": "One more idea", "body": "Edited\r\nby hand"},
    )
    assert sent.status_code == 303
    history = site.application.status("ada@example.com").enrollments[0].history
    assert any(s.step == "personal" and s.status == "sent" for s in history)
    feed = site.client.get("/feed").text
    assert "task `personal` sent" in feed


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
    assert unknown.status_code == 303 and "never%20enrolled" in unknown.headers["location"]


def test_a_form_sent_after_the_session_ended_comes_back_to_its_page(site: Site) -> None:
    answer = site.client.post("/tasks/5/send", data={"csrf": "x", "body": "text"})
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/tasks/5"
    answer = site.client.post("/logout", data={"csrf": "x"})
    assert answer.headers["location"] == "/login?next=/tasks"
