"""The web panel over HTTP on the WebSocket API's address (plugins/websocket_api/http.py):
real sockets, a raw HTTP client that sends every byte as written (no URL normalising).

First http.py alone, serving a folder of the test's own with traps beside it (a secret
outside, symbolic links in and out); then a real node serving the bundled panel, over
plain HTTP and over TLS, with the WebSocket API on the same port.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response

from tieline.plugins.websocket_api.http import (
    CONTENT_SECURITY_POLICY,
    PanelFiles,
    is_websocket,
    respond,
    secure,
)

from ..conftest import self_signed_pem
from .helpers import RawClient, api_url, running_node

SECURITY = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-cache",
}


def test_the_policy_is_the_strict_one():
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")


@dataclass
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        (value,) = self.headers[name.lower()]
        return value

    def assert_secure(self) -> None:
        for name, value in SECURITY.items():
            assert self.headers.get(name) == [value], (self.status, name, self.headers)


async def fetch(port: int, target: str, *, method: str = "GET",
                headers: dict[str, str] | None = None,
                tls: ssl.SSLContext | None = None) -> Answer:
    """One request, its bytes exactly as given (``target`` too), over a new connection;
    read until the server closes it."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1" if tls else None)
    fields = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items()), "", ""]
    writer.write("\r\n".join(lines).encode("latin-1"))
    try:
        async with asyncio.timeout(5):
            data = await reader.read()
    finally:
        writer.close()
    if not data:
        raise ConnectionError("the server closed the connection without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    answer = Answer(int(status_line.split()[1]), found, body)
    if "content-length" in found and method != "HEAD":
        assert int(answer.header("Content-Length")) == len(body)
    return answer


# -- http.py alone, on a folder of the test's own -----------------------------------------

FILES = {
    "index.html": b"<!doctype html><title>panel</title>",
    "panel.css": b"body { margin: 0 }",
    "js/app.js": b"export const x = 1;",
    "img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "img/logo.png": b"\x89PNG\r\n\x1a\n",
    "data/levels.json": b"{}",
    "fonts/a.woff2": b"wOF2",
    "LICENSE.txt": b"licence",
}
TYPES = {
    "index.html": "text/html; charset=utf-8", "panel.css": "text/css; charset=utf-8",
    "js/app.js": "text/javascript; charset=utf-8", "img/logo.svg": "image/svg+xml",
    "img/logo.png": "image/png", "data/levels.json": "application/json",
    "fonts/a.woff2": "font/woff2", "LICENSE.txt": "text/plain; charset=utf-8",
}


@pytest.fixture
async def panel_port(tmp_path: Path) -> AsyncIterator[int]:
    """http.py serving tmp_path/site/panel; next to it, secrets that must stay there."""
    site = tmp_path / "site"
    panel = site / "panel"
    for name, body in FILES.items():
        (panel / name).parent.mkdir(parents=True, exist_ok=True)
        (panel / name).write_bytes(body)
    (site / "server.py").write_text("SECRET = 'beside the panel'\n")
    (site / "secret.txt").write_text("beside the panel\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside\n")
    (panel / "leak.txt").symlink_to(outside / "secret.txt")
    (panel / "alias.html").symlink_to(panel / "index.html")
    (panel / "out").symlink_to(outside, target_is_directory=True)
    (panel / "server.py").write_text("not served: no content type\n")
    (panel / ".hidden.txt").write_text("not served: hidden\n")
    files = PanelFiles.load(panel)

    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        return None if is_websocket(request) else respond(request, files)

    def process_response(ws: ServerConnection, request: Request, response: Response) -> None:
        secure(response.headers)

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, process_request=process_request,
                     process_response=process_response) as server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("name", sorted(FILES))
async def test_each_file_with_its_type_and_the_security_headers(panel_port, name):
    answer = await fetch(panel_port, f"/panel/{name}")
    assert answer.status == 200
    assert answer.body == FILES[name]
    assert answer.header("Content-Type") == TYPES[name]
    assert answer.header("Connection") == "close"
    answer.assert_secure()
    assert "cross-origin-opener-policy" not in answer.headers  # plain HTTP: see the TLS test


