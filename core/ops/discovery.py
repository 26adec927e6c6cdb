"""Finding tieline nodes on the local network: mDNS / DNS-SD (zeroconf).

A node advertises the service ``_tieline._tcp.local.``, instance name = its node name, on
the port of its first client API. Its TXT record (DNS-SD, RFC 6763 §6) holds:

========== =================================================================================
key        value
========== =================================================================================
txtvers    ``1``
node       the node's name
role       ``standalone``, ``main`` or ``backup``
state      ``active`` or ``standby``
epoch      the failover epoch (an integer)
api1 …     one key per client API, in settings order: its URL (``ws://0.0.0.0:8181``)
failover   the failover strategy's listen address (``HOST:PORT``), when it has one
========== =================================================================================

:class:`Advertiser` publishes one node and knows nothing of :class:`tieline.node.Node`
(:func:`advert_for` builds what it publishes from a node; :func:`advertising` runs it for a
node, following status changes); :func:`browse` lists the nodes that answer. Both can be
bound to some interfaces only (``interfaces=["192.0.2.10"]``), IPv4.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..events import NodeStatusChanged

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from ..node import Node

log = logging.getLogger(__name__)

SERVICE_TYPE = "_tieline._tcp.local."
TXT_VERSION = "1"
_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True, slots=True)
class NodeAdvert:
    """What a node says of itself on the network.

    :param node: the node's name (also the DNS-SD instance name).
    :param role: ``standalone``, ``main`` or ``backup``.
    :param state: ``active`` or ``standby``.
    :param epoch: the failover epoch.
    :param apis: client API URLs, as the node listens (a wildcard host is replaced by the
        node's address on the browsing side).
    :param failover: the failover strategy's ``HOST:PORT``, if any.
    """

    node: str
    role: str
    state: str
    epoch: int = 0
    apis: tuple[str, ...] = ()
    failover: str | None = None

    def properties(self) -> dict[str, str]:
        """The TXT record."""
        txt = {"txtvers": TXT_VERSION, "node": self.node, "role": self.role,
               "state": self.state, "epoch": str(self.epoch)}
        txt.update({f"api{i}": url for i, url in enumerate(self.apis, 1)})
        if self.failover:
            txt["failover"] = self.failover
        for key, value in txt.items():
            if len(key) + 1 + len(value.encode()) > 255:
                raise ValueError(f"mDNS TXT entry {key}={value!r} is longer than 255 bytes")
        return txt

    @property
    def port(self) -> int:
        """The SRV port: the first API's port, 0 without APIs."""
        for url in self.apis:
            with contextlib.suppress(ValueError):
                port = urlsplit(url).port
                if port:
                    return port
        return 0


def api_url(api: Any) -> str:
    """A client API as a URL: its ``describe()`` when that is one, else ``TYPE://LISTEN``."""
    text = api.describe()
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", text):
        return text
    return f"{api.name}://{api.options.get('listen', '')}"


def advert_for(node: Node) -> NodeAdvert:
    """What ``node`` advertises now (call it once its APIs listen, for their real ports)."""
    status = node.status
    failover = node.settings.failover or {}
    listen = failover.get("listen")
    return NodeAdvert(
        node=status.node, role=str(status.role), state=str(status.state), epoch=status.epoch,
        apis=tuple(api_url(api) for api in node.apis),
        failover=listen if isinstance(listen, str) else None,
    )


def parse_interfaces(text: str | None) -> list[str] | None:
    """``"192.0.2.10,127.0.0.1"`` -> the list; empty or None -> None (every interface).

    :raises ValueError: naming an entry that is not an IPv4 address.
    """
    if not text or not text.strip():
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if ipaddress.ip_address(part).version != 4:
                raise ValueError
        except ValueError:
            raise ValueError(f"mDNS interface {part!r} is not an IPv4 address of this machine "
                             "(e.g. 192.0.2.10)") from None
        out.append(part)
    return out


def _zeroconf(interfaces: Sequence[str] | None) -> AsyncZeroconf:
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    return AsyncZeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All,
                         ip_version=IPVersion.V4Only)


