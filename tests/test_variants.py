"""A/B (and n-way) variants of an email: who gets which (deterministic, in
proportion to the weights), what a plan says, what is sent and quoted."""

from __future__ import annotations

import collections
import datetime as dt
import email as mail
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest

from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign
from cadence.runtime import plan
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from cadence.runtime.planner import pick_variant
from cadence.runtime.store import Store
from cadence.service import Application
from tests.engine_db import database

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
SOURCE = """campaign "Variants" {
  timezone "UTC"
  requires first_name

  day 1 {
    email intro {
      send at 09:00
      subject "Hi {{ first_name }}"
      variant short weight 70 { body "Short note." }
      variant long weight 20 { subject "A longer idea" body "A longer note." }
      variant plain weight 10 { body "Plain note." }
    }
  }

  day 2 {
    email bump {
      send at 09:00
      follow up
      body "Bumping."
    }
  }

  day 3 {
    email personal {
      send task
      subject "Personal"
      variant warm weight 1 { body "Warm words for {{ first_name }}." }
      variant cool weight 1 { body "Cool words." }
    }
  }
}
"""


def compiled(source: str = SOURCE) -> Campaign:
    result = compile_source(source, "variants.campaign")
    assert result.ir is not None, result.diagnostics
    return result.ir


def test_the_split_follows_the_weights_over_100000_people() -> None:
    weights = [("short", 70), ("long", 20), ("plain", 10)]
    counts = collections.Counter(
        pick_variant("Variants", "intro", f"person{n}@example.com", weights) for n in range(100_000)
    )
    for name, weight in weights:
        share = weight / 100
        sigma = (100_000 * share * (1 - share)) ** 0.5
        assert abs(counts[name] - 100_000 * share) < 4 * sigma, counts


def test_a_person_gets_the_same_variant_on_every_plan_version_and_machine() -> None:
    weights = [("a", 50), ("b", 50)]
    # Pinned: the same on every machine and Python (sha256 of the names and address).
    assert [pick_variant("Q1", "intro", f"p{n}@example.com", weights) for n in range(8)] == [
        "a", "b", "b", "b", "a", "b", "b", "a",
    ]  # fmt: skip
    assert pick_variant("Q1", "intro", " P3@Example.COM ", weights) == pick_variant(
        "Q1", "intro", "p3@example.com", weights
    )
    people = [{"email": f"p{n}@example.com", "first_name": "P"} for n in range(200)]
    first = [a.variant for a in plan(compiled(), people, T0)]
    edited = compiled(SOURCE.replace('body "Bumping."', 'body "Bumping again."'))
    assert [a.variant for a in plan(edited, people, T0 + 3 * DAY)] == first


def test_plan_rows_carry_the_variant_and_follow_ups_quote_it() -> None:
    people = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(50)]
    rows = list(plan(compiled(), people, T0, render=True))
    intros = [a for a in rows if a.step == "intro"]
    assert {a.variant for a in intros} == {"short", "long", "plain"}
    assert all(a.variant is None for a in rows if a.step == "bump")
    for intro in intros:
        bump = next(a for a in rows if a.person == intro.person and a.step == "bump")
        body = {"short": "Short note.", "long": "A longer note.", "plain": "Plain note."}
        assert intro.body == body[intro.variant or ""]
        assert f"> {body[intro.variant or '']}" in (bump.body or "")
        expected = (
            "A longer idea" if intro.variant == "long" else f"Hi {intro.person[:-12].upper()}"
        )
        assert (intro.subject or "").lower() == expected.lower()
        assert bump.subject == f"Re: {intro.subject}"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as (url, options):
        made = Engine(Store.open(url, now=T0, **options))
        yield made
        made.close()


def test_the_engine_records_each_variant_and_sends_and_quotes_it(
    engine: Engine, tmp_path: Path
) -> None:
    people = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(12)]
    engine.enroll(compiled(), people, T0, now=T0)
    planned = {(a.person, a.step): a.variant for a in plan(compiled(), people, T0)}
    outbox = OutboxTransport(tmp_path / "outbox")
    dispatcher = Dispatcher(engine, outbox, Sender("Sam", "sam@example.com"))
    assert dispatcher.run_once(T0 + 2 * HOUR).sent == 12
    assert dispatcher.run_once(T0 + DAY + 2 * HOUR).sent == 12
    messages = [mail.message_from_bytes(p.read_bytes(), policy=mail.policy.default)
                for p in (tmp_path / "outbox").glob("*.eml")]  # fmt: skip
    texts = {"short": "Short note.", "long": "A longer note.", "plain": "Plain note."}
    for message in messages:
        person = str(message["To"])
        variant = planned[(person, "intro")]
        assert variant is not None
        body = message.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
        if str(message["Subject"]).startswith("Re: "):
            assert f"> {texts[variant]}" in body
        else:
            assert body.strip() == texts[variant]
    # The task of a test is prefilled with the person's variant.
    application = Application(engine, lambda: T0 + 2 * DAY)
    for task in application.tasks(kind="email_task"):
        variant = planned[(task.person, "personal")]
        assert task.variant == variant
        first = task.person.split("@")[0].upper()
        expected = f"Warm words for {first}." if variant == "warm" else "Cool words."
        assert (task.body or "").lower() == expected.lower()


