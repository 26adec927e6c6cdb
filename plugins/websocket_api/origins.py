"""Which web pages may open the WebSocket API, and which of them get anonymous rights.

A web page can open a WebSocket to any address its browser reaches, loopback included, and
its browser then names the page's site in the handshake's ``Origin`` header. Clients that
are not browsers (the Python client, the ``tieline`` command, control systems) send none,
and nothing here applies to them. A handshake carrying an ``Origin`` is accepted only when
the origin is

1. **the node's own panel**: the origin is ``http(s)://`` + the request's own ``Host``
   header, and that Host names the port the connection arrived on. The panel is served on
   the API's own address (``http.py``), so a page it serves passes; a page of any other
   site does not (its origin differs from the Host the browser sends here);
2. **the panel of another member of the node's cluster**: each member's advertised client
   URL as the failover strategy knows it (``peers_status()``'s ``url``), ``ws://`` read as
   ``http://`` and ``wss://`` as ``https://``. After a failover the panel a node served
   talks to the node that took over;
3. listed in the API's ``allowed_origins``.

Origins are compared in one form: scheme and host in lower case, the port always present
(a browser leaves out 80 for http and 443 for https; ``allowed_origins`` may give it or
not). Anything that is not an ``http`` or ``https`` origin (``null``, a path, user
information, a port out of range) matches nothing.

**DNS rebinding.** A foreign site can make its own name resolve to 127.0.0.1 after its page
has loaded; the page's requests then reach this node with ``Host`` and ``Origin`` both
naming the foreign site, and rule 1 accepts them: the page is, for the browser, the
node's own. Such a page must not act with the rights the node gives to software on its own
machine (``auth.loopback_anonymous_level``), so a connection that carried an ``Origin``
gets anonymous loopback rights only when that origin's host is a loopback IP literal
(``127.0.0.1``, ``[::1]`` …) or ``localhost``, names no foreign site can take over.
Everything else needs a token: the browser keeps the operator's token in the storage of
the origin it was typed into, which a foreign site's page cannot read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Origin", "OriginPolicy", "anonymous_allowed", "member_origin", "parse_origin"]

#: the port a browser leaves out of an origin, by scheme
DEFAULT_PORTS = {"http": 80, "https": 443}
#: the page scheme of a WebSocket URL scheme
PAGE_SCHEMES = {"ws": "http", "wss": "https"}
#: a host name as it may appear in an origin (after IDNA: ASCII only)
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


@dataclass(frozen=True, slots=True)
class Origin:
    """A web origin in the one form origins are compared in.

    :param scheme: ``http`` or ``https``.
    :param host: lower case; an IPv6 address without brackets.
    :param port: always present (80 or 443 when the text left it out).
    """

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as an :class:`Origin`; None when it is not an http or
    https origin (``null``, a path or a trailing ``/``, user information, a bad port …).

    >>> str(parse_origin("HTTPS://Panel.Example:443"))
    'https://panel.example'
    >>> parse_origin("http://[::1]:8181")
    Origin(scheme='http', host='::1', port=8181)
    >>> parse_origin("https://panel.example:8443.evil.example") is None
    True
    """
    if not text.isascii() or any(c <= " " or c == "\x7f" for c in text):
        return None  # urlsplit would drop tabs and newlines: a browser sends none
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if (scheme not in DEFAULT_PORTS or not host or parts.path or parts.query
            or parts.fragment or "?" in text or "#" in text
            or parts.username is not None or parts.password is not None):
        return None
    if ":" in host or host.replace(".", "").isdigit():
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        if ip.version == 6 and f"[{host}]" not in parts.netloc.lower():
            return None
        host = ip.compressed
    elif not _HOST_NAME.match(host):
        return None
    return Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)


def member_origin(url: str) -> Origin | None:
    """The origin of the panel served beside a WebSocket API URL (``ws://10.0.0.2:8181``
    gives ``http://10.0.0.2:8181``); None for anything else."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = PAGE_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        return None
    return parse_origin(f"{scheme}://{parts.netloc}")


def anonymous_allowed(origin: Origin | None) -> bool:
    """Whether a connection whose handshake carried ``origin`` may get the anonymous
    loopback level (the authenticator still requires the peer address to be loopback):
    always without an ``Origin`` (not a browser); with one, only when its host is a
    loopback IP literal or ``localhost``, which DNS rebinding cannot take over."""
    if origin is None:
        return True
    if origin.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(origin.host).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    """The origins one API accepts (see the module).

    :param scheme: ``http`` for a ``ws://`` API, ``https`` for ``wss://``.
    :param allowed: the API's ``allowed_origins``, as written in the settings.
    :param members: the client URLs of the other members of the node's cluster, asked at
        each handshake (members come and go).
    """

    def __init__(self, scheme: str, allowed: Iterable[str],
                 members: Callable[[], Iterable[str | None]]) -> None:
        self.scheme = scheme
        self.allowed = frozenset(o for o in map(parse_origin, allowed) if o is not None)
        self.members = members

    def accepts(self, origin: Origin, host: str | None, local_port: int | None) -> str | None:
        """Why ``origin`` may connect (``own panel``, ``cluster member``,
        ``allowed_origins``), or None when it may not.

        :param host: the request's ``Host`` header (None when absent or repeated).
        :param local_port: the port the connection arrived on.
        """
        if host is not None and local_port is not None:
            own = parse_origin(f"{self.scheme}://{host}")
            if own is not None and own.port == local_port and own == origin:
                return "own panel"
        if origin in self.allowed:
            return "allowed_origins"
        for url in self.members():
            if url and member_origin(url) == origin:
                return "cluster member"
        return None
