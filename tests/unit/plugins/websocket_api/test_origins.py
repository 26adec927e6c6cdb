"""The Origin policy of the WebSocket API (plugins/websocket_api/origins.py), as functions.

The same rules over real sockets, with a real node: tests/integration/test_websocket_origins.py.
"""

from __future__ import annotations

import pytest

from tieline.plugins.websocket_api.origins import (
    Origin,
    OriginPolicy,
    anonymous_allowed,
    member_origin,
    parse_origin,
)


@pytest.mark.parametrize("text, scheme, host, port, shown", [
    ("http://127.0.0.1:8181", "http", "127.0.0.1", 8181, "http://127.0.0.1:8181"),
    ("HTTPS://Panel.Example:443", "https", "panel.example", 443, "https://panel.example"),
    ("http://panel.example", "http", "panel.example", 80, "http://panel.example"),
    ("http://panel.example:80", "http", "panel.example", 80, "http://panel.example"),
    ("http://[::1]:8181", "http", "::1", 8181, "http://[::1]:8181"),
    ("http://[0:0:0:0:0:0:0:1]:8181", "http", "::1", 8181, "http://[::1]:8181"),
    ("http://localhost:8181", "http", "localhost", 8181, "http://localhost:8181"),
])
def test_origins_are_read_in_one_form(text, scheme, host, port, shown):
    origin = parse_origin(text)
    assert origin == Origin(scheme, host, port)
    assert str(origin) == shown


@pytest.mark.parametrize("text", [
    "null", "", "panel.example", "ftp://panel.example", "file://", "http://",
    "http://panel.example/", "http://panel.example/app", "http://panel.example?x",
    "http://panel.example#x", "http://user@panel.example", "http://u:p@panel.example",
    "http://panel.example:99999", "http://panel.example:8443.evil.example",
    "http://panel.example:-1", "http://pa nel.example", "http://panel.example\t",
    "http://pan\tel.example", "http://panel.example\n", "http://[::1", "http://::1:8181",
    "http://300.1.1.1", "http://1.2.3", "http://pänel.example", "http://panel.example.",
    "http://-panel.example", "http://*.example", "ws://panel.example",
])
def test_anything_else_is_no_origin(text):
    assert parse_origin(text) is None


@pytest.mark.parametrize("url, origin", [
    ("ws://10.0.0.2:8181", "http://10.0.0.2:8181"),
    ("wss://mcr-2.example:8443/", "https://mcr-2.example:8443"),
    ("WSS://MCR-2.example", "https://mcr-2.example"),
    ("ws://[fd00::2]:8181", "http://[fd00::2]:8181"),
])
def test_a_members_client_url_gives_its_panels_origin(url, origin):
    assert str(member_origin(url)) == origin


@pytest.mark.parametrize("url", ["http://10.0.0.2:8181", "tcp://10.0.0.2:8181", "ws://", "",
                                 "10.0.0.2:8181"])
def test_a_member_url_that_is_not_a_websocket_url_gives_none(url):
    assert member_origin(url) is None


@pytest.mark.parametrize("origin, anonymous", [
    (None, True),  # not a browser
    ("http://127.0.0.1:8181", True),
    ("http://127.1.2.3:8181", True),
    ("http://[::1]:8181", True),
    ("https://localhost:8443", True),
    ("http://evil.example:8181", False),  # DNS rebinding: the name can resolve to 127.0.0.1
    ("http://localhost.evil.example:8181", False),
    ("http://127.0.0.1.nip.io:8181", False),
    ("http://10.0.0.1:8181", False),
    ("http://0.0.0.0:8181", False),
])
def test_anonymous_rights_only_for_loopback_literals_and_localhost(origin, anonymous):
    assert anonymous_allowed(parse_origin(origin) if origin else None) is anonymous


def _policy(allowed=(), members=(), scheme="http") -> OriginPolicy:
    return OriginPolicy(scheme, allowed, lambda: list(members))


def test_own_panel_is_the_requests_own_host_on_the_api_port():
    policy = _policy()
    accepts = policy.accepts
    assert accepts(parse_origin("http://127.0.0.1:8181"), "127.0.0.1:8181", 8181) == "own panel"
    assert accepts(parse_origin("http://mcr-1.example:8181"), "MCR-1.example:8181",
                   8181) == "own panel"
    assert accepts(parse_origin("http://evil.example:8181"), "evil.example:8181",
                   8181) == "own panel"  # rebinding: same origin, but no anonymous rights
    assert accepts(parse_origin("http://mcr-1.example"), "mcr-1.example", 80) == "own panel"
    # another site, another port, another scheme, another host
    assert accepts(parse_origin("http://evil.example:8181"), "127.0.0.1:8181", 8181) is None
    assert accepts(parse_origin("http://127.0.0.1:9000"), "127.0.0.1:8181", 8181) is None
    assert accepts(parse_origin("https://127.0.0.1:8181"), "127.0.0.1:8181", 8181) is None
    # a Host naming another port than the one the connection came in on
    assert accepts(parse_origin("http://127.0.0.1:9000"), "127.0.0.1:9000", 8181) is None
    assert accepts(parse_origin("http://127.0.0.1"), "127.0.0.1", 8181) is None
    # no Host, or one that is no host
    assert accepts(parse_origin("http://127.0.0.1:8181"), None, 8181) is None
    assert accepts(parse_origin("http://127.0.0.1:8181"), "127.0.0.1:8181/x", 8181) is None


def test_own_panel_over_tls_is_https():
    policy = _policy(scheme="https")
    assert policy.accepts(parse_origin("https://mcr-1:8443"), "mcr-1:8443", 8443) == "own panel"
    assert policy.accepts(parse_origin("http://mcr-1:8443"), "mcr-1:8443", 8443) is None


def test_members_and_allowed_origins():
    members = ["ws://10.0.0.2:8181", None, "wss://mcr-3.example:8443"]
    policy = _policy(allowed=["https://Panel.example:443", "http://ops.example:8080"],
                     members=members)
    host, port = "10.0.0.1:8181", 8181
    for origin, why in [("http://10.0.0.2:8181", "cluster member"),
                        ("https://mcr-3.example:8443", "cluster member"),
                        ("https://panel.example", "allowed_origins"),
                        ("http://ops.example:8080", "allowed_origins"),
                        ("http://10.0.0.2:8182", None), ("https://10.0.0.2:8181", None),
                        ("http://mcr-3.example:8443", None), ("http://panel.example", None)]:
        assert policy.accepts(parse_origin(origin), host, port) == why, origin
    members.clear()  # members are asked at each handshake
    assert policy.accepts(parse_origin("http://10.0.0.2:8181"), host, port) is None