def test_the_planners_quick_pick_is_pick_variant() -> None:
    from cadence.runtime.planner import Planner

    planner = Planner(compiled(), T0)
    for n in range(2000):
        email = f"Person{n}@Example.com "
        assert planner.variants_of(email) == (
            pick_variant("Variants", "intro", email, [("short", 70), ("long", 20), ("plain", 10)]),
            pick_variant("Variants", "personal", email, [("warm", 1), ("cool", 1)]),
        )


def test_a_variant_only_a_variants_subject_uses_is_checked_like_any_subject() -> None:
    source = SOURCE.replace('subject "A longer idea"', 'subject "An idea for {{ company }}"')
    people = [{"email": "p@example.com", "first_name": "P", "company": "X\r\nBcc: all"}]
    planned = plan(compiled(source), people, T0)
    assert list(planned) == [] and "company" in planned.problems[0].message


def test_a_follow_up_task_is_prefilled_with_the_subject_of_the_persons_variant(
    engine: Engine,
) -> None:
    # `personal` replies in the thread of `bump`, itself a reply to the tested `intro`.
    ir = compiled(SOURCE.replace('subject "Personal"', "follow up"))
    people = [{"email": f"p{n}@example.com", "first_name": "P"} for n in range(30)]
    engine.enroll(ir, people, T0, now=T0)
    weights = [("short", 70), ("long", 20), ("plain", 10)]
    application = Application(engine, lambda: T0 + 2 * DAY)
    tasks = application.tasks(kind="email_task", limit=100)
    got = {task.person: pick_variant("Variants", "intro", task.person, weights) for task in tasks}
    assert len(tasks) == 30 and "long" in got.values()
    for task in tasks:
        assert task.subject == ("Re: A longer idea" if got[task.person] == "long" else "Re: Hi P")


def test_a_move_that_renames_variants_still_quotes_and_threads_the_email_sent(
    engine: Engine, tmp_path: Path
) -> None:
    people = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(6)]
    engine.enroll(compiled(), people, T0, now=T0)
    outbox = OutboxTransport(tmp_path / "outbox")
    dispatcher = Dispatcher(engine, outbox, Sender("Sam", "sam@example.com"))
    assert dispatcher.run_once(T0 + 2 * HOUR).sent == 6
    renamed = (
        SOURCE.replace("variant short", "variant brief")
        .replace("variant long", "variant lengthy")
        .replace("variant plain", "variant bare")
    )
    engine.enroll(compiled(renamed), [], T0, now=T0)
    from cadence.runtime.moving import move_people

    move_people(engine, "Variants", 2, T0 + 3 * HOUR)
    assert dispatcher.run_once(T0 + DAY + 2 * HOUR).sent == 6
    for path in (tmp_path / "outbox").glob("*.eml"):
        message = mail.message_from_bytes(path.read_bytes(), policy=mail.policy.default)
        assert str(message["Subject"]).strip() != "" and str(message["Subject"]) != "Re: "
        if str(message["Subject"]).startswith("Re: "):
            body = message.get_content()  # type: ignore[attr-defined]
            assert "> " in body and "note." in body


def test_a_follow_up_variant_without_a_subject_keeps_the_threads_not_another_variants() -> None:
    source = """campaign "Thread" {
  timezone "UTC"
  day 1 { email intro { send at 09:00 subject "Hello" body "Hi." } }
  day 2 {
    email bump {
      send at 09:00
      follow up
      variant own weight 1 { subject "A subject of its own" body "Own." }
      variant thread weight 1 { body "In the thread." }
    }
  }
}
"""
    people = [{"email": f"p{n}@example.com"} for n in range(40)]
    bumps = [a for a in plan(compiled(source), people, T0, render=True) if a.step == "bump"]
    assert {a.variant for a in bumps} == {"own", "thread"}
    for bump in bumps:
        expected = "A subject of its own" if bump.variant == "own" else "Re: Hello"
        assert bump.subject == expected


def test_renaming_a_campaign_that_keeps_its_id_keeps_everyones_variant() -> None:
    with_id = SOURCE.replace('campaign "Variants" {', 'campaign "Variants" {\n  id "variants-q1"')
    assert with_id != SOURCE
    people = [{"email": f"p{n}@example.com", "first_name": "P"} for n in range(2_000)]
    before = [a.variant for a in plan(compiled(with_id), people, T0)]
    renamed = with_id.replace('campaign "Variants"', 'campaign "Variants - renamed for Q2"')
    assert [a.variant for a in plan(compiled(renamed), people, T0)] == before
