"""The command center in a real headless browser (Debian's chromium, driven
by selenium): log in, open an email task, edit the body, have cadence send
it, see it in the live feed — which shows new entries by itself — and check
that the dispatcher sends the edit, and that the follow-up it sends after
quotes the template, not the edit (docs/semantics.md §5)."""

from __future__ import annotations

import datetime as dt
import email
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from cadence.runtime.engine import Engine
from cadence.server import create_app
from cadence.service import Application
from cadence.service.logins import add_user

T0 = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
WAIT = 20  # seconds the browser may take for a step (never reached when it works)
CAMPAIGN = """campaign "Browser" {
  timezone "UTC"
  requires first_name

  day 1 {
    email intro {
      send task
      subject "Hello {{ first_name }}"
      body "Template text for {{ first_name }}"
    }
  }

  day 2 {
    email bump {
      send at 10:00
      follow up
      body "Just checking in"
    }
  }
}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browser() -> object:
    if CHROMIUM is None or DRIVER is None:
        if os.environ.get("CADENCE_REQUIRE_BROWSER"):
            pytest.fail(
                "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        pytest.skip("no chromium and chromedriver here")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = Engine.open(str(tmp_path / "cadence.db"), now=T0)
    yield made
    made.close()


@pytest.fixture
def served(engine: Engine) -> Iterator[tuple[str, Application]]:
    application = Application(engine, lambda: T0)
    add_user(engine.store, "sam", "correct horse battery", T0)
    added = application.add_campaign(CAMPAIGN, "browser.campaign")
    application.enroll(
        added.identity,
        [{"email": "ada@example.com", "first_name": "Ada"}],
        start="2026-01-05T09:00",
    )
    config = uvicorn.Config(create_app(application, feed_poll=0.05), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not server.started:
        started.wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", application
    server.should_exit = True
    thread.join(WAIT)


def test_an_email_task_edited_and_sent_in_the_browser(
    served: tuple[str, Application], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    url, application = served
    browser = _browser()
    wait = WebDriverWait(browser, WAIT)  # type: ignore[arg-type]
    try:
        browser.get(url + "/tasks")  # type: ignore[attr-defined]
        wait.until(shown.url_contains("/login"))
        browser.find_element(By.ID, "name").send_keys("sam")  # type: ignore[attr-defined]
        browser.find_element(By.ID, "password").send_keys("correct horse battery")  # type: ignore[attr-defined]
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()  # type: ignore[attr-defined]
        wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "table.tasks")))
        browser.find_element(By.PARTIAL_LINK_TEXT, "Email").click()  # type: ignore[attr-defined]
        subject = wait.until(shown.presence_of_element_located((By.ID, "subject")))
        assert subject.get_attribute("value") == "Hello Ada"
        body = browser.find_element(By.ID, "body")  # type: ignore[attr-defined]
        assert body.get_attribute("value") == "Template text for Ada"
        body.clear()
        body.send_keys("Edited by hand in the browser")
        browser.find_element(By.CSS_SELECTOR, "form.compose button[value=now]").click()  # type: ignore[attr-defined]
        notice = wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, ".notice")))
        assert "goes now" in notice.text
        browser.refresh()  # type: ignore[attr-defined]
        # Said once: the notice is gone, and nothing rides in the address.
        assert browser.find_elements(By.CSS_SELECTOR, ".notice") == []  # type: ignore[attr-defined]
        assert browser.current_url == url + "/tasks"  # type: ignore[attr-defined]

        browser.get(url + "/feed")  # type: ignore[attr-defined]
        feed = wait.until(shown.presence_of_element_located((By.ID, "feed")))
        assert "email task `intro` goes now" in feed.text
        # The page adds what happens next by itself.
        application.enroll(
            "Browser", [{"email": "bob@example.com", "first_name": "Bob"}], start="2026-01-05T09:00"
        )
        wait.until(shown.text_to_be_present_in_element((By.ID, "feed"), "bob@example.com"))
        browser.save_screenshot(str(tmp_path / "feed.png"))  # type: ignore[attr-defined]
        logs = browser.get_log("browser")  # type: ignore[attr-defined]
        assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    finally:
        browser.quit()  # type: ignore[attr-defined]

    # cadence sends the edited email; the follow-up, the next day, quotes the template.
    outbox = tmp_path / "outbox"
    database = str(application.engine.store.engine.url.database)
    for now in ("2026-01-05T09:00:30+00:00", "2026-01-06T10:05:00+00:00"):
        done = subprocess.run(
            [sys.executable, "-m", "cadence", "run", "--db", database, "--outbox", str(outbox),
             "--now", now],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    sent = {m["Subject"]: m for m in (email.message_from_bytes(p.read_bytes())
                                      for p in outbox.glob("*.eml"))}  # fmt: skip
    assert sorted(sent) == ["Hello Ada", "Re: Hello Ada"]
    edited = sent["Hello Ada"].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert edited.strip() == "Edited by hand in the browser"
    follow_up = sent["Re: Hello Ada"]
    assert follow_up["To"] == "ada@example.com"
    assert follow_up["In-Reply-To"] == sent["Hello Ada"]["Message-ID"]
    text = follow_up.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Just checking in" in text and "> Template text for Ada" in text
    assert "Edited by hand" not in text