def _local_addresses(interfaces: Sequence[str] | None) -> list[str]:
    """The IPv4 addresses to publish: the interfaces given, else every non-loopback one."""
    if interfaces:
        return list(interfaces)
    import ifaddr

    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str)]
    outside = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    return outside or found or ["127.0.0.1"]


async def _reap(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` and wait for it; a cancellation of the caller itself propagates."""
    future.cancel()
    try:
        await future
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise


def _label(text: str) -> str:
    """A DNS label from a host or node name."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:63]
    return label or "tieline"


class Advertiser:
    """Publishes one node over mDNS until closed.

    :param interfaces: IPv4 addresses of the interfaces to use; None for every interface.
    """

    def __init__(self, interfaces: Sequence[str] | None = None) -> None:
        self.interfaces = list(interfaces) if interfaces else None
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._broadcasts: set[asyncio.Future[Any]] = set()

    @property
    def name(self) -> str | None:
        """The instance name registered (``studio-a._tieline._tcp.local.``; a node with the
        same name elsewhere makes it ``studio-a (2)._tieline._tcp.local.``)."""
        return self._info.name if self._info is not None else None

    def _service_info(self, advert: NodeAdvert, name: str, server: str,
                      addresses: list[str]) -> AsyncServiceInfo:
        from zeroconf.asyncio import AsyncServiceInfo

        return AsyncServiceInfo(SERVICE_TYPE, name, port=advert.port,
                                properties=advert.properties(), server=server,
                                parsed_addresses=addresses)

    def _track(self, broadcast: Any) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts.add(future)
        future.add_done_callback(self._broadcasts.discard)

    async def start(self, advert: NodeAdvert) -> None:
        """Probe for the name, then announce ``advert``.

        :raises OSError: when the mDNS sockets cannot be opened.
        """
        if self._zc is not None:
            raise RuntimeError("this Advertiser is already started")
        self._zc = _zeroconf(self.interfaces)
        try:
            name = f"{advert.node}.{SERVICE_TYPE}"
            server = f"{_label(socket.gethostname().split('.')[0])}.local."
            info = self._service_info(advert, name, server, _local_addresses(self.interfaces))
            self._track(await self._zc.async_register_service(info, allow_name_change=True))
        except BaseException:
            await self.close()
            raise
        self._info = info
        log.info("advertising node '%s' over mDNS as %s", advert.node, info.name)

    async def update(self, advert: NodeAdvert) -> None:
        """Publish ``advert`` in place of the previous one (same instance name)."""
        if self._zc is None or self._info is None:
            raise RuntimeError("start() the Advertiser before update()")
        old = self._info
        info = self._service_info(advert, old.name, old.server or "",
                                  old.parsed_addresses())
        self._track(await self._zc.async_update_service(info))
        self._info = info

    async def close(self) -> None:
        """Say goodbye (the node disappears from browsers at once) and close the sockets."""
        for future in list(self._broadcasts):
            await _reap(future)
        zc, self._zc, self._info = self._zc, None, None
        if zc is not None:
            await zc.async_close()


@contextlib.asynccontextmanager
async def advertising(node: Node, interfaces: Sequence[str] | None = None
                      ) -> AsyncIterator[None]:
    """Advertise ``node`` from when it has started until the block ends, following its
    status. A network that refuses mDNS is logged and leaves the node running."""
    task = asyncio.create_task(_advertise(node, interfaces), name="mDNS advertiser")
    try:
        yield
    finally:
        await _reap(task)


async def _advertise(node: Node, interfaces: Sequence[str] | None) -> None:
    from zeroconf import Error as ZeroconfError

    failures = (OSError, RuntimeError, ValueError, ZeroconfError)
    name = node.settings.node_name
    await node.started.wait()
    subscription = node.bus.subscribe("mDNS advertiser", maxsize=100_000)
    advertiser = Advertiser(interfaces)
    try:
        try:
            await advertiser.start(advert_for(node))
        except failures as exc:
            log.warning("node '%s' is not advertised over mDNS: %s", name, exc)
            return
        while True:
            async for event in subscription:
                if isinstance(event, NodeStatusChanged):
                    try:
                        await advertiser.update(advert_for(node))
                    except failures as exc:
                        log.warning("node '%s': mDNS still shows its previous status: %s",
                                    name, exc)
            # dropped (it cannot fall behind in practice): follow again from now on
            subscription = node.bus.subscribe("mDNS advertiser", maxsize=100_000)
            with contextlib.suppress(*failures):
                await advertiser.update(advert_for(node))
    finally:
        subscription.close("mDNS advertiser stopping")
        try:
            await advertiser.close()
        except failures as exc:
            log.warning("node '%s': mDNS goodbye not sent: %s", name, exc)


# -------------------------------------------------------------------------------------------
# Browsing
# -------------------------------------------------------------------------------------------


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


def _node_entry(info: AsyncServiceInfo) -> dict[str, Any]:
    props = {_text(k) or "": _text(v) for k, v in info.properties.items()}
    addresses = info.parsed_addresses()
    apis = []
    for i in range(1, 1 + len(props)):
        url = props.get(f"api{i}")
        if url is None:
            break
        parts = urlsplit(url)
        if (parts.hostname or "") in _WILDCARDS and addresses:
            host = addresses[0] if ":" not in addresses[0] else f"[{addresses[0]}]"
            url = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()
        apis.append(url)
    try:
        epoch: int | None = int(props.get("epoch") or "")
    except ValueError:
        epoch = None
    return {
        "name": info.name.removesuffix("." + SERVICE_TYPE),
        "node": props.get("node"), "role": props.get("role"), "state": props.get("state"),
        "epoch": epoch, "apis": apis, "failover": props.get("failover"),
        "host": info.server, "addresses": addresses, "port": info.port,
    }


async def browse(timeout: float = 3.0, interfaces: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """The tieline nodes that answer within ``timeout`` seconds, sorted by node name.

    Each is a dict: ``name`` (DNS-SD instance), ``node``, ``role``, ``state``, ``epoch``,
    ``apis`` (URLs; a wildcard listen address replaced by the node's address), ``failover``,
    ``host``, ``addresses``, ``port``.

    :param interfaces: IPv4 addresses of the interfaces to browse on; None for all.
    :raises OSError: when the mDNS sockets cannot be opened.
    """
    from zeroconf import DNSQuestionType, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

    names: dict[str, None] = {}

    def on_change(*, name: str, state_change: ServiceStateChange, **_: Any) -> None:
        if state_change is ServiceStateChange.Removed:
            names.pop(name, None)
        else:
            names[name] = None

    zc = _zeroconf(interfaces)
    try:
        # QM questions: answers come by multicast. The usual first QU question asks for a
        # unicast answer to port 5353, which another mDNS stack on this host (a tieline node,
        # avahi) sharing the port may receive instead of us.
        browser = AsyncServiceBrowser(zc.zeroconf, [SERVICE_TYPE], handlers=[on_change],
                                      question_type=DNSQuestionType.QM)
        try:
            await asyncio.sleep(timeout)
        finally:
            await browser.async_cancel()
        infos = [AsyncServiceInfo(SERVICE_TYPE, name) for name in names]
        # answers to the browse queries usually carry SRV, TXT and A already (cache hits)
        answered = await asyncio.gather(*(
            info.async_request(zc.zeroconf, max(500, int(timeout * 1000)),
                               question_type=DNSQuestionType.QM)
            for info in infos))
    finally:
        await zc.async_close()
    nodes = [_node_entry(info) for info, ok in zip(infos, answered, strict=True) if ok]
    return sorted(nodes, key=lambda n: (n["node"] or "", n["name"]))


__all__ = ["SERVICE_TYPE", "Advertiser", "NodeAdvert", "advert_for", "advertising", "browse",
           "parse_interfaces"]
