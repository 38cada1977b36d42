"""`cadence report`: one HTML file that opens offline — the timeline, a plan's
volume, and the results so far per step and variant with the test of their
reply rates — loaded in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from tests.test_browser import _browser

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Report" {
  id "report-demo"
  timezone recipient else "Europe/Stockholm"
  send window 08:00-17:30

  day 1 {
    email intro {
      send at 09:00
      variant short weight 50 { subject "Quick question" body "Short." }
      variant long weight 50 { subject "An idea" body "A longer note." }
    }
  }

  day 3 {
    email bump { send with previous follow up body "Bumping." }
    call ring { notes "Call them" }
  }
}
"""


def run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return done.exit_code, done.stderr


def test_a_report_shows_the_timeline_the_plan_and_the_results(tmp_path: Path) -> None:
    campaign = tmp_path / "report.campaign"
    campaign.write_text(SOURCE, encoding="utf-8")
    people = tmp_path / "people.csv"
    zones = ["Europe/Stockholm", "America/New_York", "Asia/Tokyo"]
    people.write_text(
        "email,timezone\n" + "".join(f"p{n}@example.com,{zones[n % 3]}\n" for n in range(400))
    )
    db = str(tmp_path / "cadence.db")
    engine = Engine.open(db, now=T0)
    ir = compile_source(SOURCE, "report.campaign").ir
    assert ir is not None
    rows = [{"email": f"p{n}@example.com", "timezone": zones[n % 3]} for n in range(400)]
    engine.enroll(ir, rows, T0, now=T0)
    Dispatcher(
        engine, OutboxTransport(tmp_path / "outbox"), Sender("Sam", "s@example.com")
    ).run_once(T0 + dt.timedelta(days=1))
    # The long variant gets many more replies.
    with engine.store.read() as connection:
        from sqlalchemy import select

        from cadence.runtime.schema import actions, enrollments

        got = dict(
            connection.execute(
                select(enrollments.c.person, actions.c.variant)
                .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
                .where(actions.c.step == "intro")
            ).all()
        )
    longs = [p for p, v in got.items() if v == "long"][:60]
    shorts = [p for p, v in got.items() if v == "short"][:10]
    for person in longs + shorts:
        engine.reply(person, T0 + dt.timedelta(days=1, hours=1))
    engine.close()

    output = tmp_path / "report.html"
    code, err = run("report", str(campaign), "--people", str(people), "--start",
                    "2026-01-05T08:00", "--db", db, "-o", str(output))  # fmt: skip
    assert code == 0, err
    html = output.read_text(encoding="utf-8")
    # Nothing to load from elsewhere: no script, link, image or font address.
    assert not re.search(r"<script|<link|<img|src=|href=\"(?!#|data:)|url\((?!#)|@import", html)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # four charts in one page, none sharing an id
    assert html.count("<svg") == 4  # timeline, days, hours, reply rates
    assert "400 people: 800 sends and 400 tasks." in html
    assert re.search(r"<code>long</code></td><td class=\"n\">\d+</td><td class=\"n\">60</td>", html)
    assert "Pearson&#39;s chi-squared test" in html and "significant at 5 %" in html

    browser = _browser()
    try:
        browser.get(output.as_uri())  # type: ignore[attr-defined]
        title = browser.title  # type: ignore[attr-defined]
        assert title == "Report — cadence report"
        logs = browser.get_log("browser")  # type: ignore[attr-defined]
        assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
        heights = "return [...document.querySelectorAll('svg')].map(s => s.clientHeight)"
        sizes = browser.execute_script(heights)  # type: ignore[attr-defined]
        assert len(sizes) == 4 and all(height > 50 for height in sizes)
        browser.save_screenshot(str(tmp_path / "report.png"))  # type: ignore[attr-defined]
    finally:
        browser.quit()  # type: ignore[attr-defined]


def test_a_report_of_the_campaign_alone_and_bad_input(tmp_path: Path) -> None:
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE, encoding="utf-8")
    output = tmp_path / "alone.html"
    assert run("report", str(campaign), "-o", str(output))[0] == 0
    assert output.read_text().count("<svg") == 1
    code, err = run("report", str(campaign), "--people", "x.csv", "-o", str(output))
    assert code == 2 and "--people and --start go together" in err
    code, err = run("report", str(campaign), "--people", str(tmp_path / "none.csv"),
                    "--start", "2026-01-05T08:00", "-o", str(output))  # fmt: skip
    assert code == 2 and "none.csv" in err
    code, err = run("report", str(campaign), "-o", str(tmp_path / "no" / "such" / "r.html"))
    assert code == 2 and "cannot write" in err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="the browser test needs chromium")
def test_nothing_in_the_report_comes_from_elsewhere(tmp_path: Path) -> None:
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE.replace('"Report"', '"<script>alert(1)</script>"'))
    output = tmp_path / "r.html"
    assert run("report", str(campaign), "-o", str(output))[0] == 0
    html = output.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_funnel_counts_each_outcome_for_the_last_email_before_it(tmp_path: Path) -> None:
    from cadence.runtime.funnel import funnel

    engine = Engine.open(str(tmp_path / "f.db"), now=T0)
    source = SOURCE.replace("  send window 08:00-17:30\n", "  on reply continue\n")
    ir = compile_source(source, "f.campaign").ir
    assert ir is not None
    rows = [{"email": f"p{n}@example.com"} for n in range(4)]
    engine.enroll(ir, rows, T0, now=T0)
    engine.reply("p0@example.com", T0 + dt.timedelta(minutes=5))  # before any email
    Dispatcher(engine, OutboxTransport(tmp_path / "o"), Sender("S", "s@example.com")).run_once(
        T0 + dt.timedelta(hours=2)
    )
    later = T0 + dt.timedelta(hours=3)
    engine.reply("p0@example.com", later)  # after `intro`: counts
    engine.suppress(["p1@example.com"], "complained", later)
    engine.unsubscribe("p2@example.com", later)
    found = funnel(engine, "report-demo", [s.id for s in ir.steps])
    intro = [r for r in found.emails if r.step == "intro"]
    assert sum(r.sent for r in intro) == 4
    assert sum(r.replied for r in intro) == 1
    assert sum(r.unsubscribed for r in intro) == 2
    engine.close()


def test_people_whose_day_one_is_a_task_are_counted_in_their_zone() -> None:
    from cadence.campaign_report import Volume
    from cadence.runtime import plan

    source = """campaign "Tasks first" {
  timezone recipient else "Europe/Stockholm"
  day 1 {
    call ring { notes "n" }
    email a { send at 09:00 subject "s" body "b" }
  }
}
"""
    ir = compile_source(source, "t.campaign").ir
    assert ir is not None
    people = [{"email": "a@example.com", "timezone": "Asia/Tokyo"}, {"email": "b@example.com"}]
    volume = Volume().add(plan(ir, people, T0))
    assert volume.zones == {"Asia/Tokyo": 1, "Europe/Stockholm": 1}
