"""The browser test chain works end to end, without the panel: Debian's Chromium loads pages
from a loopback web site, runs their script files, opens WebSockets to a real node, and the
watch sees what the page logged, Content Security Policy violations included."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .browsing import STRICT_CSP

#: a page of another site: its script file opens a WebSocket to the URL in ?ws=... and
#: writes what happened into <body data-result>
PROBE_PAGE = {
    "index.html": ('<!doctype html><html><head><title>probe</title>'
                   '<script src="/probe.js"></script></head><body></body></html>'),
    "probe.js": """
const target = new URLSearchParams(location.search).get('ws');
const ws = new WebSocket(target);
ws.onopen = () => { document.body.dataset.result = 'open'; ws.close(); };
ws.onerror = () => { document.body.dataset.result = 'error'; };
""",
}


@pytest.mark.parametrize("host", ["127.0.0.1", "foreign.test"])
def test_a_foreign_site_cannot_open_the_api(page, watch, node, site, host):
    """A page of another site (a loopback literal, or a name that leads to 127.0.0.1) opens
    a WebSocket to the node's API: the handshake is refused with HTTP 403."""
    tieline = node()
    foreign = site(PROBE_PAGE)
    watch.expect_errors(r"WebSocket connection to .* failed")
    page.goto(foreign.url(f"index.html?ws={tieline.ws_url}", host=host))
    expect(page.locator("body")).to_have_attribute("data-result", "error")
    refusal = [e for e in watch.errors if "WebSocket connection to" in e]
    assert refusal and "403" in refusal[0], watch.console
    assert foreign.origin(host) in tieline.log()  # the node says whom it refused
    assert ("GET", f"/index.html?ws={tieline.ws_url}") in [r[:2] for r in foreign.requests]


def test_a_listed_origin_may_open_the_api(page, watch, node, site):
    """The same page opens the API when the node lists its origin in allowed_origins: the
    refusal above is the node's, not the browser's or the fixtures'."""
    foreign = site(PROBE_PAGE)
    tieline = node(api={"allowed_origins": [foreign.origin()]})
    page.goto(foreign.url(f"index.html?ws={tieline.ws_url}"))
    expect(page.locator("body")).to_have_attribute("data-result", "open")
    assert [ws.url for ws in watch.websockets] == [tieline.ws_url + "/"]
    watch.assert_clean()


def test_the_strict_csp_blocks_inline_script(page, watch, site):
    """Under the panel's policy an inline script does not run and its violation is seen;
    a script file of the same origin runs."""
    served = site({
        "index.html": ('<!doctype html><html><head><title>before</title>'
                       '<script src="/ok.js"></script></head><body>'
                       '<script>document.title = "inline ran";</script></body></html>'),
        "ok.js": "document.documentElement.dataset.file = 'ran';",
    })
    page.goto(served.url())
    expect(page.locator("html")).to_have_attribute("data-file", "ran")
    violation = watch.wait_for_csp_violation(page)
    assert violation["directive"] == "script-src-elem"
    assert violation["blocked"] == "inline"
    assert page.title() == "before"
    with pytest.raises(AssertionError, match="CSP violation"):
        watch.assert_clean()
    watch.csp_violations.clear()  # seen: the fixture's own check at the end must pass


def test_a_clean_page_is_clean(page, watch, site):
    """The watch reports nothing for a page that logs nothing (so its reports mean
    something), and an uncaught error in a script is reported."""
    served = site({"index.html": '<!doctype html><title>t</title><script src="/a.js"></script>',
                   "a.js": "console.log('hello');",
                   "bad.html": '<!doctype html><title>t</title><script src="/b.js"></script>',
                   "b.js": "null.x;"})
    page.goto(served.url())
    expect(page).to_have_title("t")
    watch.assert_clean()
    assert ("log", "hello") in [m[:2] for m in watch.console]
    page.goto(served.url("bad.html"))
    expect(page).to_have_title("t")
    page.wait_for_function("true")  # a round trip: the error event has been delivered
    assert any(e.startswith("uncaught: TypeError") for e in watch.errors), watch.errors
    watch.expect_errors("^uncaught: TypeError")


def test_the_node_serves_the_panel_clean(page, watch, node):
    """``GET /`` of a node opens its panel in the browser under the strict CSP, and loading
    it (its module scripts, styles, and whatever it fetches or opens at start) logs no
    error and breaks no policy."""
    tieline = node()
    response = page.goto(tieline.url)
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == STRICT_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    page.wait_for_load_state("networkidle")
    requested = [r.url for r in watch.requests]
    assert any(url.endswith(".js") for url in requested), requested  # its scripts loaded
    assert all(url.startswith(tieline.url) or url.startswith("data:") for url in requested), \
        requested  # nothing from anywhere else
    watch.assert_clean()
