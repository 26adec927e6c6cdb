"""Take the screenshots of docs/panel.md from the real panel, in headless Chromium.

::

    python docs/gen_panel_screenshots.py            # rewrite docs/panel/*.png
    python docs/gen_panel_screenshots.py --out DIR  # somewhere else

Nothing is staged: each picture is a real ``tieline run`` node (the demo's router, panels,
labels and salvos; a 4096x4096x16 simulator; a main/backup pair from tests/failover) opened
in Debian's Chromium (``/usr/bin/chromium``, driven by Playwright as tests/browser drive it)
at 1024x768, the size of a tablet, after the clicks a test would make. Run it again after
changing the panel, so that the pictures stay true.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.browsing import (CHROMIUM, CHROMIUM_ARGS, NodeFactory,  # noqa: E402
                                    run_async)
from tieline.ops.demo import ensure_demo  # noqa: E402

OUT = ROOT / "docs" / "panel"
VIEWPORT = {"width": 1024, "height": 768}


def demo_settings() -> dict[str, Any]:
    """The demo's routers, API options (its panels), labels and salvos."""
    folder = ensure_demo(Path(tempfile.mkdtemp(prefix="tl-demo-")) / "demo")
    settings = json.loads((folder / "tieline.json").read_text())
    api = {k: v for k, v in settings["apis"][0].items() if k not in ("type", "listen")}
    files = {name: json.loads((folder / name).read_text())
             for name in ("labels.json", "salvos.json")}
    return {"routers": settings["routers"], "api": api, "files": files}


def sign_in(page: Any, node: Any, user: str) -> None:
    from playwright.sync_api import expect

    page.goto(node.url)
    page.fill("#login-token", node.tokens[user])
    page.click("#login-submit")
    expect(page.locator("#banner")).to_contain_text("Connected to")
    expect(page.locator(".xy-grid, .dest-list").first).to_be_visible()


def settle(page: Any) -> None:
    """Let the last answers and events be drawn, and no pointer hover a control."""
    page.mouse.move(1020, 764)
    page.wait_for_timeout(400)


def shoot(browser: Any, out: Path) -> list[Path]:
    from playwright.sync_api import expect

    made: list[Path] = []

    def page_of() -> Any:
        return browser.new_context(viewport=VIEWPORT, has_touch=True).new_page()

    def save(page: Any, name: str) -> None:
        settle(page)
        path = out / name
        page.screenshot(path=str(path))
        made.append(path)
        page.context.close()

    demo = demo_settings()
    factory = NodeFactory(Path(tempfile.mkdtemp(prefix="tl-shots-")))
    try:
        node = factory(name="demo", routers=demo["routers"], api=demo["api"],
                       files=demo["files"])
        # the studio's XY panel: a breakaway, a protect of someone else's, a selection
        node.request("route", user="operator2", router="studio", destination=3, source=13,
                     levels=["audio"])
        node.request("protect", user="operator2", router="studio", destination=1)
        page = page_of()
        sign_in(page, node, "operator")
        page.locator('.xy-dest[data-port="4"]').click()
        page.locator('.xy-cell[data-d="4"][data-s="2"]').click()
        expect(page.locator('.xy-cell[data-d="4"][data-s="2"]')).to_have_attribute(
            "aria-pressed", "true")
        page.locator('.xy-cell[data-d="1"][data-s="5"]').click()  # refused: protected
        expect(page.locator('.xy-dest[data-port="1"]')).to_have_attribute("data-state", "error")
        page.locator('.xy-dest[data-port="4"]').click()
        save(page, "panel-xy.png")

        # the transmission panel: a bus view with a two-step take, a source preselected
        page = page_of()
        sign_in(page, node, "operator")
        page.select_option("#panel-select", label="transmission (studio)")
        page.locator('.dest[data-port="21"]:visible').click()
        page.locator('.src[data-port="13"]:visible').click()
        expect(page.locator("#take")).to_have_attribute("data-preselect", "yes")
        save(page, "panel-bus-two-step.png")

        # a salvo with one refused crosspoint
        node.request("lock", user="operator2", router="studio", destination=7,
                     levels=["audio"])
        page = page_of()
        sign_in(page, node, "operator")
        page.click("#salvos-toggle")
        page.locator('.salvo[data-salvo="news"]').get_by_role("button", name="Take").click()
        expect(page.locator(".salvo-result li").first).to_be_visible()
        save(page, "panel-salvo-result.png")

        # a watcher: read-only, and why, on a tap
        page = page_of()
        sign_in(page, node, "watcher")
        page.locator('.xy-dest[data-port="2"]').click()
        page.locator('.xy-cell[data-d="2"][data-s="9"]').click(force=True)
        expect(page.locator("#reason")).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "panel-read-only.png"))
        made.append(out / "panel-read-only.png")
        page.context.close()

        # a bad token
        page = page_of()
        page.goto(node.url)
        page.fill("#login-token", "not-a-token")
        page.click("#login-submit")
        expect(page.locator("#login-message")).to_have_attribute("data-kind", "error")
        save(page, "panel-bad-token.png")

        # 4096x4096 on 16 levels: the bus view, filtered by a range
        big = factory(name="large", routers=[{
            "id": "large", "driver": "simulator", "levels": [f"L{i}" for i in range(1, 17)],
            "sources": 4096, "destinations": 4096, "label_store": "settings"}])
        big.request("route", user="operator", router="large", destination=4001, source=77,
                    levels=["L3", "L4"])
        page = page_of()
        sign_in(page, big, "operator")
        page.fill('input[data-filter="destination"]', "4000-4010,17")
        page.locator('.dest[data-port="4001"]:visible').click()
        save(page, "panel-large-router.png")
    finally:
        factory.stop_all()

    # a main/backup pair: the main killed, the panel on the backup
    from tests.failover.cluster import OPERATOR_TOKEN, Cluster

    cluster = Cluster(Path(tempfile.mkdtemp(prefix="tl-shots-pair-")))
    try:
        cluster.start_device()
        run_async(cluster.start_main_and_backup)
        page = page_of()
        page.goto(f"http://127.0.0.1:{cluster.api_ports['a']}/")
        page.fill("#login-token", OPERATOR_TOKEN)
        page.click("#login-submit")
        expect(page.locator("#banner")).to_have_text("Connected to a (Main is active)")
        expect(page.locator("#members")).to_contain_text("b Backup is idle")
        cluster.procs["a"].signal(signal.SIGKILL)
        expect(page.locator("#banner")).to_have_text("Connected to b (Backup is active)")
        page.wait_for_timeout(2500)  # the members list read again: a unreachable
        save(page, "panel-backup-active.png")
    finally:
        cluster.stop_all()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS),
                                             headless=True)
        try:
            for path in shoot(browser, out):
                print(path)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
