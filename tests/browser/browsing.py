"""The browser tests' machinery: Debian's Chromium driven by Playwright, a watch on what a
page logs, real tieline nodes as processes, and a "foreign site" to load pages from.

Why Playwright (pip ``playwright``, Apache-2.0) and not Selenium: its locators and
``expect`` assertions wait and retry by themselves (a panel shows a route only once the API
confirms it, so every check is a wait); console messages, uncaught errors and WebSocket
frames are events of the page; a browser *context* is a fresh profile (its own
sessionStorage) in the same browser, so two operators side by side cost no second launch;
and when the test process dies, even by SIGKILL, its driver takes Chromium down with it
(Selenium's chromedriver and Chromium outlive it). It never downloads a browser here: the
package's own ``playwright install`` is never run, and ``executable_path`` names Debian's
``/usr/bin/chromium`` (``tests/run`` installs it).

Playwright's *sync* API is used: tests are plain ``def`` functions (the sync API refuses to
run inside a running asyncio loop), and nodes run as ``tieline run`` processes, as an
operator runs them, so a node can be killed with SIGKILL and the browser waits never hold up
a node's loop.

The browser is kept off every network but loopback: ``--host-resolver-rules`` answers "not
found" for every name (Chromium otherwise looks up Google's hosts at start) except
``localhost``, loopback addresses, and the names in :data:`LOOPBACK_NAMES`, which all lead
to 127.0.0.1 (a foreign site's name, or one that resolves to loopback as in DNS rebinding).
"""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tieline.auth import hash_token, new_token
from tieline.kit.testing import write_settings

from tests.etcdserver import in_ci
from tests.failover.cluster import TIELINE, Proc, free_ports, wait_port

T = TypeVar("T")

#: Debian's Chromium (package chromium); Playwright is pointed at it, never at a download
CHROMIUM = "/usr/bin/chromium"

#: names that lead to 127.0.0.1 in the browser only (no DNS): a site of another name than
#: the node's, on this machine (``http://foreign.test:PORT/``), and a name standing for one
#: that an attacker's DNS resolves to 127.0.0.1 (``http://rebind.test:PORT/``)
LOOPBACK_NAMES = ("foreign.test", "rebind.test", "panel.test")

#: Chromium's switches, beside those Playwright passes (--headless, --no-sandbox, a fresh
#: --user-data-dir it removes on close, ...). As root Chromium needs --no-sandbox; the rest
#: keep it from reaching out (sync, component updates, background requests, QUIC) and
#: from resolving any name but ours (see the module doc).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=" + ", ".join(
        [f"MAP {name} 127.0.0.1" for name in LOOPBACK_NAMES]
        + ["MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.0.0.1", "EXCLUDE [::1]"]),
)

#: the panel's Content-Security-Policy, as decided for issue 15 (no inline script or style)
STRICT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return ("the Python package playwright is not installed (pip install -e '.[test]'; "
                "./tests/run installs it)")
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is missing: install Debian's chromium package "
                "(apt-get install chromium; ./tests/run installs it as root)")
    return None


