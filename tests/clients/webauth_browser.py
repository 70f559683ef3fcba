"""A stand-in for a person's browser in ``phase auth``: the Phase CLI runs its ``BROWSER`` with
the link; this opens it in Debian's Chromium (Playwright) with a signed-in console session,
presses Authorise and writes what the page then says (its second-level heading) to a file.

    webauth_browser.py CHROMIUM SESSION_COOKIE_FILE RESULT_FILE LINK
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def main(chromium, cookie_file, result_file, link):
    origin = link.split("/webauth/")[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "phase_lite_session", "url": origin + "/",
                                  "value": Path(cookie_file).read_text().strip()}])
            page = context.new_page()
            page.goto(link)
            page.get_by_role("button", name="Authorise").click()
            outcome = page.get_by_role("heading", level=2)
            outcome.wait_for(timeout=30_000)
            Path(result_file).write_text(outcome.inner_text() + "\n" + page.url)
        finally:
            browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
