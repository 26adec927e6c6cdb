"""Network addresses as settings and commands write them: ``HOST:PORT`` and WebSocket URLs.

One parser per form, used everywhere that form is read — by the settings schemas (the
formats ``host``, ``listen-address``, ``host-port`` and ``ws-url``, see :data:`FORMATS`), so
``tieline validate`` refuses exactly what the code that binds or connects would refuse,
and by that code itself:

``HOST``
    an IPv4 address, an IPv6 address or a host name.
``HOST:PORT``
    ``10.0.0.5:8181``, ``studio-a.local:7401``, ``[::1]:8181`` (an IPv6 address always in
    brackets). HOST is an IPv4 address, a bracketed IPv6 address or a host name (letters,
    digits, ``-``, ``_`` and dots). PORT is 1–65535; port 0 ("any free port") only where the
    address is one to listen on.
``ws://HOST[:PORT][/PATH]``, ``wss://…``
    how clients reach a node's WebSocket API; PORT 1–65535 when given.

Each parser raises :class:`ValueError` whose text names the value, what is wrong and what
to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

__all__ = ["FORMATS", "check_host", "parse_hostport", "parse_ws_url"]

_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_IPV4_LIKE = re.compile(r"[0-9.]+")


def check_host(host: str, text: str) -> str:
    """``host`` (as found in ``text``, without brackets) if it is an IP address or a host
    name; IPv6 addresses are given without their brackets."""
    if not host:
        raise ValueError(f"'{text}' has no host (an IP address or a host name)")
    if host.startswith("["):
        raise ValueError(f"'{text}': write the IPv6 address without brackets here")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{text}': '{host}' is not an IPv6 address") from None
        return host
    if _IPV4_LIKE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"'{text}': '{host}' is not an IPv4 address") from None
        return host
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"'{text}': '{host}' is not an IP address or a host name")
    return host


def _port(digits: str, text: str, *, port_zero: bool) -> int:
    low = 0 if port_zero else 1
    hint = " (0: any free port)" if port_zero else ""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"'{text}': the port must be a number from {low} to 65535{hint}")
    port = int(digits)
    if not low <= port <= 65535:
        raise ValueError(f"'{text}': port {port} is out of range; write a port from {low} "
                         f"to 65535{hint}")
    return port


def parse_hostport(text: str, *, default_port: int | None = None,
                   port_zero: bool = True) -> tuple[str, int]:
    """``"127.0.0.1:8181"`` -> ``("127.0.0.1", 8181)``; ``"[::1]:80"`` -> ``("::1", 80)``.

    :param text: ``HOST:PORT`` (see the module docstring).
    :param default_port: the port when ``text`` has none (else a missing port is an error).
    :param port_zero: whether port 0 is allowed: an address to listen on (any free port),
        not one to connect to.
    :raises ValueError: saying what is wrong and what to write.
    """
    host, port = _split(text, text)
    if port is None:
        if default_port is None:
            raise ValueError(f"'{text}' has no port; write HOST:PORT (an IPv6 address in "
                             "brackets: [::1]:8181)")
        return check_host(host, text), default_port
    return check_host(host, text), _port(port, text, port_zero=port_zero)


def _split(text: str, shown: str) -> tuple[str, str | None]:
    """``HOST[:PORT]`` -> (host, port text or None); ``shown`` is the value messages name.
    The host is not checked yet (:func:`check_host`)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"'{shown}': a '[' without its ']'; write e.g. [::1]:8181")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"'{shown}': expected ':PORT' after ']', e.g. [::1]:8181")
        if host and ":" not in host:
            raise ValueError(f"'{shown}': '{host}' is not an IPv6 address; only IPv6 "
                             "addresses go in brackets")
        return host, rest[1:] if rest else None
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    if ":" in host:
        raise ValueError(f"'{shown}': write an IPv6 address in brackets, e.g. [{host}]:{port}")
    return host, port


def parse_ws_url(text: str) -> tuple[str, str, int | None]:
    """``"ws://10.0.0.1:8181"`` -> ``("ws", "10.0.0.1", 8181)``; the port is None when the
    URL has none (the scheme's: 80 or 443).

    :raises ValueError: saying what is wrong and what to write.
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("ws", "wss"):
        raise ValueError(f"'{text}' is not a ws:// or wss:// URL; write e.g. "
                         "ws://10.0.0.1:8181")
    if any(char.isspace() for char in text):
        raise ValueError(f"'{text}': a URL has no spaces")
    netloc, _, tail = rest.partition("/")
    if "?" in netloc or "#" in netloc or "?" in tail or "#" in tail:
        raise ValueError(f"'{text}': no '?' or '#' part in the URL")
    if "@" in netloc:
        raise ValueError(f"'{text}': no user name or password in the URL; clients send "
                         "tokens instead")
    host, port = _split(netloc, text)
    return (scheme, check_host(host, text),
            None if port is None else _port(port, text, port_zero=False))


#: The string formats settings schemas may use (``{"type": "string", "format": …}``), each
#: checked by the function that reads the value; it raises :class:`ValueError`.
FORMATS: dict[str, Callable[[str], object]] = {
    "host": lambda text: check_host(text, text),
    "listen-address": lambda text: parse_hostport(text, port_zero=True),
    "host-port": lambda text: parse_hostport(text, port_zero=False),
    "ws-url": parse_ws_url,
}
