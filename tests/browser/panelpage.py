"""Driving the operator's panel (plugins/websocket_api/panel/) in the browser tests: signing
in, finding its controls, and reading what the API and the device say beside what the
panel shows.

The panel marks its state in attributes the tests read: a crosspoint button has
``aria-pressed="true"`` when the tally says it is made on every chosen level and
``data-on="some"`` on some; ``data-pending="yes"`` while a take waits for the API;
a destination has ``data-state`` ``pending`` or ``error`` (its second line then holds
the API's refusal); a control the user may not use has ``aria-disabled="true"`` and its
reason in ``title`` (Playwright then counts it as disabled: tests press it with
``force=True`` to see that nothing happens but the reason).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from playwright.sync_api import Locator, Page, expect

from .browsing import PanelNode

#: how long an ``expect`` waits for the panel to show something (Playwright's default is
#: 5 s): the suite shares the machine with other tests, and a loaded machine (load 11 on two
#: cores was seen) made a panel take more than 5 s to draw. A wait, not a measurement.
expect.set_options(timeout=15_000)


def sign_in(page: Page, node: PanelNode, user: str | None = "operator", *,
            url: str | None = None) -> Page:
    """Open the node's panel and sign in as ``user`` (None: expect anonymous access);
    return when the routing view is drawn."""
    page.goto(url or node.url)
    if user is not None:
        expect(page.locator("#login-token")).to_be_visible()
        page.fill("#login-token", node.tokens[user])
        page.click("#login-submit")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#banner")).to_contain_text("Connected to")
    expect(page.locator(".xy-grid, .dest-list").first).to_be_visible()
    return page


def cell(page: Page, destination: int, source: int) -> Locator:
    """The XY grid's button of a crosspoint."""
    return page.locator(f'.xy-cell[data-d="{destination}"][data-s="{source}"]')


def xy_destination(page: Page, destination: int) -> Locator:
    """The XY grid's header of a destination (its name, source, badges, refusal)."""
    return page.locator(f'.xy-dest[data-port="{destination}"]')


def bus_destination(page: Page, destination: int) -> Locator:
    """The bus view's row of a destination (it must be scrolled into view)."""
    return page.locator(f'.dest[data-port="{destination}"]:visible')


def bus_source(page: Page, source: int) -> Locator:
    """The bus view's button of a source (it must be scrolled into view)."""
    return page.locator(f'.src[data-port="{source}"]:visible')


def tally(node: PanelNode, router: str = "studio") -> dict[str, list[int | None]]:
    """The router's crosspoints as the API says (``{level: [source of destination 1,
    ...]}``): the truth the panel must agree with."""
    result = node.request("snapshot", routers=[router])["result"]
    return result["routers"][0]["crosspoints"]


def protects(node: PanelNode, router: str = "studio") -> list[dict[str, Any]]:
    """The router's protects and locks as the API says."""
    return node.request("snapshot", routers=[router])["result"]["routers"][0]["protects"]


def videohub_routing(port: int, timeout: float = 5.0) -> dict[int, int]:
    """What a Videohub (emulator) itself holds: ``{output: input}``, 1-based, from the
    ``VIDEO OUTPUT ROUTING`` block of the status dump it sends every new controller."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        data = b""
        deadline = time.monotonic() + timeout
        while b"END PRELUDE:" not in data:
            if time.monotonic() > deadline:
                raise AssertionError(f"no status dump from the Videohub: {data[-300:]!r}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode()
    block = text.split("VIDEO OUTPUT ROUTING:\n", 1)[1].split("\n\n", 1)[0]
    routing = {}
    for line in block.splitlines():
        output, source = line.split()
        routing[int(output) + 1] = int(source) + 1
    return routing


def wait_until(check: Any, timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``check()`` (a plain function, not the page) until it returns a true value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout} s (last: {value!r})")
        time.sleep(0.05)

