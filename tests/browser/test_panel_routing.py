"""Routing in the operator's panel, in a real browser against real nodes: takes by clicks
on the XY grid and on the bus view, confirmed by the API before they are shown, seen by a
second operator as events; breakaway on one level; the two-step take."""

from __future__ import annotations

import signal

from playwright.sync_api import expect

from .panelpage import (bus_destination, bus_source, cell, sign_in, tally, videohub_routing,
                        wait_until, xy_destination)


def test_route_by_click_on_the_simulator(new_page, node):
    """A click on a crosspoint routes it on every level; the API's tally says so, and a
    second operator's panel shows it as it arrives (an event, no reload)."""
    tieline = node()
    first = sign_in(new_page(), tieline, "operator")
    second = sign_in(new_page(), tieline, "operator2")
    assert tally(tieline)["video"][2] == 3  # the simulator starts with d <- d
    expect(cell(second, 3, 7)).to_have_attribute("aria-pressed", "false")

    cell(first, 3, 7).click()

    expect(cell(first, 3, 7)).to_have_attribute("aria-pressed", "true")
    expect(cell(first, 3, 3)).to_have_attribute("aria-pressed", "false")
    assert tally(tieline) == {level: [7 if d == 3 else d for d in range(1, 17)]
                              for level in ("video", "audio")}
    expect(cell(second, 3, 7)).to_have_attribute("aria-pressed", "true")
    expect(xy_destination(second, 3)).to_contain_text("← Input 7")


def test_route_on_a_videohub_is_shown_only_once_the_device_confirmed_it(new_page, node):
    """A driver against its emulator: while the device does not answer (SIGSTOP) the take
    is shown pending, not made; once it answers, the panel shows what the device holds,
    and so does a second operator's panel."""
    hub = node.emulator("videohub", inputs=16, outputs=16)
    tieline = node(routers=[{"id": "hub", "driver": "videohub", "levels": ["video"],
                             "sources": 16, "destinations": 16, "transport": hub.transport}])
    first = sign_in(new_page(), tieline, "operator")
    second = sign_in(new_page(), tieline, "operator2")
    assert videohub_routing(hub.port)[2] == 2

    hub.proc.signal(signal.SIGSTOP)
    try:
        cell(first, 2, 9).click()
        expect(cell(first, 2, 9)).to_have_attribute("data-pending", "yes")
        expect(xy_destination(first, 2)).to_have_attribute("data-state", "pending")
        first.wait_for_timeout(500)  # the device is stopped: nothing can confirm it
        expect(cell(first, 2, 9)).to_have_attribute("aria-pressed", "false")
        expect(cell(first, 2, 2)).to_have_attribute("aria-pressed", "true")
        expect(cell(second, 2, 9)).to_have_attribute("aria-pressed", "false")
    finally:
        hub.proc.signal(signal.SIGCONT)

    expect(cell(first, 2, 9)).to_have_attribute("aria-pressed", "true")
    expect(cell(first, 2, 9)).to_have_attribute("data-pending", "no")
    expect(xy_destination(first, 2)).to_have_attribute("data-state", "idle")
    assert videohub_routing(hub.port)[2] == 9  # the device itself holds the route
    assert tally(tieline, "hub")["video"][1] == 9
    expect(cell(second, 2, 9)).to_have_attribute("aria-pressed", "true")


def test_breakaway_on_one_level(page, node):
    """With only 'audio' chosen a take routes audio alone; the destination then carries
    the breakaway marker and shows each level's source; 'All levels' shows the crosspoint
    as made on some levels only."""
    tieline = node()
    sign_in(page, tieline, "operator")
    page.click('button.level[data-level="audio"]')
    expect(page.locator("button.level-all")).to_have_attribute("aria-pressed", "false")

    cell(page, 5, 11).click()

    expect(cell(page, 5, 11)).to_have_attribute("aria-pressed", "true")  # on audio, chosen
    crosspoints = tally(tieline)
    assert crosspoints["audio"][4] == 11 and crosspoints["video"][4] == 5
    expect(xy_destination(page, 5).locator(".badge.brk")).to_have_text("BRK")
    expect(xy_destination(page, 5)).to_contain_text("video Input 5 · audio Input 11")
    page.click("button.level-all")
    expect(cell(page, 5, 11)).to_have_attribute("data-on", "some")
    expect(cell(page, 5, 11)).to_have_attribute("aria-pressed", "false")
    expect(cell(page, 5, 5)).to_have_attribute("data-on", "some")
    # the same source on every level again: no marker
    cell(page, 5, 11).click()
    expect(cell(page, 5, 11)).to_have_attribute("data-on", "all")
    expect(xy_destination(page, 5).locator(".badge.brk")).to_have_count(0)


def test_two_step_take_on_the_bus_view(page, node):
    """A two-step panel preselects (it flashes) and routes only on Take; Esc drops a
    preselection; Enter takes one."""
    tieline = node(api={"panels": [{"name": "MCR", "router": "studio", "layout": "bus",
                                     "two_step_take": True}]})
    sign_in(page, tieline, "operator")
    bus_destination(page, 2).click()
    bus_source(page, 9).click()
    expect(bus_source(page, 9)).to_have_attribute("data-preselect", "yes")
    expect(page.locator("#take")).to_have_attribute("data-preselect", "yes")
    page.wait_for_timeout(300)
    assert tally(tieline)["video"][1] == 2  # preselected, not routed

    page.keyboard.press("Escape")
    expect(bus_source(page, 9)).to_have_attribute("data-preselect", "no")
    bus_source(page, 12).click()
    page.click("#take")
    expect(bus_source(page, 12)).to_have_attribute("aria-pressed", "true")
    assert tally(tieline)["video"][1] == 12

    bus_source(page, 4).click()
    expect(bus_source(page, 4)).to_have_attribute("data-preselect", "yes")
    page.keyboard.press("Enter")
    expect(bus_source(page, 4)).to_have_attribute("aria-pressed", "true")
    wait_until(lambda: tally(tieline)["audio"][1] == 4, what="destination 2 from source 4")
    expect(bus_destination(page, 2)).to_contain_text("← Input 4")


def test_two_step_take_on_the_xy_grid(page, node):
    """On an XY grid a press preselects the crosspoint (it flashes); Take routes it."""
    tieline = node(api={"panels": [{"name": "MCR", "router": "studio", "layout": "xy",
                                     "two_step_take": True}]})
    sign_in(page, tieline, "operator")
    cell(page, 6, 2).click()
    expect(cell(page, 6, 2)).to_have_attribute("data-preselect", "yes")
    expect(page.locator(".take-hint")).to_have_text(
        "Preselected: Input 2 → Output 6. Take (Enter) or Clear (Esc).")
    page.wait_for_timeout(300)
    assert tally(tieline)["video"][5] == 6
    page.click("#take")
    expect(cell(page, 6, 2)).to_have_attribute("aria-pressed", "true")
    expect(cell(page, 6, 2)).to_have_attribute("data-preselect", "no")
    assert tally(tieline)["audio"][5] == 2
