"""Who may use the operator's panel: a level-1 user watches and routes nothing, a bad token
gets a clear message and no retry storm, anonymous access only where the page's own host is
a loopback address and the settings allow it."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from .panelpage import cell, sign_in, tally, xy_destination


def test_a_watcher_sees_everything_and_routes_nothing(page, node):
    tieline = node()
    sign_in(page, tieline, "watcher")
    expect(page.locator("#mode")).to_be_visible()
    expect(page.locator("#mode")).to_have_text("Read-only")
    why = "watcher has permission level 1 (watch): routing needs level 2 (route)."
    expect(cell(page, 2, 5)).to_have_attribute("aria-disabled", "true")
    expect(cell(page, 2, 5)).to_have_attribute("title", why)

    cell(page, 2, 5).click(force=True)  # a tap on a control that may not be used
    expect(page.locator("#reason")).to_be_visible()
    expect(page.locator("#reason")).to_have_text(why)
    page.keyboard.press("Escape")
    xy_destination(page, 2).click()  # looking is allowed
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    for name in ("^Protect$", "^Lock$", "^Rename destination 2"):
        expect(page.locator(".detail-dest").get_by_role("button", name=re.compile(name))
               ).to_have_attribute("aria-disabled", "true")
    page.wait_for_timeout(500)
    assert tally(tieline)["video"][:3] == [1, 2, 3]
    expect(cell(page, 2, 2)).to_have_attribute("aria-pressed", "true")


def test_a_bad_token_gets_a_clear_message_and_no_retry_storm(page, watch, node):
    tieline = node()
    hellos: list[dict] = []

    def on_socket(ws):
        ws.on("framesent", lambda payload: hellos.append(json.loads(payload))
              if '"hello"' in str(payload) else None)

    page.on("websocket", on_socket)
    page.goto(tieline.url)
    message = page.locator("#login-message")
    expect(message).to_have_text("This node needs a token: enter yours below.")
    page.fill("#login-token", "not-a-token")
    page.click("#login-submit")
    expect(message).to_have_text(
        "The token was refused by panel1: unknown token; ask an administrator for a valid one")
    expect(message).to_have_attribute("data-kind", "error")
    submit = page.locator("#login-submit")
    expect(submit).to_have_attribute("aria-disabled", "true")  # each refusal waits longer
    submit.click(force=True)  # at once again: not sent
    page.wait_for_timeout(3000)  # and nothing retries by itself meanwhile
    assert len(watch.websockets) == 1, [ws.url for ws in watch.websockets]
    assert [bool(h.get("token")) for h in hellos if h.get("type") == "hello"] == [False, True]
    assert page.locator("#main").is_hidden()

    page.fill("#login-token", tieline.tokens["operator"])
    page.click("#login-submit")
    expect(page.locator("#banner")).to_have_text("Connected to panel1 (Standalone is active)")
    expect(page.locator("#user")).to_have_text("operator · level 2")
    assert len(watch.websockets) == 1
    # the token is kept for this tab only, and never put in a URL
    assert page.evaluate("sessionStorage.getItem('tieline.token')") == tieline.tokens["operator"]
    assert tieline.tokens["operator"] not in page.url


def test_anonymous_access_only_from_a_loopback_page(new_page, node):
    """With auth.loopback_anonymous_level 2 a page from http://127.0.0.1 is let in without
    a token; the same panel under a name that leads to 127.0.0.1 (as DNS rebinding would)
    does not even try: it asks for a token."""
    tieline = node(auth={"loopback_anonymous_level": 2})
    local = sign_in(new_page(), tieline, None)
    expect(local.locator("#user")).to_have_text("anonymous@127.0.0.1 · level 2")
    cell(local, 1, 3).click()
    expect(cell(local, 1, 3)).to_have_attribute("aria-pressed", "true")

    renamed = new_page()  # no console error on a plain-HTTP LAN-like origin either
    renamed.goto(tieline.url_as("rebind.test"))
    expect(renamed.locator("#login-message")).to_have_text("Enter your token to use this panel.")
    expect(renamed.locator("#main")).to_be_hidden()
