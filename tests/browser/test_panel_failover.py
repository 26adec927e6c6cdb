"""The operator's panel follows a failover by itself: a main/backup pair (tests/failover's
Cluster: the lease strategy with fast timings, the API's heartbeat_timeout_ms 600, a
simulator device process), the panel opened from the main; kill -9 of the main, then the
main back."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.failover.cluster import OPERATOR_TOKEN, Cluster

from .browsing import run_async
from .panelpage import cell, wait_until, xy_destination


@pytest.fixture
def pair(tmp_path):
    """Nodes a (main, active) and b (backup, idle) and their device, stopped afterwards."""
    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.start_device()
        run_async(cluster.start_main_and_backup)
        yield cluster
    finally:
        cluster.stop_all()


def device_source(cluster: Cluster, destination: int) -> int:
    """What the device itself holds on ``destination`` (1-based; level 0)."""
    return run_async(cluster.device_crosspoints)[destination - 1] + 1


def test_kill_the_main_then_bring_it_back(page, watch, pair):
    watch.expect_errors(r"WebSocket connection to .* failed")  # the dead node, refused
    banner = page.locator("#banner")
    page.goto(f"http://127.0.0.1:{pair.api_ports['a']}/")
    page.fill("#login-token", OPERATOR_TOKEN)
    page.click("#login-submit")
    expect(banner).to_have_text("Connected to a (Main is active)")
    expect(banner).to_have_attribute("data-tone", "ok")
    expect(page.locator("#members")).to_contain_text("b Backup is idle")

    killed = time.monotonic()
    pair.procs["a"].kill()
    expect(banner).to_have_text("Connected to b (Backup is active)")
    took = time.monotonic() - killed
    expect(banner).to_have_attribute("data-tone", "amber")
    print(f"panel on b, Backup is active, {took:.2f} s after kill -9 of a "
          "(lease 600 ms, API heartbeat budget 600 ms)")
    assert page.evaluate("window.tielinePanel.conn.link.url").rstrip("/") == pair.url("b")
    # routes through the backup, without a reload
    cell(page, 3, 9).click()
    expect(cell(page, 3, 9)).to_have_attribute("aria-pressed", "true")
    assert device_source(pair, 3) == 9
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

    pair.start_node("a")  # the main returns and takes its role back
    expect(banner).to_have_text("Connected to a (Main is active)", timeout=30_000)
    expect(page.locator("#members")).to_contain_text(re.compile(r"b Backup is idle"))
    expect(cell(page, 3, 9)).to_have_attribute("aria-pressed", "true")  # a's fresh snapshot
    cell(page, 3, 4).click()
    expect(cell(page, 3, 4)).to_have_attribute("aria-pressed", "true")
    wait_until(lambda: device_source(pair, 3) == 4, what="the device routed through a")
    expect(xy_destination(page, 3)).to_have_attribute("data-state", "idle")


def test_a_hung_main_is_left_within_the_heartbeat_budget(page, watch, pair):
    """SIGSTOP: the connection stays open but the node says nothing; the panel declares it
    dead after the API's heartbeat_timeout_ms (600 ms) and moves on."""
    import signal

    watch.expect_errors(r"WebSocket connection to .* failed")
    banner = page.locator("#banner")
    page.goto(f"http://127.0.0.1:{pair.api_ports['a']}/")
    page.fill("#login-token", OPERATOR_TOKEN)
    page.click("#login-submit")
    expect(banner).to_have_text("Connected to a (Main is active)")
    page.evaluate("""() => { window.__lost = null;
      window.tielinePanel.conn.addEventListener('phase', (e) => {
        if (e.detail.phase === 'lost' && window.__lost === null) window.__lost = performance.now(); });
    }""")
    stopped_at = page.evaluate("performance.now()")
    pair.procs["a"].signal(signal.SIGSTOP)
    try:
        expect(banner).to_have_text("Connected to b (Backup is active)")
        lost_after = page.evaluate("window.__lost") - stopped_at
    finally:
        pair.procs["a"].signal(signal.SIGCONT)
    print(f"a declared dead {lost_after:.0f} ms after SIGSTOP (budget 600 ms)")
    # the last message from a may have come up to a heartbeat (200 ms) before the stop,
    # and the watchdog checks every 50 ms (one more check when the page itself was late)
    assert lost_after <= 600 + 100 + 50 * 2 + 200, lost_after
    cell(page, 5, 1).click()
    expect(cell(page, 5, 1)).to_have_attribute("aria-pressed", "true")


def test_a_panel_opened_on_the_idle_backup_moves_to_the_active_main(page, watch, pair):
    """The backup's page connects to the backup, which is standby and names the main: the
    panel moves there (the main accepts the backup's panel as a member's) and routes."""
    page.goto(f"http://127.0.0.1:{pair.api_ports['b']}/")
    page.fill("#login-token", OPERATOR_TOKEN)
    page.click("#login-submit")
    expect(page.locator("#banner")).to_have_text("Connected to a (Main is active)")
    assert page.evaluate("window.tielinePanel.conn.link.url").rstrip("/") == pair.url("a")
    cell(page, 2, 7).click()
    expect(cell(page, 2, 7)).to_have_attribute("aria-pressed", "true")
    assert device_source(pair, 2) == 7


def test_a_standby_node_s_panel_is_read_only_and_names_the_active_node(page, watch, pair):
    """A page the active main will not take: opened from the idle backup under another name
    (http://localhost:PORT, while the cluster knows the backup as 127.0.0.1:PORT), the
    main refuses its origin (403: not a member's panel, not in allowed_origins). The panel
    stays on the standby backup: read-only, saying which node is active, and a tap on a
    crosspoint says why and routes nothing."""
    watch.expect_errors(r"WebSocket connection to .* failed")  # the main's 403
    page.goto(f"http://localhost:{pair.api_ports['b']}/")
    page.fill("#login-token", OPERATOR_TOKEN)
    page.click("#login-submit")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Connected to b (Backup is idle)")
    active = re.compile(rf"the active node is (a|127\.0\.0\.1:{pair.api_ports['a']})")
    expect(banner).to_contain_text(re.compile(r"read-only: " + active.pattern))
    before = device_source(pair, 6)
    cell(page, 6, 11).click(force=True)
    expect(page.locator("#reason")).to_contain_text("Read-only: node b is standby")
    expect(page.locator("#reason")).to_contain_text(active)
    expect(cell(page, 6, 11)).not_to_have_attribute("aria-pressed", "true")
    assert device_source(pair, 6) == before  # nothing was sent
