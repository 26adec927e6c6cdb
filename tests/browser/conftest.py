"""Fixtures of the browser tests (the why of each choice: browsing.py).

- ``browser``: Debian's Chromium, headless, launched once for tests/browser (package scope:
  while it is open this thread counts as running an event loop, so it must be closed before
  any asyncio test elsewhere runs). Skipped when Chromium or Playwright is missing, failed
  instead when CI=true.
- ``page``: a page in a fresh browser context (its own sessionStorage), watched: ``watch``
  is what it logged. ``new_page(**context_options)`` makes more, each in its own context
  (a second operator); ``watch_of(page)`` is a page's watch.
  When the test function returns, every page made must have logged no unexpected console
  error and no CSP violation (``watch.expect_errors(pattern)`` allows one); the test fails
  if one did.
- ``node(...)``: a tieline node as a ``tieline run`` process, with users of every level.
- ``emulator(name, ...)``: a device emulator process, for a node's router to control.
- ``site(files, csp=...)``: a static "foreign" web site on its own loopback port.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .browsing import (CHROMIUM, CHROMIUM_ARGS, STRICT_CSP, Emulator, NodeFactory, PageWatch,
                       StaticSite, browser_profile, chromium_pids, require_browser, watch_of,
                       watches)

#: the browser's launch, for the summary at the end of the run
_TIMINGS: dict[str, Any] = {}

#: how long a Playwright action may wait (ms) before failing the test (its default is 30 s)
ACTION_TIMEOUT_MS = 10_000


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test, so that teardown knows whether it passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


#: the watches of the pages a test made, checked when the test function returns
_PAGE_WATCHES = pytest.StashKey[list[PageWatch]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that returns has passed only if its pages are clean: no unexpected console
    error, no CSP violation (``PageWatch.assert_clean``). Checked here, while its nodes and
    sites still run: once they stop, an open page may well log errors."""
    result = yield
    made = item.stash.get(_PAGE_WATCHES, [])
    # what the browser has already reported reaches the watches (through any open page)
    next((True for watch in made if watch.settle()), None)
    for watch in made:
        watch.assert_clean()
    return result


def _passed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.passed


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (a ``playwright`` Browser).

    At the end: closed, and checked that none of its processes is left and its profile
    folder is gone (both are removed if not, and the last test errors)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    playwright = sync_playwright().start()
    driver_s = time.monotonic() - started
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS),
                                             headless=True)
    except BaseException:
        playwright.stop()
        raise
    _TIMINGS.update(version=browser.version, driver_s=driver_s,
                    launch_s=time.monotonic() - started - driver_s)
    profile = browser_profile()
    try:
        yield browser
    finally:
        closing = time.monotonic()
        browser.close()
        playwright.stop()
        _TIMINGS["close_s"] = time.monotonic() - closing
        _check_gone(profile)


def _check_gone(profile: str | None) -> None:
    """Fail when the browser left processes or its profile behind (after removing them)."""
    if profile is None:
        raise AssertionError("could not find the browser's profile folder among this "
                             "process's children: was it launched by Playwright?")
    deadline = time.monotonic() + 5
    while (pids := chromium_pids(profile)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = os.path.exists(profile)
    for pid in pids:
        try:
            os.kill(pid, 9)  # our own browser's processes: their command line names its profile
        except ProcessLookupError:
            pass
    if left:
        import shutil

        shutil.rmtree(profile, ignore_errors=True)
    assert not pids and not left, (
        f"the browser left {len(pids)} processes (killed) and "
        f"{'its profile ' + profile + ' (removed)' if left else 'no profile'} behind")


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``new_page(**context_options)`` -> a Playwright Page in a fresh context
    (its own cookies and sessionStorage: another operator), with a :class:`PageWatch`
    (``watch_of(page)``). ``context_options`` go to ``browser.new_context`` (``viewport=
    {"width": 1024, "height": 768}``, ``has_touch=True``...). Closed after the test. When
    the test function returns, each page must be clean (``PageWatch.assert_clean``, see
    ``pytest_runtest_call``); when it failed, each page's screenshot is saved and its path
    printed."""
    made: list[tuple[Any, Any, PageWatch]] = []
    request.node.stash[_PAGE_WATCHES] = []

    def make(**context_options: Any) -> Any:
        context = browser.new_context(**context_options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        watch = PageWatch()
        watch.attach(context)
        page = context.new_page()
        watches[id(page)] = watch
        made.append((context, page, watch))
        request.node.stash[_PAGE_WATCHES].append(watch)
        return page

    yield make
    failed = not _passed(request) and getattr(request.node, "rep_call", None) is not None
    for number, (context, page, _) in enumerate(made, start=1):
        if failed:
            _screenshot(page, tmp_path / f"page{number}.png")
        context.close()
        watches.pop(id(page), None)


def _screenshot(page: Any, path: Path) -> None:
    """Save what ``page`` shows, for a failed test's report (never fails the teardown)."""
    from playwright.sync_api import Error

    try:
        page.screenshot(path=str(path), full_page=True, timeout=5_000)
        print(f"screenshot of {page.url}: {path}")
    except Error as e:
        print(f"no screenshot of {page.url}: {e.message}")


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A Playwright Page in a fresh context, watched (``watch``)."""
    return new_page()


@pytest.fixture
def watch(page: Any) -> PageWatch:
    """What ``page`` logged: console messages, errors, CSP violations, WebSockets."""
    return watch_of(page)


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NodeFactory]:
    """Factory: ``node(routers=, api=, auth=, settings=, files=, name=, port=, start=,
    online=)`` -> a running :class:`PanelNode` (``tieline run``); see NodeFactory. Every
    node is stopped after the test; a failed test prints their logs."""
    factory = NodeFactory(tmp_path / "nodes")
    yield factory
    trouble = factory.stop_all()
    if not _passed(request):
        for made in factory.nodes:
            print(f"===== node {made.name}\n{made.log()[-6000:]}")
    assert not trouble, "\n".join(trouble)


@pytest.fixture
def emulator(node: NodeFactory) -> Callable[..., Emulator]:
    """Factory: ``emulator(name="videohub", inputs=16, outputs=16, levels=1)`` -> a running
    :class:`Emulator` (``tieline emulate``); its ``transport`` goes in a router block of
    ``node(routers=[...])``. Stopped after the test, after the nodes."""
    return node.emulator


@pytest.fixture
def site() -> Iterator[Callable[..., StaticSite]]:
    """Factory: ``site(files, csp=STRICT_CSP, headers=None)`` -> a :class:`StaticSite` on
    its own loopback port (files: {"index.html": "...", "js/app.js": "..."}; csp None
    sends no policy). Closed after the test."""
    sites: list[StaticSite] = []

    def make(files: dict[str, str | bytes], *, csp: str | None = STRICT_CSP,
             headers: dict[str, str] | None = None) -> StaticSite:
        made = StaticSite(files, csp=csp, headers=headers)
        sites.append(made)
        return made

    yield make
    for made in sites:
        made.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line on the browser's cost, when it was launched."""
    if _TIMINGS:
        terminalreporter.write_line(
            f"browser: Chromium {_TIMINGS['version']}: Playwright driver up in "
            f"{_TIMINGS['driver_s']:.2f} s, browser launched in {_TIMINGS['launch_s']:.2f} s, "
            f"closed in {_TIMINGS.get('close_s', float('nan')):.2f} s")
