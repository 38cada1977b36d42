"""The application layer (cadence.service) on SQLite and PostgreSQL: what the
CLI, the HTTP API and the pages all call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cadence.runtime.engine import Engine, EngineError, NotFound
from cadence.runtime.planner import PlanError
from cadence.service import Application
from cadence.service.application import CampaignInvalid
from cadence.service.credentials import (
    CredentialError,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from tests.conftest import EXAMPLES

T0 = dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)  # Monday 08:00 in New York
SOURCE = (EXAMPLES / "q1-outbound.campaign").read_text()
TEMPLATES = {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()}
ADA = {"email": "ada@example.com", "first_name": "Ada", "company": "Acme", "phone": "555"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def app(engine: Engine) -> Iterator[tuple[Application, Clock]]:
    clock = Clock()
    yield Application(engine, clock), clock


def _added(app: Application) -> str:
    added = app.add_campaign(SOURCE, "q1.campaign", TEMPLATES)
    return added.identity


def test_a_campaign_sent_with_its_templates_is_kept_once_per_behaviour(
    app: tuple[Application, Clock],
) -> None:
    application, _ = app
    first = application.add_campaign(SOURCE, "q1.campaign", TEMPLATES)
    again = application.add_campaign(SOURCE + "\n# a comment\n", "q1.campaign", TEMPLATES)
    assert (first.version, again.version) == (1, 1) and first.key == again.key
    changed = application.add_campaign(SOURCE.replace("09:30", "10:30"), "q1.campaign", TEMPLATES)
    assert changed.version == 2
    [overview] = application.campaigns()
    assert [v.version for v in overview.versions] == [1, 2] or [
        v.version for v in overview.versions
    ] == [2, 1]
    assert application.campaign("Q1 Outbound - VP Engineering").id == first.identity


def test_a_campaign_with_errors_is_refused_with_its_diagnostics(
    app: tuple[Application, Clock],
) -> None:
    application, _ = app
    with pytest.raises(CampaignInvalid, match="1 error") as raised:
        application.add_campaign(SOURCE, "q1.campaign", {})  # its template is missing
    [found] = raised.value.diagnostics
    assert found["code"] == "C020" and found["file"] == "q1.campaign"
    assert application.campaigns() == []
    checked = application.check(SOURCE, "q1.campaign", TEMPLATES)
    assert checked.ok and checked.name == "Q1 Outbound - VP Engineering"


def test_enrolling_keeps_bad_rows_as_problems_and_a_retry_enrolls_nobody_twice(
    app: tuple[Application, Clock],
) -> None:
    application, _ = app
    campaign = _added(application)
    people: list[Any] = [ADA, {"email": "nope"}]
    done = application.enroll(campaign, people, start="2026-01-05T09:00", at={"breakup": "10:15"})
    assert (done.enrolled, done.already, len(done.problems)) == (1, 0, 1)
    assert "not an email address" in done.problems[0].message
    again = application.enroll(campaign, [ADA], start="2026-01-05T09:00")
    assert (again.enrolled, again.already) == (0, 1)
    status = application.status("ADA@example.com")
    [enrollment] = status.enrollments
    assert enrollment.state == "active"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"start": "monday"}, PlanError, "start 'monday' is not an ISO 8601 time"),
        ({"start": "2026-01-05T09:00", "at": {"nope": "10:00"}}, PlanError, "no step `nope`"),
        ({"start": "2026-01-05T09:00", "campaign": "unknown"}, NotFound, "no campaign matches"),
    ],
)
def test_a_bad_enroll_says_why_and_enrolls_nobody(
    app: tuple[Application, Clock], arguments: dict[str, Any], error: type, message: str
) -> None:
    application, _ = app
    arguments = dict(arguments)  # each database gets the case as written
    campaign = arguments.pop("campaign", None) or _added(application)
    with pytest.raises(error, match=message):
        application.enroll(campaign, [ADA], **arguments)
    with pytest.raises(NotFound):
        application.status("ada@example.com")


def test_tasks_come_prefilled_and_a_sent_task_keeps_the_edits(
    app: tuple[Application, Clock],
) -> None:
    application, clock = app
    campaign = _added(application)
    application.enroll(campaign, [ADA], start="2026-01-05T09:00")
    calls = application.tasks(kind="call", campaign=campaign)
    [call] = calls
    assert (call.name, call.company, call.phone) == ("Ada", "Acme", "555")
    assert call.notes == "Ask about Acme hiring plans"
    assert application.tasks(kind="email_task") == []  # waits behind the call and the others
    application.complete_task(call.id)
    while others := [t for t in application.tasks() if t.kind != "email_task"]:
        application.skip_task(others[0].id)  # each in turn: the next waits for it
    [email] = application.tasks(kind="email_task")
    assert email.to == "ada@example.com" and email.subject == "One more idea for Acme"
    clock.now = T0 + dt.timedelta(days=10)
    application.send_task(email.id, body="Edited by hand")
    assert application.tasks() == []
    with pytest.raises(NotFound, match=f"no open task {email.id}"):
        application.task(email.id)
    with pytest.raises(EngineError, match="already sent"):
        application.send_task(email.id)
    events = [item.event for item in application.feed()]
    assert "task_closed" in events and events[0] == "enrolled"


def test_tasks_page_with_limit_and_offset(app: tuple[Application, Clock]) -> None:
    application, _ = app
    campaign = _added(application)
    people = [{**ADA, "email": f"p{n}@example.com"} for n in range(5)]
    application.enroll(campaign, people, start="2026-01-05T09:00")
    every = [t.id for t in application.tasks(kind="call")]
    assert len(every) == 5
    pages = [t.id for o in (0, 2, 4) for t in application.tasks(kind="call", limit=2, offset=o)]
    assert pages == every


def test_people_pause_resume_and_remove(app: tuple[Application, Clock]) -> None:
    application, clock = app
    campaign = _added(application)
    application.enroll(campaign, [ADA], start="2026-01-05T09:00")
    assert application.pause("ada@example.com", reason="on leave") == 1
    assert application.status("ada@example.com").enrollments[0].state == "paused"
    clock.now += dt.timedelta(hours=1)
    assert application.resume("ada@example.com") == 1
    application.remove("ada@example.com", campaign=campaign)
    with pytest.raises(EngineError, match="not active"):
        application.remove("ada@example.com")


def test_suppressing_ends_the_person_everywhere(app: tuple[Application, Clock]) -> None:
    application, _ = app
    campaign = _added(application)
    application.enroll(campaign, [ADA], start="2026-01-05T09:00")
    report = application.suppress(["Ada@Example.com", "not an address"], source="api:test")
    assert (report.added, report.ended, len(report.problems)) == (1, 1, 1)
    assert [s.email for s in application.suppressions()] == ["ada@example.com"]
    assert application.unsuppress(["ada@example.com"]) == 1


def test_tokens_are_kept_hashed_shown_once_and_refused_once_revoked(engine: Engine) -> None:
    store = engine.store
    token, info = create_token(store, "crm", read_only=True, now=T0)
    assert token.startswith("cad_") and info.prefix == token[:12] and info.read_only
    with store.read() as connection:
        dumped = " ".join(
            str(row) for row in connection.exec_driver_sql("SELECT * FROM api_tokens")
        )
    assert token not in dumped
    who = verify_token(store, token, T0)
    assert who is not None and (who.name, who.read_only, who.key) == (
        "crm",
        True,
        f"token:{info.id}",
    )
    assert verify_token(store, token + "x", T0) is None
    assert verify_token(store, "Bearer " + token, T0) is None
    with pytest.raises(CredentialError, match="exists"):
        create_token(store, "crm", read_only=False, now=T0)
    revoke_token(store, "crm", T0)
    assert verify_token(store, token, T0) is None
    [listed] = list_tokens(store)
    assert listed.revoked_at is not None and listed.last_used_at == T0
    create_token(store, "crm", read_only=False, now=T0)  # the name is free again


@pytest.mark.parametrize("name", ["", " ", "x" * 101, "tab\there"])
def test_a_token_needs_a_printable_name(engine: Engine, name: str) -> None:
    with pytest.raises(CredentialError, match="printable"):
        create_token(engine.store, name, read_only=False, now=T0)


def test_the_application_opens_a_database_by_its_name(tmp_path: Path) -> None:
    application = Application.open(str(tmp_path / "x.db"), lambda: T0)
    try:
        assert application.campaigns() == []
    finally:
        application.close()


def test_one_campaign_is_counted_as_in_the_list_of_all(app: tuple[Application, Clock]) -> None:
    application, _ = app
    first = _added(application)
    application.add_campaign(SOURCE.replace("09:30", "10:30"), "q1.campaign", TEMPLATES)
    other = application.add_campaign(
        SOURCE.replace('campaign "Q1 Outbound', 'campaign "Other'), "o.campaign", TEMPLATES
    ).identity
    application.enroll(first, [ADA], start="2026-01-05T09:00")
    application.enroll(other, [ADA, {**ADA, "email": "bo@example.com"}], start="2026-01-05T09:00")
    every = {overview.id: overview for overview in application.campaigns()}
    assert len(every) == 2
    for identity in every:
        assert application.campaign(identity) == every[identity]
    assert [v.active for v in application.campaign(first).versions] == [0, 1]


def test_a_follow_up_email_task_is_prefilled_with_its_threads_subject(
    app: tuple[Application, Clock],
) -> None:
    application, _ = app
    source = """campaign "F" {
  day 1 { email intro { send choose subject "Hi {{ first_name }}" body "Hello" } }
  day 2 { email nudge { send task follow up body "Nudge" } }
}"""
    campaign = application.add_campaign(source, "f.campaign").identity
    application.enroll(campaign, [ADA], start="2026-01-05T14:00")
    [task] = application.tasks()
    assert (task.subject, task.body) == ("Re: Hi Ada", "Nudge")
