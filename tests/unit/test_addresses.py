"""tieline.addresses: one parser per address form, for the schemas and the code alike."""

from __future__ import annotations

import pytest

from tieline.addresses import FORMATS, check_host, parse_hostport, parse_ws_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8181", ("127.0.0.1", 8181)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8181", ("::1", 8181)),
        ("[::]:65535", ("::", 65535)),
        ("[fe80::1%eth0]:7401", ("fe80::1%eth0", 7401)),
        ("studio-a.local:7401", ("studio-a.local", 7401)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_good_host_and_port(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:70000", "'127.0.0.1:70000': port 70000 is out of range; write a port "
                            "from 0 to 65535 (0: any free port)"),
        ("[::1]:99999", "'[::1]:99999': port 99999 is out of range"),
        ("127.0.0.1:-1", "'127.0.0.1:-1': the port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:٣", "the port must be a number"),  # not an ASCII digit
        ("8181", "'8181' has no port; write HOST:PORT"),
        ("[::1]", "'[::1]' has no port"),
        ("::1:8181", "'::1:8181': write an IPv6 address in brackets, e.g. [::1]:8181"),
        ("[::1:8181", "a '[' without its ']'"),
        ("[::1]8181", "expected ':PORT' after ']'"),
        ("[10.0.0.1]:80", "'10.0.0.1' is not an IPv6 address; only IPv6 addresses go in "
                          "brackets"),
        ("[::g]:80", "'::g' is not an IPv6 address"),
        (":8181", "':8181' has no host"),
        ("300.1.1.1:80", "'300.1.1.1' is not an IPv4 address"),
        ("studio a:80", "'studio a' is not an IP address or a host name"),
        ("-studio:80", "is not an IP address or a host name"),
    ],
)
def test_bad_host_and_port(text, message):
    with pytest.raises(ValueError) as raised:
        parse_hostport(text)
    assert message in str(raised.value)


def test_port_zero_only_where_one_listens():
    assert parse_hostport("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="port 0 is out of range; write a port from 1 to "
                                         "65535$"):
        parse_hostport("127.0.0.1:0", port_zero=False)


def test_default_port():
    assert parse_hostport("10.0.0.2", default_port=7401) == ("10.0.0.2", 7401)
    assert parse_hostport("[::1]", default_port=7401) == ("::1", 7401)
    assert parse_hostport("10.0.0.2:7000", default_port=7401) == ("10.0.0.2", 7000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ws://127.0.0.1:8181", ("ws", "127.0.0.1", 8181)),
        ("wss://studio.example/api", ("wss", "studio.example", None)),
        ("ws://[::1]:8181/", ("ws", "::1", 8181)),
        ("ws://[::1]", ("ws", "::1", None)),
    ],
)
def test_good_ws_url(text, expected):
    assert parse_ws_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws://127.0.0.1:99999", "'ws://127.0.0.1:99999': port 99999 is out of range; write "
                                 "a port from 1 to 65535"),
        ("ws://127.0.0.1:0", "port 0 is out of range"),
        ("http://127.0.0.1:8181", "is not a ws:// or wss:// URL; write e.g. ws://10.0.0.1:8181"),
        ("127.0.0.1:8181", "is not a ws:// or wss:// URL"),
        ("ws://:8181", "'ws://:8181' has no host"),
        ("ws://::1:8181", "write an IPv6 address in brackets"),
        ("ws://user:pw@host:8181", "no user name or password in the URL"),
        ("ws://host:8181/?token=x", "no '?' or '#' part"),
        ("ws://host :8181", "a URL has no spaces"),
    ],
)
def test_bad_ws_url(text, message):
    with pytest.raises(ValueError) as raised:
        parse_ws_url(text)
    assert message in str(raised.value)


def test_host():
    assert check_host("::1", "::1") == "::1"
    for bad, message in (("[::1]", "without brackets"), ("", "has no host"),
                         ("999.1.1.1", "not an IPv4 address"), ("a b", "not an IP address")):
        with pytest.raises(ValueError, match=message):
            check_host(bad, bad)


def test_every_format_is_a_parser():
    """Each format refuses by raising ValueError, with the parser's words."""
    assert set(FORMATS) == {"host", "host-port", "listen-address", "ws-url"}
    for name, bad in (("host", "a b"), ("host-port", "h:0"), ("listen-address", "h:70000"),
                      ("ws-url", "http://h")):
        with pytest.raises(ValueError):
            FORMATS[name](bad)