async def test_root_is_the_index(panel_port):
    for target in ("/", "/?from=bookmark"):
        answer = await fetch(panel_port, target)
        assert (answer.status, answer.body) == (200, FILES["index.html"])
        assert answer.header("Content-Type") == "text/html; charset=utf-8"
        answer.assert_secure()


TRAVERSALS = [
    # plain and dot segments
    "/../server.py", "/panel/../server.py", "/panel/../secret.txt", "/panel/js/../../server.py",
    "/panel/./index.html", "/panel/js/../index.html", "/..", "/panel/..", "/panel/.",
    # percent-encoded dots and slashes, upper and lower case, doubly encoded
    "/panel/%2e%2e/server.py", "/panel/%2E%2E/server.py", "/panel/%2e%2e%2fserver.py",
    "/panel/..%2fserver.py", "/panel/..%2Fsecret.txt", "/%2e%2e/server.py",
    "/panel/%252e%252e/server.py", "/panel/%252e%252e%252fserver.py", "/panel/js%2fapp.js",
    "/panel/%2e/index.html", "/panel/.%2e/server.py", "/panel/%c0%ae%c0%ae/server.py",
    # backslashes
    "/panel/..\\server.py", "/panel/js\\app.js", "/panel/..%5cserver.py", "\\..\\server.py",
    # NUL, raw and encoded
    "/panel/index.html\x00.png", "/panel/index.html%00", "/panel/index.html%00.png",
    # absolute paths
    "//etc/passwd", "/panel//etc/passwd", "/panel/%2fetc%2fpasswd", "/etc/passwd",
    "/panel/C:/Windows/win.ini", "http://127.0.0.1/panel/../server.py",
    # symbolic links, to a file or folder outside and to a file inside; hidden; no type
    "/panel/leak.txt", "/panel/out/secret.txt", "/panel/alias.html", "/panel/.hidden.txt",
    "/panel/server.py",
    # no directory listing; nothing but / and /panel/<file>
    "/panel/", "/panel", "/panel/js/", "/panel/js", "/index.html", "/panel/index.html/",
    "/favicon.ico", "/panel/missing.js",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_and_everything_else_is_404(panel_port, target):
    answer = await fetch(panel_port, target)
    assert answer.status == 404, (target, answer)
    assert answer.body == b"404 Not Found\n"
    assert answer.header("Content-Type") == "text/plain; charset=utf-8"
    assert b"SECRET" not in answer.body and b"outside" not in answer.body
    answer.assert_secure()


async def test_head_is_get_without_the_body(panel_port):
    answer = await fetch(panel_port, "/panel/js/app.js", method="HEAD")
    assert (answer.status, answer.body) == (200, b"")
    assert answer.header("Content-Length") == str(len(FILES["js/app.js"]))
    answer.assert_secure()
    missing = await fetch(panel_port, "/panel/../server.py", method="HEAD")
    assert (missing.status, missing.body) == (404, b"")
    missing.assert_secure()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
                                    "CONNECT", "PROPFIND"])
async def test_other_methods_are_405(panel_port, method):
    answer = await fetch(panel_port, "/panel/index.html", method=method)
    assert answer.status == 405
    assert answer.header("Allow") == "GET, HEAD"
    answer.assert_secure()


async def test_an_unchanged_file_is_304_by_its_etag(panel_port):
    first = await fetch(panel_port, "/panel/panel.css")
    etag = first.header("ETag")
    assert etag == '"' + hashlib.sha256(FILES["panel.css"]).hexdigest()[:32] + '"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await fetch(panel_port, "/panel/panel.css", headers={"If-None-Match": value})
        assert (again.status, again.body) == (304, b""), value
        assert again.header("ETag") == etag
        again.assert_secure()
    changed = await fetch(panel_port, "/panel/panel.css", headers={"If-None-Match": '"old"'})
    assert (changed.status, changed.body) == (200, FILES["panel.css"])


