"""Takes the screenshots in docs/serve.md: a server with the bundled example
campaign and a few people, its pages in a headless chromium (Debian's
`chromium` and `chromium-driver`), at a desktop's width and a phone's.

Run: ``python tools/screenshots.py`` (writes docs/images/*.png).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from cadence.server import create_app
from cadence.service import Application
from cadence.service.logins import add_user

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
EXAMPLES = ROOT / "examples"
PEOPLE = [
    ("ada@example.com", "Ada", "Lovelace", "Analytical Engines", "+1 212 555 0100"),
    ("grace@example.com", "Grace", "Hopper", "Compilers Inc", "+1 212 555 0101"),
    ("alan@example.com", "Alan", "Turing", "Bletchley Labs", "+44 20 5550 0102"),
]


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cadence-shots-"))
    application = Application.open(str(folder / "cadence.db"))
    add_user(application.engine.store, "sam", "correct horse battery", application.clock())
    source = (EXAMPLES / "q1-outbound.campaign").read_text()
    templates = {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()}
    campaign = application.add_campaign(source, "q1-outbound.campaign", templates).identity
    rows = [{"email": email, "first_name": first, "last_name": last, "company": company,
             "phone": phone} for email, first, last, company, phone in PEOPLE]  # fmt: skip
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=9)).strftime("%Y-%m-%dT09:00")
    application.enroll(campaign, rows, start=start, catch_up="skip")
    server = uvicorn.Server(uvicorn.Config(create_app(application), port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        threading.Event().wait(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        browser.set_window_size(1100, 760)
        browser.get(url + "/login")
        browser.find_element(By.ID, "name").send_keys("sam")
        browser.find_element(By.ID, "password").send_keys("correct horse battery")
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        IMAGES.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(IMAGES / "tasks.png"))
        email = next(t for t in application.tasks(limit=500) if t.kind == "email_task")
        browser.set_window_size(1100, 1400)  # the whole compose view, its buttons too
        browser.get(f"{url}/tasks/{email.id}")
        body = browser.find_element(By.ID, "body")
        body.clear()  # as a person edits it
        body.send_keys("Hi Ada,\n\nSaw that Analytical Engines is hiring three platform "
                       "engineers. Worth 15 minutes next week?\n\nSam")  # fmt: skip
        browser.save_screenshot(str(IMAGES / "compose.png"))
        browser.set_window_size(1100, 760)
        browser.get(url + "/feed")
        browser.save_screenshot(str(IMAGES / "feed.png"))
        browser.get(url + "/people?email=ada@example.com")
        browser.save_screenshot(str(IMAGES / "person.png"))
        browser.set_window_size(390, 844)  # a phone
        browser.get(url + "/tasks")
        browser.save_screenshot(str(IMAGES / "tasks-phone.png"))
    finally:
        browser.quit()
        server.should_exit = True
        application.close()


if __name__ == "__main__":
    main()