def require_browser() -> None:
    """Skip the calling test when the browser cannot run, or fail it in CI (CI=true), where
    ``tests/run`` must have installed it."""
    import pytest

    reason = browser_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_pids(marker: str) -> list[int]:
    """The processes whose command line holds ``marker`` (a browser's profile folder, which
    each of its processes carries): [] once that browser is gone."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if marker.encode() in cmdline and b"chromium" in cmdline:
            pids.append(int(entry))
    return pids


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the name may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    return children


def browser_profile(root_pid: int | None = None) -> str | None:
    """The profile folder (--user-data-dir) of the Chromium that this process (through
    Playwright's driver) started, or None: it tells that browser's processes from others'."""
    children = _children()
    todo = list(children.get(root_pid or os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        for arg in args:
            if arg.startswith(b"--user-data-dir="):
                return arg.split(b"=", 1)[1].decode()
    return None


def run_async(make: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run a coroutine (``make()`` creates it) to its end in a thread of its own, with its
    own event loop, and return its result or raise its exception.

    While Playwright's sync API is open, this thread counts as running an event loop (its
    loop waits in a greenlet between calls), so ``asyncio.run`` here fails with "cannot be
    called from a running event loop"; tests/failover's async helpers go through this.
    """
    result: list[T] = []
    error: list[BaseException] = []

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await make()

    def body() -> None:
        try:
            result.append(asyncio.run(bounded()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            error.append(e)

    thread = threading.Thread(target=body, name="run_async")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# -- what a page says ------------------------------------------------------------------------

#: set up in every page before its own scripts, CSP or not (Playwright injects it outside
#: the page's policy): each securitypolicyviolation is handed to the test process
_CSP_RECORDER = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.__tielineCspViolation({directive: e.effectiveDirective || e.violatedDirective,
                                blocked: e.blockedURI, source: e.sourceFile,
                                line: e.lineNumber, sample: e.sample,
                                disposition: e.disposition});
}, true);
"""


@dataclass
class PageWatch:
    """What a browser context's pages logged: console messages, uncaught errors, Content
    Security Policy violations, WebSockets opened. Filled as the browser reports them (the
    sync API delivers events while a test calls into Playwright).

    :ivar console: every console message as ``(type, text, url)``.
    :ivar errors: console errors and uncaught exceptions, as text.
    :ivar csp_violations: each violation as a dict (``directive``, ``blocked``, ``source``,
        ``line``, ``sample``, ``disposition``).
    :ivar websockets: every WebSocket the pages opened (``playwright`` WebSocket objects:
        ``url``, ``is_closed()``; count them to check that a page does not retry in a storm).
    :ivar requests: every HTTP request the pages made (``playwright`` Request objects:
        ``url``, ``method``, ``resource_type``).
    """

    console: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp_violations: list[dict[str, Any]] = field(default_factory=list)
    websockets: list[Any] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    #: the pages watched (Playwright Page objects)
    pages: list[Any] = field(default_factory=list)
    #: patterns (regular expressions) of errors the test expects; they are not failures
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def attach(self, context: Any) -> None:
        """Record what every page of ``context`` (a Playwright BrowserContext) reports."""
        context.expose_binding("__tielineCspViolation",
                               lambda _source, v: self.csp_violations.append(v))
        context.add_init_script(_CSP_RECORDER)
        context.on("page", self.watch_page)

    def watch_page(self, page: Any) -> None:
        self.pages.append(page)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.on("websocket", self._on_websocket)
        page.on("request", self._on_request)

    def _on_request(self, request: Any) -> None:
        self.requests.append(request)

    def _on_pageerror(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error.name}: {error.message}")

    def _on_websocket(self, websocket: Any) -> None:
        self.websockets.append(websocket)

    def _on_console(self, message: Any) -> None:
        location = message.location or {}
        self.console.append((message.type, message.text, location.get("url", "")))
        if message.type == "error":
            where = location.get("url", "")
            # "Failed to load resource: ... 404" names no resource: add where it was
            self.errors.append(f"{message.text} ({where})" if where and where not in
                               message.text else message.text)

    def settle(self, ms: float = 50) -> bool:
        """Let Playwright deliver what the browser reported so far: the sync API hands
        events over only while a call into it waits (any page's call serves every page).
        False when every page of this watch is closed (nothing waited)."""
        for page in self.pages:
            if not page.is_closed():
                page.wait_for_timeout(ms)
                return True
        return False

    def expect_errors(self, *patterns: str) -> None:
        """Errors matching any of ``patterns`` (re.search) are expected by the test: a
        refused WebSocket, say, makes Chromium log one."""
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected_errors(self) -> list[str]:
        """Errors no pattern of :meth:`expect_errors` accounts for. A CSP violation logs an
        error too; it is reported among :attr:`csp_violations`, not here."""
        return [e for e in self.errors
                if "Content Security Policy" not in e
                and not any(p.search(e) for p in self.expected)]

    def assert_clean(self) -> None:
        """Assert that no page logged an unexpected error and that nothing broke the Content
        Security Policy (the panel must run under the strict CSP, with no violation)."""
        problems = [f"console error: {e}" for e in self.unexpected_errors()]
        problems += [f"CSP violation: {v}" for v in self.csp_violations]
        assert not problems, "the page was not clean:\n  " + "\n  ".join(problems)

    def wait_for_csp_violation(self, page: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first CSP violation, waiting for it while the page runs."""
        deadline = time.monotonic() + timeout
        while not self.csp_violations:
            if time.monotonic() > deadline:
                raise AssertionError(f"no CSP violation within {timeout} s; console: "
                                     f"{self.console}")
            page.wait_for_timeout(20)  # lets Playwright deliver the page's events
        return self.csp_violations[0]


#: the watch of each page the fixtures made, by id(page)
watches: dict[int, PageWatch] = {}


def watch_of(page: Any) -> PageWatch:
    """The watch of a page that the ``page`` or ``new_page`` fixture made."""
    return watches[id(page)]


# -- a static site -----------------------------------------------------------------------------

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


class StaticSite:
    """A tiny web site on 127.0.0.1 (its own port, its own thread): the files it is given,
    from memory, each with the ``csp`` header when one is given; 404 for anything else.

    Pages of this site are of another origin than any node's panel: load one with
    :meth:`url` and its scripts are "a web page of another site open in the operator's
    browser". ``url(path, host="foreign.test")`` gives it a name that is not a loopback
    literal (see :data:`LOOPBACK_NAMES`).
    """

    def __init__(self, files: Mapping[str, str | bytes], *, csp: str | None = STRICT_CSP,
                 headers: Mapping[str, str] | None = None) -> None:
        self.files = {("/" + k.lstrip("/")): (v.encode() if isinstance(v, str) else v)
                      for k, v in files.items()}
        self.files.setdefault("/favicon.ico", b"")  # browsers ask for it on every page
        self.csp = csp
        self.headers = dict(headers or {})
        #: every request's (method, path, headers), to see what a browser sent
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                site.requests.append(("GET", self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                body = site.files.get("/index.html" if path == "/" else path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", _TYPES.get(Path(path).suffix,
                                                            "text/html; charset=utf-8"))
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if site.csp is not None:
                    self.send_header("Content-Security-Policy", site.csp)
                for name, value in site.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the test reads site.requests instead

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # a short poll: close() waits for it (the default is half a second)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       name="static site", daemon=True)
        self.thread.start()

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    def origin(self, host: str = "127.0.0.1") -> str:
        """The Origin a browser sends from this site's pages under ``host``."""
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# -- tieline nodes -----------------------------------------------------------------------------

#: the users every test node has, by name: their permission levels (1 watch, 2 route,
#: 3 administer); two level-2 users, for protect and lock (one refuses the other)
USERS = {"watcher": 1, "operator": 2, "operator2": 2, "admin": 3}

#: the router of a test node unless the test gives its own: the in-process simulator
DEFAULT_ROUTER: dict[str, Any] = {
    "id": "studio", "driver": "simulator", "levels": ["video", "audio"],
    "sources": 16, "destinations": 16, "label_store": "settings"}


class APIError(AssertionError):
    """The node refused a request made by :meth:`PanelNode.request` (``response`` holds
    its answer)."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(f"the API refused the request: {response.get('error')}")
        self.response = response


def api_request(ws_url: str, message_type: str, *, token: str | None,
                timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """One request to a node's WebSocket API over a connection of its own (hello with
    ``token`` first): the response message, whether ``ok`` or not. Synchronous, for the
    browser tests' set-up and checks (what the API says, beside what the panel shows).

    :raises APIError: when the hello is refused.
    """
    from websockets.sync.client import connect

    with connect(ws_url, open_timeout=timeout, proxy=None, compression=None) as ws:
        json.loads(ws.recv(timeout))  # the server's greeting
        for request_id, (mtype, body) in enumerate(
                [("hello", {"protocol": 1, **({"token": token} if token else {})}),
                 (message_type, fields)], start=1):
            ws.send(json.dumps({"type": mtype, "id": request_id, **body}))
            deadline = time.monotonic() + timeout
            while True:
                message = json.loads(ws.recv(max(0.0, deadline - time.monotonic())))
                if message.get("type") == "response" and message.get("id") == request_id:
                    break
            if mtype == "hello" and not message.get("ok"):
                raise APIError(message)
        return message


@dataclass
class PanelNode:
    """A tieline node run as ``tieline run`` (a process of its own) for the browser.

    :ivar name: the node's name.
    :ivar port: its WebSocket API's port on 127.0.0.1 (fixed: a restart keeps it).
    :ivar url: the panel, ``http://127.0.0.1:PORT/``.
    :ivar ws_url: the API, ``ws://127.0.0.1:PORT``.
    :ivar tokens: each user's token, by user name (:data:`USERS`).
    :ivar folder: the settings folder (change files there, then :meth:`restart`).
    """

    name: str
    port: int
    tokens: dict[str, str]
    folder: Path
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def url_as(self, host: str) -> str:
        """The panel's URL under another name that leads here (:data:`LOOPBACK_NAMES`)."""
        return f"http://{host}:{self.port}/"

    def token(self, level: int) -> str:
        """The token of the first user of permission ``level`` (1, 2 or 3)."""
        return next(self.tokens[n] for n, lv in USERS.items() if lv == level)

    def request(self, message_type: str, *, user: str | None = "admin",
                **fields: Any) -> dict[str, Any]:
        """One API request as ``user`` (None: anonymous): the response; :class:`APIError`
        when the API refused it (``ok`` false)."""
        response = api_request(self.ws_url, message_type,
                               token=self.tokens[user] if user else None, **fields)
        if not response.get("ok"):
            raise APIError(response)
        return response

    def status(self) -> dict[str, Any] | None:
        """The node's status report (role, state, status text, routers online), or None
        when it does not answer."""
        from websockets.exceptions import WebSocketException

        try:
            return self.request("status")["result"]
        except (OSError, TimeoutError, WebSocketException, APIError, ValueError):
            return None  # not up (yet), or going

    def start(self, *, online: bool = True, timeout: float = 30.0) -> PanelNode:
        """Start the process and wait until the API answers (and, with ``online``, every
        router is online)."""
        self.proc.start()
        try:
            wait_port(self.port, timeout=timeout)
            deadline = time.monotonic() + timeout
            while True:
                status = self.status()
                if status is not None and (not online or all(
                        r["online"] for r in status["routers"])):
                    return self
                if self.proc.popen is not None and self.proc.popen.poll() is not None:
                    raise AssertionError(f"node {self.name} stopped:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"node {self.name} not ready after {timeout} s "
                                         f"(status {status}):\n{self.log()}")
                time.sleep(0.05)
        except BaseException:
            self.proc.kill()
            raise

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 10 s): the exit status."""
        return self.proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to clients or peers."""
        self.proc.kill()

    def restart(self, **kwargs: Any) -> PanelNode:
        self.stop()
        return self.start(**kwargs)

    def log(self) -> str:
        """What the node printed so far (stdout and stderr)."""
        return self.proc.output()


@dataclass
class Emulator:
    """A device emulator run as ``tieline emulate NAME`` on 127.0.0.1: a router for a
    driver to control, logging every command it receives.

    :ivar port: where it listens.
    :ivar transport: the ``transport`` block of a router that controls it.
    """

    name: str
    port: int
    proc: Proc
    command_log: Path

    @property
    def transport(self) -> dict[str, Any]:
        return {"type": "tcp", "host": "127.0.0.1", "port": self.port}

    def commands(self) -> list[dict[str, Any]]:
        """Every command received so far: ``{"t": unix time, "peer": ..., "command":
        repr}`` (``tieline emulate --command-log``)."""
        if not self.command_log.exists():
            return []
        return [json.loads(line) for line in self.command_log.read_text().splitlines()
                if line]

    def log(self) -> str:
        return self.proc.output()


class NodeFactory:
    """Makes :class:`PanelNode` processes under ``root`` and stops them all at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[PanelNode] = []
        self.emulators: list[Emulator] = []

    def __call__(self, *, routers: list[dict[str, Any]] | None = None,
                 api: Mapping[str, Any] | None = None, auth: Mapping[str, Any] | None = None,
                 settings: Mapping[str, Any] | None = None,
                 files: Mapping[str, object] | None = None, name: str | None = None,
                 port: int | None = None, start: bool = True, online: bool = True,
                 ) -> PanelNode:
        """A node with the simulator router (or ``routers``), a WebSocket API (and so the
        panel) on a free loopback port, and the users of :data:`USERS` with fresh tokens.

        :param routers: the ``routers`` block (default: :data:`DEFAULT_ROUTER`, 16x16,
            levels video and audio, labels kept in settings).
        :param api: more keys for the websocket API's entry (``panels``,
            ``allowed_origins``, ``heartbeat_timeout_ms``...).
        :param auth: more keys for ``auth`` (``loopback_anonymous_level``...).
        :param settings: more top-level keys of tieline.json (``failover``...).
        :param files: more files for the settings folder (``salvos.json``...): a str is
            written as it is, anything else as JSON.
        :param port: the API's port (default: a free one).
        :param start: start it (and wait until it serves); else call ``.start()``.
        :param online: when starting, also wait until every router is online.
        """
        name = name or f"panel{len(self.nodes) + 1}"
        port = port or free_ports(1)[0]
        tokens = {user: new_token() for user in USERS}
        folder = write_settings(self.root / name, {
            "tieline.json": {
                "node": {"name": name},
                "routers": routers if routers is not None else [DEFAULT_ROUTER],
                "apis": [{"type": "websocket", "listen": f"127.0.0.1:{port}", **(api or {})}],
                "auth": {"users_file": "users.json", **(auth or {})},
                **(settings or {}),
            },
            "users.json": {"users": [
                {"name": user, "level": level, "token_sha256": hash_token(tokens[user])}
                for user, level in USERS.items()]},
            **(files or {}),
        })
        proc = Proc(name, [TIELINE, "run", "--settings", str(folder), "--log-level", "INFO"],
                    self.root / f"{name}.log")
        node = PanelNode(name=name, port=port, tokens=tokens, folder=folder, proc=proc)
        self.nodes.append(node)
        if start:
            node.start(online=online)
        return node

    def emulator(self, name: str = "videohub", *, inputs: int = 16, outputs: int = 16,
                 levels: int = 1) -> Emulator:
        """Start ``tieline emulate name`` on a free loopback port and wait until it
        listens (stopped with the nodes)."""
        port = free_ports(1)[0]
        label = f"{name}{len(self.emulators) + 1}"
        command_log = self.root / f"{label}.commands.jsonl"
        self.root.mkdir(parents=True, exist_ok=True)
        proc = Proc(label, [TIELINE, "emulate", name, "--listen", f"127.0.0.1:{port}",
                            "--inputs", str(inputs), "--outputs", str(outputs),
                            "--levels", str(levels), "--command-log", str(command_log)],
                    self.root / f"{label}.log")
        made = Emulator(name=name, port=port, proc=proc, command_log=command_log)
        self.emulators.append(made)
        proc.start()
        wait_port(port)
        return made

    def stop_all(self) -> list[str]:
        """Stop every node and emulator: the logs of those that did not exit cleanly."""
        trouble = []
        for node in self.nodes:
            status = node.stop()
            if status not in (None, 0, -9):  # never started, clean, or killed by the test
                trouble.append(f"node {node.name} exited with {status}:\n{node.log()[-4000:]}")
        for emulator in self.emulators:
            if emulator.proc.stop() not in (None, 0, -9):
                trouble.append(f"emulator {emulator.name} failed:\n{emulator.log()[-4000:]}")
        return trouble