async def test_a_file_changed_or_added_after_the_start_is_not_served(panel_port, tmp_path):
    panel = tmp_path / "site" / "panel"
    (panel / "panel.css").write_bytes(b"changed")
    (panel / "new.js").write_bytes(b"new")
    assert (await fetch(panel_port, "/panel/panel.css")).body == FILES["panel.css"]
    assert (await fetch(panel_port, "/panel/new.js")).status == 404


async def test_the_websocket_is_told_apart_by_its_upgrade_header(panel_port):
    from websockets.asyncio.client import connect

    for path in ("/", "/panel/index.html", "/anything"):
        async with connect(f"ws://127.0.0.1:{panel_port}{path}") as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"


# -- a real node serving the bundled panel --------------------------------------------------

def _node_settings(settings_dir, **api):
    return settings_dir({"tieline.json": {
        "node": {"name": "panel-http"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0", **api}],
        "auth": {"loopback_anonymous_level": 2},
    }})


def _port(node) -> int:
    return node.apis[0].server.sockets[0].getsockname()[1]


def _bundled(name: str) -> bytes:
    return (importlib.resources.files("tieline.plugins.websocket_api") / "panel" / name
            ).read_bytes()


async def test_a_node_serves_its_bundled_panel_beside_the_api(settings_dir):
    async with running_node(_node_settings(settings_dir)) as node:
        port = _port(node)
        index = await fetch(port, "/")
        assert index.status == 200
        assert index.body == _bundled("index.html")
        assert index.header("Content-Type") == "text/html; charset=utf-8"
        index.assert_secure()
        again = await fetch(port, "/panel/index.html")
        assert again.body == index.body
        # the API's own modules are beside the panel folder: never reachable
        for target in ("/panel/../server.py", "/panel/%2e%2e/server.py", "/../server.py",
                       "/panel/..%2fhttp.py", "/panel/../__init__.py", "/server.py",
                       "/panel/..\\origins.py"):
            answer = await fetch(port, target)
            assert answer.status == 404, target
            answer.assert_secure()
        post = await fetch(port, "/", method="POST")
        assert post.status == 405
        post.assert_secure()
        # the API on the same port, any path
        c = await RawClient.open(api_url(node) + "/panel/index.html")
        assert (await c.request("route", router="studio", destination=1, source=2))["ok"]
        await c.close()


async def test_refusals_and_bad_handshakes_carry_the_security_headers(settings_dir):
    async with running_node(_node_settings(settings_dir)) as node:
        port = _port(node)
        with pytest.raises(InvalidStatus) as info:
            await RawClient.open(api_url(node), origin="http://evil.example")
        refused = info.value.response
        assert refused.status_code == 403
        for name, value in SECURITY.items():
            assert refused.headers.get_all(name) == [value], name
        # an Upgrade without the rest of a handshake: websockets' own 400, secured too
        bad = await fetch(port, "/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert bad.status == 400
        bad.assert_secure()


async def test_over_tls_the_panel_is_https(settings_dir):
    folder = _node_settings(settings_dir, tls={"certificate": "cert.pem", "key": "key.pem"})
    cert, key = self_signed_pem()
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    trust = ssl.create_default_context(cadata=cert.decode())
    async with running_node(folder) as node:
        port = _port(node)
        index = await fetch(port, "/", tls=trust)
        assert (index.status, index.body) == (200, _bundled("index.html"))
        index.assert_secure()
        # a browser applies it to a secure origin only (and complains of it elsewhere)
        assert index.header("cross-origin-opener-policy") == "same-origin"
        for target in ("/panel/../server.py", "/panel/%2e%2e/server.py"):
            missing = await fetch(port, target, tls=trust)
            assert missing.status == 404
            assert missing.header("cross-origin-opener-policy") == "same-origin"
        with pytest.raises(ConnectionError):
            await fetch(port, "/")  # plain HTTP on the TLS port gets no answer
        # the panel's own origin, https://127.0.0.1:PORT, may open the API
        c = await RawClient.open(api_url(node), ssl=trust, origin=f"https://127.0.0.1:{port}")
        assert (await c.request("route", router="studio", destination=1, source=3))["ok"]
        await c.close()
