"""Labels in the operator's panel: an administrator renames a port, every panel shows the
new label as the API's event brings it; an operator's Rename says it needs level 3."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .panelpage import sign_in, xy_destination


def test_an_administrator_renames_a_destination_and_everyone_sees_it(new_page, node):
    tieline = node()
    admin = sign_in(new_page(), tieline, "admin")
    other = sign_in(new_page(), tieline, "operator")
    xy_destination(admin, 5).click()
    admin.get_by_role("button", name=re.compile("^Rename destination 5")).click()
    field = admin.locator(".detail-dest .label-input")
    expect(field).to_have_value("Output 5")
    field.fill("REC 2")
    field.press("Enter")
    expect(xy_destination(admin, 5).locator(".label")).to_have_text("REC 2")
    expect(xy_destination(other, 5).locator(".label")).to_have_text("REC 2")
    labels = tieline.request("snapshot", routers=["studio"])["result"]["routers"][0]["labels"]
    assert labels["destinations"][4] == "REC 2"
    # Esc leaves an edit without saving
    admin.get_by_role("button", name=re.compile("^Rename destination 5")).click()
    field.fill("nothing")
    field.press("Escape")
    expect(field).to_be_hidden()
    expect(xy_destination(admin, 5).locator(".label")).to_have_text("REC 2")

    xy_destination(other, 5).click()
    rename = other.get_by_role("button", name=re.compile("^Rename destination 5"))
    expect(rename).to_have_attribute("aria-disabled", "true")
    expect(rename).to_have_attribute("title", re.compile("editing labels needs level 3"))
