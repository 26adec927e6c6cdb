"""Protect and lock in the operator's panel: one operator's protect refuses another's take
with the owner named, in place; an administrator forces a release only after confirming."""

from __future__ import annotations

from playwright.sync_api import expect

from .panelpage import cell, protects, sign_in, tally, xy_destination


def test_a_protect_by_one_operator_refuses_another_with_the_owner_shown(new_page, node):
    tieline = node()
    alice = sign_in(new_page(), tieline, "operator")
    bob = sign_in(new_page(), tieline, "operator2")

    xy_destination(alice, 4).click()
    alice.get_by_role("button", name="Protect", exact=True).click()
    expect(xy_destination(bob, 4).locator(".badge.protect")).to_have_text("P operator")
    assert {(p["level"], p["kind"], p["owner"]) for p in protects(tieline)} == {
        ("video", "protect", "operator"), ("audio", "protect", "operator")}

    cell(bob, 4, 2).click()
    expect(xy_destination(bob, 4)).to_have_attribute("data-state", "error")
    expect(xy_destination(bob, 4).locator(".line2")).to_contain_text("protected by operator")
    xy_destination(bob, 4).click()
    expect(bob.locator(".detail-dest .inline-message[role=alert]")).to_contain_text(
        "protected by operator")
    expect(bob.locator(".level-table")).to_contain_text("protected by operator")
    expect(cell(bob, 4, 2)).to_have_attribute("aria-pressed", "false")
    assert tally(tieline)["video"][3] == 4
    # bob may not release it: the reason says so
    release = bob.get_by_role("button", name="Release", exact=True)
    expect(release).to_have_attribute("aria-disabled", "true")
    expect(release).to_have_attribute("title", "Nothing of yours to release on these levels.")

    # the owner routes it, releases it; then bob may route
    cell(alice, 4, 6).click()
    expect(cell(bob, 4, 6)).to_have_attribute("aria-pressed", "true")
    alice.get_by_role("button", name="Release", exact=True).click()
    expect(xy_destination(bob, 4).locator(".badge")).to_have_count(0)
    cell(bob, 4, 2).click()
    expect(cell(bob, 4, 2)).to_have_attribute("aria-pressed", "true")
    expect(xy_destination(bob, 4)).to_have_attribute("data-state", "idle")


def test_an_administrator_forces_a_release_after_confirming(new_page, node):
    tieline = node()
    operator = sign_in(new_page(), tieline, "operator")
    admin = sign_in(new_page(), tieline, "admin")
    xy_destination(operator, 6).click()
    operator.click('button.level[data-level="audio"]')
    operator.get_by_role("button", name="Lock on audio").click()
    expect(xy_destination(admin, 6).locator(".badge.lock")).to_have_text("L operator audio")

    xy_destination(admin, 6).click()
    force = admin.get_by_role("button", name="Force release")
    force.click()
    expect(admin.locator("#confirm")).to_be_visible()
    expect(admin.locator("#confirm-text")).to_contain_text("lock of operator")
    admin.click("#confirm-cancel")
    expect(admin.locator("#confirm")).to_be_hidden()
    admin.wait_for_timeout(300)
    assert protects(tieline) == [{"level": "audio", "destination": 6, "kind": "lock",
                                  "owner": "operator"}]

    force.click()
    admin.click("#confirm-ok")
    expect(xy_destination(admin, 6).locator(".badge")).to_have_count(0)
    expect(xy_destination(operator, 6).locator(".badge")).to_have_count(0)
    assert protects(tieline) == []


def test_an_operator_may_not_force_a_release(page, node):
    """Force release needs level 3: a level-2 operator's button says so."""
    tieline = node()
    tieline.request("lock", user="operator2", router="studio", destination=1)
    sign_in(page, tieline, "operator")
    expect(xy_destination(page, 1).locator(".badge.lock")).to_have_text("L operator2")
    xy_destination(page, 1).click()
    force = page.get_by_role("button", name="Force release")
    expect(force).to_have_attribute("aria-disabled", "true")
    expect(force).to_have_attribute("title", "operator has permission level 2 (route): "
                                    "releasing someone else's protect or lock needs level 3 "
                                    "(administer).")
    force.click(force=True)
    expect(page.locator("#reason")).to_be_visible()
    expect(page.locator("#reason")).to_contain_text("needs level 3")
    expect(page.locator("#confirm")).to_be_hidden()
