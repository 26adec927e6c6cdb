"""The banner and the status lists of the operator's panel: the node in use and its state,
each router online or offline (with the controls of an offline router disabled, saying
why), and how the panel says it is signing in."""

from __future__ import annotations

from playwright.sync_api import expect

from .panelpage import cell, sign_in


def test_a_router_going_offline_is_shown_and_its_controls_say_why(page, watch, node):
    hub = node.emulator("videohub", inputs=8, outputs=8)
    tieline = node(routers=[{"id": "hub", "driver": "videohub", "levels": ["video"],
                             "sources": 8, "destinations": 8, "transport": hub.transport}])
    sign_in(page, tieline, "operator")
    banner = page.locator("#banner")
    expect(banner).to_have_text("Connected to panel1 (Standalone is active)")
    expect(banner).to_have_attribute("data-tone", "ok")
    router = page.locator("#routers .router-state")
    expect(router).to_have_text("hub online")
    expect(router).to_have_attribute("data-online", "yes")
    expect(page.locator("#members .member")).to_have_text("panel1 Standalone is active (in use)")

    hub.proc.kill()
    expect(router).to_have_text("hub offline")
    expect(router).to_have_attribute("data-online", "no")
    expect(cell(page, 1, 2)).to_have_attribute("aria-disabled", "true")
    title = cell(page, 1, 2).get_attribute("title")
    assert title.startswith("Router 'hub' is offline"), title
    assert title.endswith("nothing can be sent to it."), title

    hub.proc.start()  # the same port: the node reconnects and reads its state again
    expect(router).to_have_text("hub online", timeout=30_000)
    expect(cell(page, 1, 2)).not_to_have_attribute("aria-disabled", "true")
    cell(page, 1, 2).click()
    expect(cell(page, 1, 2)).to_have_attribute("aria-pressed", "true")
