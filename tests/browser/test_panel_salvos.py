"""Salvos in the operator's panel: the list, the take, and its result crosspoint by
crosspoint, confirmed and refused with the reason."""

from __future__ import annotations

from playwright.sync_api import expect

from .panelpage import cell, sign_in, tally

SALVOS = {"salvos": [{"name": "show", "router": "studio", "crosspoints": [
    {"destination": 1, "source": 5}, {"destination": 2, "source": 6},
    {"destination": 3, "source": 7}, {"destination": 4, "source": 8}]}]}


def test_a_salvo_with_one_refused_crosspoint_shows_both_results(page, node):
    tieline = node(files={"salvos.json": SALVOS})
    tieline.request("lock", user="operator2", router="studio", destination=4,
                    levels=["audio"])
    sign_in(page, tieline, "operator")
    page.click("#salvos-toggle")
    salvo = page.locator('.salvo[data-salvo="show"]')
    expect(salvo).to_contain_text("studio · 8 crosspoints")
    salvo.get_by_role("button", name="Preview").click()  # the snapshot gave its contents
    expect(page.locator(".salvo-summary")).to_have_text(
        "Salvo show would change 8 of 8 crosspoints; 1 held by a protect or lock would be "
        "refused.")
    assert tally(tieline)["video"][:4] != [5, 6, 7, 8]  # a preview changes nothing

    salvo.get_by_role("button", name="Take").click()

    expect(page.locator(".salvo-summary")).to_have_text("Salvo show: 7 confirmed, 1 refused.")
    expect(page.locator('.salvo-result li[data-result="confirmed"]')).to_have_count(7)
    refused = page.locator('.salvo-result li[data-result="refused"]')
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("Output 4 audio ← Input 8: refused (protected)")
    expect(refused).to_contain_text("locked by operator2")
    expect(page.locator('.salvo-result li[data-result="confirmed"]').first).to_contain_text(
        "Output 1 video ← Input 5 (was Input 1): confirmed")
    crosspoints = tally(tieline)
    assert crosspoints["video"][:4] == [5, 6, 7, 8]
    # after the take, the preview compares every crosspoint with the new tally
    salvo.get_by_role("button", name="Preview").click()
    expect(page.locator(".salvo-summary")).to_have_text(
        "Salvo show would change 1 of 8 crosspoints; 1 held by a protect or lock would be "
        "refused.")
    rows = page.locator(".salvo-table tbody tr")
    expect(rows).to_have_count(8)
    expect(page.locator('.salvo-table tr[data-blocked="yes"]')).to_contain_text(
        "Output 4 audioInput 4Input 8locked by operator2")
    assert crosspoints["audio"][:4] == [5, 6, 7, 4]
    page.click("#salvos-toggle")
    expect(cell(page, 4, 8)).to_have_attribute("data-on", "some")


def test_a_watcher_may_not_take_a_salvo(page, node):
    tieline = node(files={"salvos.json": SALVOS})
    sign_in(page, tieline, "watcher")
    page.click("#salvos-toggle")
    take = page.locator('.salvo[data-salvo="show"]').get_by_role("button", name="Take")
    expect(take).to_have_attribute("aria-disabled", "true")
    take.click(force=True)
    expect(page.locator("#reason")).to_contain_text("taking a salvo needs level 2 (route)")
    page.wait_for_timeout(300)
    assert tally(tieline)["video"][:4] == [1, 2, 3, 4]
