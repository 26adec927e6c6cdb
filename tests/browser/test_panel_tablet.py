"""The operator's panel on a tablet and from the keyboard: every control is a touch target
of at least 44 x 44 px at 1024 x 768, nothing but the lists scrolls, and the keyboard alone
routes (arrows, type-to-search, Enter takes, Esc clears)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .panelpage import bus_destination, bus_source, sign_in, tally, xy_destination

TABLET = {"viewport": {"width": 1024, "height": 768}, "has_touch": True}

#: every control of the page that is shown: its size (px)
SIZES = """() => [...document.querySelectorAll('button, input, select')]
  .filter((el) => el.offsetParent !== null && !el.closest('[hidden]'))
  .map((el) => ({what: (el.id || el.className) + ' ' + (el.textContent || el.placeholder
                 || '').trim().slice(0, 24), w: el.offsetWidth, h: el.offsetHeight}))"""


@pytest.mark.parametrize("layout", ["xy", "bus"])
def test_touch_targets_at_1024x768(new_page, node, layout):
    tieline = node(api={"panels": [{"name": "p", "router": "studio", "layout": layout,
                                     "two_step_take": True}]})
    page = sign_in(new_page(**TABLET), tieline, "admin")
    if layout == "xy":
        xy_destination(page, 3).tap()
    else:
        bus_destination(page, 3).tap()
        bus_source(page, 5).tap()
    expect(page.locator(".detail-dest")).to_be_visible()
    page.click("#salvos-toggle")
    page.click("#salvos-toggle")
    small = [s for s in page.evaluate(SIZES) if s["w"] < 44 or s["h"] < 44]
    assert not small, small
    # the page itself fits: only the lists and the grid scroll
    assert page.evaluate("document.documentElement.scrollWidth") <= 1024
    assert page.evaluate("document.documentElement.scrollHeight") <= 768


def test_the_keyboard_alone_routes(page, node):
    tieline = node(api={"panels": [{"name": "p", "router": "studio", "layout": "bus"}]},
                   files={"labels.json": {"routers": {"studio": {
                       "destinations": {"7": "REC A", "8": "REC B"},
                       "sources": {"3": "CAM 3"}}}}})
    sign_in(page, tieline, "operator")
    page.keyboard.type("rec")  # type-to-search: the destination filter
    expect(page.locator('input[data-filter="destination"]')).to_have_value("rec")
    expect(page.locator(".dest:visible")).to_have_count(2)
    page.keyboard.press("Enter")  # the first match
    expect(bus_destination(page, 7)).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("ArrowDown")
    expect(bus_destination(page, 8)).to_have_attribute("aria-pressed", "true")
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # the source cursor: 1, 2, 3
    expect(bus_source(page, 3)).to_have_attribute("data-cursor", "yes")
    expect(page.locator(".take-hint")).to_have_text("CAM 3 → REC B: Enter takes it.")
    page.keyboard.press("Enter")
    expect(bus_source(page, 3)).to_have_attribute("aria-pressed", "true")
    assert tally(tieline)["video"][7] == 3
    page.keyboard.press("Escape")  # the cursor
    expect(bus_source(page, 3)).to_have_attribute("data-cursor", "no")
    page.keyboard.press("Escape")  # then the destination
    expect(bus_destination(page, 8)).to_have_attribute("aria-pressed", "false")
