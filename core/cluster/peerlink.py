"""The peer link: authenticated, encrypted messages between the nodes of a cluster.

Every node of a cluster holds the same **cluster key** (an Ed25519 key in OpenSSH format,
made once by ``tieline keys generate DIR`` and copied to every node). The link is SSH
(asyncssh), and the cluster key is used both ways:

- each node listens with an SSH server whose **host key is the cluster key** and which
  accepts only clients that **authenticate with the cluster key**. Every client that does
  not is refused and logged with the reason (it does not speak SSH; it holds another
  cluster key; it offered another key; it left without a word), at WARNING at most once
  per reason every ``refusal_log_interval_s``, the others at DEBUG and counted;
- each node keeps an **outgoing** SSH connection to every configured peer, and accepts only
  a server whose host key is the cluster's public key. So a machine without the key can
  neither join a cluster nor pose as one of its nodes.

Connections and directions
==========================

A node *sends* its messages on its outgoing connection to a peer, and *receives* that
peer's messages on the incoming connection the peer made to it. The only traffic the
other way is the handshake and **replies**: a request is answered on the connection it
came in on, so a reply reaches the requester even when the replier does not list it as a
peer. Outgoing connections are kept up forever, reconnecting with capped, jittered
backoff (:func:`tieline.devices.backoff`); each loss and each recovery is logged once.

On the wire: the SSH user name is the node's name, the session is the SSH subsystem
``tieline-peerlink``, and both ends open it with a hello
(``{"type": "peerlink.hello", "node", "protocol", "listen"}``) before anything else.

Messages
========

A message is a JSON object on one line (UTF-8, ``\\n``-terminated), at most
``max_message_bytes`` long (16 MiB by default: settings replication). Every message has a
string ``"type"``; the link adds the sender's node name as ``"node"``. Types starting with
``peerlink.`` belong to the link itself (the handshake). A line that is not such an object,
or one that is too long, is logged and the connection is dropped (the sender reconnects).

A message with an ``"id"`` is a **request** (:meth:`PeerLink.request` sets it); its answer
carries ``"reply_to"``: the request's id. The receiving node answers by returning a dict
from its ``on_message`` handler, or later by calling :meth:`PeerLink.reply`. A handler
that raises makes the reply an error (``{"type": "error", "error": {"code", "message"}}``),
which :meth:`PeerLink.request` raises as :class:`PeerRequestRefused`.

Handlers never hold up reading: the read loop of every connection only parses, records
``last_heard`` and queues. Messages from one node that are not requests are handled one at
a time, in the order sent; each request is handled in a task of its own (so a handler may
wait for later messages from the same node). When a connection ends, what it already
delivered is still handled. A handler that falls so far behind that ``max_queue_bytes`` of
messages wait for it gets its connection dropped and its pending work cancelled (logged).

Sending never blocks: :meth:`PeerLink.send` queues on the outgoing connection and returns
False when the peer is not connected. A peer that stops reading gets its connection dropped
once ``max_queue_bytes`` are waiting to be sent to it. Both ends use SSH keepalives so that
a connection to a node that stopped answering (a cable pull, SIGSTOP) ends within about
``heartbeat_timeout_s``. Nagle is off on both ends (TCP_NODELAY): heartbeats are small and
failover detection depends on their latency.

Peers
=====

A :class:`Peer` is a configured address (``"host:port"``, IPv6 as ``"[::1]:7401"``). Its
node name is learned from the handshake of the outgoing connection (and, until then, from
an incoming connection whose hello names that address as its listen address); incoming
messages are mapped to peers by that name. A node that connects to us but is not a
configured peer is handed to ``on_message`` as a :class:`Peer` whose ``address`` is None.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncssh

from ..devices import backoff
from ..errors import RemoteProtocolError, RequestError, TielineError
from ..logs import LogOnce, RateLimitedLog
from ..settings.jsonfile import write_bytes_atomic
from ..transports import parse_hostport

__all__ = [
    "DEFAULT_KEY_NAME",
    "MAX_MESSAGE_BYTES",
    "ClusterKeyError",
    "Peer",
    "PeerLink",
    "PeerLinkError",
    "PeerRequestRefused",
    "PeerTimeout",
    "format_address",
    "generate_cluster_key",
    "load_cluster_key",
]

log = logging.getLogger(__name__)

#: The cluster key's usual file name in a settings folder.
DEFAULT_KEY_NAME = "cluster.key"
#: The longest message (one JSON line, newline included) a link sends or accepts by default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The SSH subsystem a peer link session asks for; any other session is refused.
SUBSYSTEM = "tieline-peerlink"
#: Version of the message protocol, carried in the handshake.
PROTOCOL = 1
#: Message types of the link itself; not for applications.
RESERVED_PREFIX = "peerlink."
_HELLO = "peerlink.hello"
_KEY_FIX = ("every node of a cluster must hold the same cluster key: make it once with "
            "`tieline keys generate DIR` and copy it to every node")

OnMessage = Callable[["Peer", dict[str, Any]], Awaitable[Any] | Any]


# -------------------------------------------------------------------------------------------
# Errors
# -------------------------------------------------------------------------------------------


class ClusterKeyError(TielineError):
    """The cluster key file cannot be made or used; ``path`` names it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(message)


class PeerLinkError(TielineError):
    """A message could not be exchanged with a peer (``peer``: its address)."""

    def __init__(self, peer: str | None, message: str) -> None:
        self.peer = peer
        super().__init__(message)


class PeerTimeout(PeerLinkError, TimeoutError):
    """A peer did not reply to a request in time."""


class PeerRequestRefused(PeerLinkError):
    """A peer answered a request with an error; ``code`` and ``error`` (the whole dict) say why."""

    def __init__(self, peer: str | None, error: Mapping[str, Any]) -> None:
        self.code = str(error.get("code", "error"))
        self.error = dict(error)
        super().__init__(peer, f"peer {peer}: {self.code}: {error.get('message', '')}")


# -------------------------------------------------------------------------------------------
# The cluster key
# -------------------------------------------------------------------------------------------


def generate_cluster_key(folder: Path, name: str = DEFAULT_KEY_NAME, *,
                         force: bool = False) -> Path:
    """Make a new cluster key: ``folder/name`` (private, mode 0600) and ``name.pub``.

    The private key is Ed25519 in OpenSSH format, unencrypted (nodes start unattended).
    Each file is written atomically (a temporary file, fsynced, renamed). ``folder`` is
    created if needed.

    :param folder: where to write, usually the settings folder.
    :param name: the private key's file name.
    :param force: replace an existing key. Every node must then get the new key.
    :returns: the private key's path.
    :raises ClusterKeyError: the key (or its ``.pub``) exists and ``force`` is false, or
        the files cannot be written.
    """
    folder = Path(folder)
    path = folder / name
    public = folder / f"{name}.pub"
    if not force:
        existing = [p for p in (path, public) if os.path.lexists(p)]
        if existing:
            raise ClusterKeyError(
                existing[0], f"{existing[0]} already exists; not replacing the cluster key. "
                "Replacing it means copying the new key to every node of the cluster; "
                "to do that, run again with --force (force=True)")
    key = asyncssh.generate_private_key("ssh-ed25519", comment="tieline cluster key")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, key.export_private_key("openssh"), mode=0o600)
        write_bytes_atomic(public, key.export_public_key("openssh"), mode=0o644)
    except OSError as exc:
        raise ClusterKeyError(path, f"cannot write the cluster key {path}: "
                              f"{exc.strerror or exc}") from exc
    return path


#: loose cluster keys, by (key file, mode): warned about once in this process
_LOOSE_KEYS = LogOnce(log, max_keys=64)


def load_cluster_key(path: Path) -> asyncssh.SSHKey:
    """Read the cluster key (a private key in OpenSSH format).

    A key that group or others may read or write works, but is logged as a WARNING with
    the ``chmod`` that fixes it (once per file and mode in a process): whoever reads it can
    join the cluster.

    :raises ClusterKeyError: the file is missing, not a regular file, unreadable (its
        permissions), encrypted, or not a private key; the message names the file and
        the fix.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ClusterKeyError(path, f"cluster key {path} not found; {_KEY_FIX}") from None
    except OSError as exc:
        raise ClusterKeyError(path, f"cannot read the cluster key {path}: "
                              f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ClusterKeyError(path, f"cluster key {path} is not a regular file")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise ClusterKeyError(
            path, f"cannot read the cluster key {path}: permission denied (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); it must be readable by the user tieline "
            f"runs as: chown that user {path} && chmod 600 {path}") from None
    except OSError as exc:
        raise ClusterKeyError(path, f"cannot read the cluster key {path}: "
                              f"{exc.strerror or exc}") from None
    try:
        key = asyncssh.import_private_key(data)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise ClusterKeyError(
            path, f"{path} is not a usable cluster key ({exc}); expected an unencrypted "
            f"private key in OpenSSH format; {_KEY_FIX}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:  # once: the settings check, then the link
        _LOOSE_KEYS.log((path.resolve(), mode), logging.WARNING,
                        "cluster key %s has mode %04o: group or others may read it, and "
                        "whoever reads it can join the cluster; run: chmod 600 %s",
                        path, mode, path)
    return key


# -------------------------------------------------------------------------------------------
# Peers
# -------------------------------------------------------------------------------------------


def format_address(host: str, port: int) -> str:
    """``("10.0.0.2", 7401)`` -> ``"10.0.0.2:7401"``; IPv6 in brackets: ``"[::1]:7401"``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(value: tuple[str, int] | str) -> tuple[str, tuple[str, int]]:
    host, port = parse_hostport(value) if isinstance(value, str) else value
    return format_address(host, port), (host, port)


class Peer:
    """Another node, as this link knows it. Read its attributes; the link sets them.

    :ivar address: the configured ``"host:port"``; None for a node that connected to us but
        is not a configured peer.
    :ivar name: the node's name, once learned (it stays known while disconnected).
    :ivar connected: whether this node's outgoing connection to it is up (messages sent
        now are queued on it).
    """

    __slots__ = ("address", "name", "connected", "problem", "_heard")

    def __init__(self, address: str | None, heard: dict[str, float],
                 name: str | None = None) -> None:
        self.address = address
        self.name = name
        self.connected = False
        #: why the last connection attempt failed: "network", "key" (the other end does not
        #: hold our cluster key, or we not its), "protocol" or "config"; None once connected.
        self.problem: str | None = None
        self._heard = heard

    @property
    def last_heard(self) -> float | None:
        """``time.monotonic()`` of the last message received from this node (on any
        connection, handshakes and replies included); None if never."""
        return self._heard.get(self.name) if self.name is not None else None

    def heard_within(self, seconds: float) -> bool:
        """Whether a message from this node arrived in the last ``seconds``."""
        heard = self.last_heard
        return heard is not None and time.monotonic() - heard <= seconds

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Peer {self.address or '(unlisted)'} node={self.name!r} {state}>"


# -------------------------------------------------------------------------------------------
# One SSH session: line framing, bounded sending
# -------------------------------------------------------------------------------------------


class _Channel:
    """One peer link session (either direction): JSON lines in, JSON lines out.

    :param label: how log lines name it ("peer 10.0.0.2:7401", "node 'b' (10.0.0.2:50312)").
    """

    read_size = 65536

    def __init__(self, link: PeerLink, conn: Any, reader: Any, writer: Any,
                 label: str, host: str, port: int) -> None:
        self.link = link
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.label = label
        self.host = host  #: the other end's address
        self.where = format_address(host, port)
        self.node: str | None = None
        self.closed = False
        #: why this end dropped the connection, if it did.
        self.drop_reason: str | None = None
        self._buffer = bytearray()
        self._scanned = 0
        #: outgoing side: request id -> future of its reply.
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: incoming side: messages waiting for the handler, and their total size; None
        #: once the connection has ended.
        self.inbox: asyncio.Queue[tuple[dict[str, Any], int] | None] = asyncio.Queue()
        self.inbox_bytes = 0
        self.handler_stuck = False
        #: incoming side: tasks handling this connection's messages, and how many of
        #: them handle a request.
        self.tasks: set[asyncio.Task[Any]] = set()
        self.requests = 0

    def send_line(self, line: bytes) -> bool:
        """Queue one encoded message; drop the connection if too much is waiting."""
        if self.closed:
            return False
        try:
            self.writer.write(line)
        except (OSError, asyncssh.Error) as exc:
            self.abort(f"a write failed ({_describe(exc)})")
            return False
        unsent = self.writer.channel.get_write_buffer_size()
        if unsent > self.link.max_queue_bytes:
            # the read loop logs the loss, once, with this reason
            self.abort(f"{unsent} bytes were waiting to be sent (limit "
                       f"{self.link.max_queue_bytes}): it is not reading; dropped the "
                       "connection")
            return False
        return True

    async def read_message(self) -> tuple[dict[str, Any], int] | None:
        """The next message and its size in bytes; None at the end of the stream.

        :raises RemoteProtocolError: a line that is too long or not a message.
        """
        limit = self.link.max_message_bytes
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                self._scanned = 0
                return _decode(line), end + 1
            self._scanned = len(self._buffer)
            if len(self._buffer) >= limit:
                raise RemoteProtocolError(
                    f"a message longer than the limit of {limit} bytes", bytes(self._buffer[:64]))
            try:
                data = await self.reader.read(self.read_size)
            except (OSError, asyncssh.Error) as exc:
                if self.drop_reason is not None:
                    raise ConnectionAbortedError(self.drop_reason) from exc
                raise
            if not data:
                if self.drop_reason is not None:
                    raise ConnectionAbortedError(self.drop_reason)
                return None
            self._buffer += data

    def abort(self, reason: str | None = None) -> None:
        """Drop the connection at once (nothing more is sent); ``reason`` says why."""
        if reason is not None:
            log.debug("%s: %s", self.label, reason)
            if self.drop_reason is None:
                self.drop_reason = reason
        self.closed = True
        self.conn.abort()


class _Misconfigured(Exception):
    """The other end speaks the protocol, but the two cannot work together (same node
    name, another protocol version); the message says what to fix."""


def _not_json(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def _decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line, parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        raise RemoteProtocolError(f"not JSON ({exc})", line[:64]) from None
    except RecursionError:  # absurdly deep nesting
        raise RemoteProtocolError("not JSON (nested too deeply)", line[:64]) from None
    if not isinstance(message, dict):
        raise RemoteProtocolError("a message must be a JSON object", line[:64])
    if not isinstance(message.get("type"), str) or not isinstance(message.get("node"), str):
        raise RemoteProtocolError('a message needs a string "type" and "node"', line[:64])
    return message


def _encode(message: Mapping[str, Any], limit: int) -> bytes:
    line = json.dumps(message, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8") + b"\n"
    if len(line) > limit:
        raise ValueError(f"peer link message of type {message.get('type')!r} is "
                         f"{len(line)} bytes; the limit is {limit}")
    return line


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return ("its host key is not the cluster key, so it does not hold this cluster's key "
                f"or is not a tieline node; {_KEY_FIX}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"it refused this node's cluster key: the two nodes hold different keys; {_KEY_FIX}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


#: Linux's TCP_THIN_LINEAR_TIMEOUTS (``linux/tcp.h``; Python's socket module lacks it)
TCP_THIN_LINEAR_TIMEOUTS = getattr(socket, "TCP_THIN_LINEAR_TIMEOUTS", 16)


def _tune_socket(conn: Any) -> None:
    """Nagle off (asyncssh does it too; we do not rely on it), and linear retransmission
    timeouts while the stream is thin (Linux).

    A peer link carries a few small messages a heartbeat: a *thin stream*. When a segment
    of it is lost, TCP re-sends it after the retransmission timeout (200 ms at least), and
    by default doubles that timeout at each further loss of the same segment: 3 losses in
    a row hold every heartbeat behind them for 0.2 + 0.4 + 0.8 = 1.4 s, long enough to
    look like a dead node. With 10 % loss that happens to one heartbeat in a thousand. With
    ``TCP_THIN_LINEAR_TIMEOUTS`` the kernel keeps the timeout linear for the first 6
    re-sends of a thin stream (fewer than 4 segments in flight): 3 losses cost 0.6 s, and
    it takes 7 in a row (one in ten million at 10 % loss) to hold heartbeats back for the
    default lease (docs/failover.md, "Timing profiles")."""
    sock = conn.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):  # a kernel without it: the default backoff
                sock.setsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1)


class _ServerSide(asyncssh.SSHServer):
    """Authenticates one incoming SSH connection: only the cluster key gets in."""

    def __init__(self, link: PeerLink) -> None:
        self._link = link
        self._conn: Any = None
        self._address = "?"
        self._user: str | None = None
        self._wrong_key = False
        self._authenticated = False

    def connection_made(self, conn: Any) -> None:
        self._conn = conn
        self._since = time.monotonic()
        self._address = (conn.get_extra_info("peername") or ("?",))[0]
        self._link._server_conns.add(conn)
        _tune_socket(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._server_conns.discard(self._conn)
        if not self._authenticated:
            timed_out = time.monotonic() - self._since >= self._link.login_timeout_s * 0.95
            self._link._refused(self._address, self._user, self._wrong_key, exc, timed_out)

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh then checks that the client holds the private key (its signature)
        if key.public_data == self._link._public_data:
            return True
        self._wrong_key = True
        return False

    def auth_completed(self) -> None:
        self._authenticated = True


# -------------------------------------------------------------------------------------------
# The link
# -------------------------------------------------------------------------------------------


class PeerLink:
    """This node's end of the peer link: one SSH server, one outgoing connection per peer.

    Lifecycle: :meth:`start` (or ``async with``), then :meth:`close`; a link is not
    restarted (make a new one).

    :param node: this node's name, sent in every message.
    :param listen: ``(host, port)`` to listen on; port 0 picks a free one (see
        :attr:`listen_address`).
    :param peers: ``(host, port)`` of every other node's listener (see :meth:`set_peers`).
    :param key: the cluster key (:func:`load_cluster_key`).
    :param on_message: called with ``(peer, message)`` for every message received; may be
        a coroutine function. For a request, a dict it returns is sent back as the reply.
    :param heartbeat_timeout_s: a connection on which nothing arrives for about this long
        (SSH keepalives unanswered) is dropped.
    :param max_message_bytes: the longest message line sent or accepted.
    :param max_queue_bytes: per connection, how many bytes may wait to be sent, or wait
        for the handler, before the connection is dropped (default: 4 messages of the
        largest size).
    :param backoff_factory: reconnect delays (default :func:`tieline.devices.backoff`
        from 0.1 s growing to 2 s).
    :param max_concurrent_requests: per incoming connection, requests handled at once;
        more are answered with the error code ``busy``.
    :param advertise: the ``"host:port"`` the other nodes list for this one, sent in the
        hello so that they can map this node's messages to it before their own connection
        to it is up (default: the listen address, which does not help when listening on
        ``0.0.0.0``).
    """

    #: how long an outgoing connection may take (TCP, SSH and the handshake).
    connect_timeout_s = 5.0
    #: how long an incoming connection may take to authenticate and say hello.
    login_timeout_s = 10.0
    #: how long :meth:`close` waits for connections and handlers to end.
    close_timeout_s = 2.0
    #: refused connections and misbehaving peers: each reason is logged at WARNING at
    #: most once in this many seconds (the others at DEBUG, and counted).
    refusal_log_interval_s = 10.0

    def __init__(
        self, *, node: str, listen: tuple[str, int], peers: Sequence[tuple[str, int]],
        key: asyncssh.SSHKey, on_message: OnMessage, heartbeat_timeout_s: float,
        max_message_bytes: int = MAX_MESSAGE_BYTES, max_queue_bytes: int | None = None,
        backoff_factory: Callable[[], Iterator[float]] | None = None,
        max_concurrent_requests: int = 64, advertise: str | None = None,
    ) -> None:
        if not node:
            raise ValueError("a peer link needs this node's name")
        if heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat_timeout_s must be positive")
        self.node = node
        self.listen = listen
        self.key = key
        self.on_message = on_message
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_message_bytes = max_message_bytes
        self.max_queue_bytes = max_queue_bytes if max_queue_bytes is not None \
            else 4 * max_message_bytes
        if self.max_queue_bytes < max_message_bytes:
            raise ValueError("max_queue_bytes must be at least max_message_bytes")
        self.max_concurrent_requests = max_concurrent_requests
        self.advertise = _address(advertise)[0] if advertise else None
        self._backoff = backoff_factory or functools.partial(backoff, initial=0.1, cap=2.0)
        self._public = key.convert_to_public()
        self._public_data = key.public_data
        self._heard: dict[str, float] = {}
        self._peers: dict[str, Peer] = {}
        self._targets: dict[str, tuple[str, int]] = {}
        self._outgoing: dict[str, _Channel] = {}
        self._connectors: dict[str, asyncio.Task[None]] = {}
        self._kicks: dict[str, asyncio.Event] = {}
        self._unlisted: dict[str, Peer] = {}
        self._open_requests: dict[int, tuple[_Channel, Any, dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: Any = None
        self._server_conns: set[Any] = set()
        self._refusals = RateLimitedLog(log, self.refusal_log_interval_s)
        self._problems = RateLimitedLog(log, self.refusal_log_interval_s)
        self._started = False
        self._closing = False
        self.listen_address: tuple[str, int] | None = None
        """``(host, port)`` actually listened on, once started."""
        self.set_peers(peers)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen, and start connecting to every peer. Returns once listening.

        :raises PeerLinkError: the listen address cannot be bound.
        """
        if self._started:
            raise RuntimeError("a peer link is started once")
        self._started = True
        host, port = self.listen
        keepalive = self._keepalive()
        try:
            self._server = await asyncssh.create_server(
                functools.partial(_ServerSide, self), host, port,
                server_host_keys=[self.key], process_factory=self._session_started,
                encoding=None, config=None, login_timeout=self.login_timeout_s,
                public_key_auth=True, password_auth=False, kbdint_auth=False,
                host_based_auth=False, gss_host=None, x509_trusted_certs=None,
                allow_pty=False, agent_forwarding=False, **keepalive,
            )
        except OSError as exc:
            raise PeerLinkError(None, f"peer link: cannot listen on "
                                f"{format_address(host, port)}: {exc.strerror or exc}") from exc
        self.listen_address = (host, self._server.get_port())
        log.info("peer link: node '%s' listening on %s", self.node,
                 format_address(*self.listen_address))
        for address in self._targets:
            self._connect(address)

    async def close(self) -> None:
        """Stop listening, drop every connection, fail pending requests, end every task."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._server_conns):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_timeout_s)
            if pending:
                log.warning("peer link: %d task(s) did not end within %.1f s: %s",
                            len(pending), self.close_timeout_s,
                            ", ".join(t.get_name() for t in pending))
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout_s):
                    await self._server.wait_closed()

    async def __aenter__(self) -> PeerLink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _keepalive(self) -> dict[str, Any]:
        # a keepalive goes out after interval s of silence; the connection ends when
        # count_max of them go unanswered: about (count_max + 1) * interval
        return {"keepalive_interval": self.heartbeat_timeout_s / 3, "keepalive_count_max": 2}

    def _spawn(self, coro: Any, name: str, group: set[asyncio.Task[Any]] | None = None
               ) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        if group is not None:
            group.add(task)
        task.add_done_callback(functools.partial(self._reap, group))
        return task

    def _reap(self, group: set[asyncio.Task[Any]] | None, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if group is not None:
            group.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer link: task '%s' failed", task.get_name(),
                      exc_info=task.exception())

    # -- peers -----------------------------------------------------------------------------
    @property
    def peers(self) -> Mapping[str, Peer]:
        """The configured peers by address (a live, read-only view)."""
        return MappingProxyType(self._peers)

    def set_peers(self, addresses: Iterable[tuple[str, int] | str]) -> None:
        """Make ``addresses`` the peers: connect to new ones, drop removed ones.

        Incoming connections from a removed node stay (it still holds the key); its
        messages then come as from an unlisted node.
        """
        wanted = dict(_address(a) for a in addresses)
        for address in [a for a in self._targets if a not in wanted]:
            del self._targets[address]
            peer = self._peers.pop(address)
            peer.connected = False
            channel = self._outgoing.pop(address, None)
            if channel is not None:
                channel.abort("removed from the peers")  # nothing more is sent to it
            task = self._connectors.pop(address, None)
            if task is not None:
                task.cancel()
            log.info("peer link: peer %s removed", address)
        for address, target in wanted.items():
            if address in self._targets:
                continue
            self._targets[address] = target
            self._peers[address] = Peer(address, self._heard)
            if self._started and not self._closing:
                log.info("peer link: peer %s added", address)
                self._connect(address)

    def _connect(self, address: str) -> None:
        self._connectors[address] = self._spawn(
            self._keep_connected(address, self._peers[address]), f"peer link to {address}")

    def _peer_for(self, node: str) -> Peer:
        for peer in self._peers.values():
            if peer.name == node:
                return peer
        peer = self._unlisted.get(node)
        if peer is None:
            peer = self._unlisted[node] = Peer(None, self._heard, node)
        return peer

    # -- sending ---------------------------------------------------------------------------
    def _line(self, message: Mapping[str, Any], **extra: Any) -> bytes:
        kind = message.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f'a peer link message needs a string "type": {message!r:.100}')
        if kind.startswith(RESERVED_PREFIX):
            raise ValueError(f"message type {kind!r}: the prefix {RESERVED_PREFIX!r} is "
                             "reserved for the link itself")
        return _encode({**message, **extra, "node": self.node}, self.max_message_bytes)

    def send(self, peer_address: str, message: Mapping[str, Any]) -> bool:
        """Queue ``message`` for the peer at ``peer_address``; never blocks.

        The link adds ``"node"``; ``message`` itself is not changed.

        :returns: False when that peer is not configured or not connected, or its
            connection was just dropped because it does not read.
        :raises ValueError: no string ``"type"``, a reserved type, too long, or not JSON.
        :raises TypeError: a value JSON cannot hold.
        """
        line = self._line(message)
        channel = self._outgoing.get(peer_address)
        return channel.send_line(line) if channel is not None else False

    def broadcast(self, message: Mapping[str, Any]) -> int:
        """Queue ``message`` for every connected peer; returns for how many it was queued."""
        line = self._line(message)
        return sum(channel.send_line(line) for channel in list(self._outgoing.values()))

    async def request(self, peer_address: str, message: Mapping[str, Any],
                      timeout: float) -> dict[str, Any]:
        """Send a request and wait for its reply.

        The link sets ``"id"``; the reply carries ``"reply_to"``.

        :returns: the reply (with ``"type"``, ``"node"``, ``"reply_to"``).
        :raises PeerLinkError: the peer is not connected, or the connection was lost before
            the reply.
        :raises PeerTimeout: no reply within ``timeout`` seconds (also a TimeoutError).
        :raises PeerRequestRefused: the peer replied with an error (its handler raised).
        """
        channel = self._outgoing.get(peer_address)
        kind = message.get("type")
        if channel is None:
            why = "not a peer of this node" if peer_address not in self._peers \
                else "not connected"
            raise PeerLinkError(peer_address, f"peer {peer_address} is {why}; request "
                                f"{kind!r} not sent")
        request_id = next(self._ids)
        line = self._line(message, id=request_id)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        channel.pending[request_id] = future
        try:
            if not channel.send_line(line):
                raise PeerLinkError(peer_address, f"peer {peer_address}: connection lost; "
                                    f"request {kind!r} not sent")
            try:
                async with asyncio.timeout(timeout):
                    reply = await future
            except TimeoutError:
                raise PeerTimeout(peer_address, f"peer {peer_address} did not answer "
                                  f"{kind!r} within {timeout:g} s") from None
        finally:
            channel.pending.pop(request_id, None)
        if reply.get("type") == "error":
            error = reply.get("error")
            raise PeerRequestRefused(peer_address, error if isinstance(error, dict) else {})
        return reply

    def reply(self, request: Mapping[str, Any], message: Mapping[str, Any]) -> bool:
        """Answer ``request`` (the very dict ``on_message`` was given).

        ``"type"`` defaults to ``"reply"``; the link adds ``"reply_to"`` and ``"node"``.

        :returns: False if the request was already answered, is not a request, or its
            connection is gone.
        :raises ValueError: the reply is longer than ``max_message_bytes``.
        """
        entry = self._open_requests.get(id(request))
        if entry is None or entry[2] is not request:
            return False
        del self._open_requests[id(request)]
        channel, request_id, _ = entry
        answer = {"type": "reply", **message, "reply_to": request_id, "node": self.node}
        return channel.send_line(_encode(answer, self.max_message_bytes))

    # -- outgoing connections ------------------------------------------------------------
    async def _keep_connected(self, address: str, peer: Peer) -> None:
        """Connect to one peer and stay connected, until removed or closed.

        Logs a loss once (WARNING) and a recovery once (INFO). While it stays unreachable,
        repeats go to DEBUG, except that a change of kind of failure (the network, the
        key, the protocol) is logged again, and a key refused is logged at ERROR at every
        attempt: a wrong key needs a person.
        """
        delays = self._backoff()
        logged: str | None = None  # the kind of failure logged since the last recovery
        while True:
            up: list[bool] = []
            try:
                await self._connect_and_read(address, peer, up)
                kind, reason = "network", "the other node closed the connection"
            except _Misconfigured as exc:
                kind, reason = "config", str(exc)
            except RemoteProtocolError as exc:
                kind, reason = "protocol", f"it does not speak the peer link protocol: {exc}"
            except (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied) as exc:
                kind, reason = "key", _describe(exc)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                kind, reason = "network", _describe(exc)
            if up:
                delays = self._backoff()
            peer.problem = kind
            delay = next(delays)
            if up:
                log.warning("peer %s (node '%s'): connection lost (%s); reconnecting",
                            address, peer.name, reason)
            elif kind == "key":  # a person must act: said at every attempt
                log.error("peer %s: cannot connect (%s); retrying in %.1f s", address,
                          reason, delay)
            elif kind != logged:
                log.warning("peer %s: cannot connect (%s); retrying in %.1f s and then "
                            "with backoff", address, reason, delay)
            else:
                log.debug("peer %s: cannot connect (%s); retrying in %.1f s", address,
                          reason, delay)
            logged = kind
            kick = self._kicks.setdefault(address, asyncio.Event())
            kick.clear()
            try:  # the backoff delay, cut short when that peer connects to us
                async with asyncio.timeout(delay):
                    await kick.wait()
                delays = self._backoff()
            except TimeoutError:
                pass

    async def _connect_and_read(self, address: str, peer: Peer, up: list[bool]) -> None:
        host, port = self._targets[address]
        async with asyncio.timeout(self.connect_timeout_s):
            conn = await asyncssh.connect(
                host, port, username=self.node, client_keys=[self.key],
                known_hosts=([self._public], [], []), config=None, agent_path=None,
                preferred_auth="publickey", disable_trivial_auth=True, password=None,
                public_key_auth=True, password_auth=False, kbdint_auth=False,
                host_based_auth=False, gss_host=None, x509_trusted_certs=None,
                pkcs11_provider=None, **self._keepalive(),
            )
        channel: _Channel | None = None
        try:
            _tune_socket(conn)
            async with asyncio.timeout(self.connect_timeout_s):
                process = await conn.create_process(subsystem=SUBSYSTEM, encoding=None)
                channel = _Channel(self, conn, process.stdout, process.stdin,
                                   f"peer {address}", host, port)
                channel.send_line(_encode({"type": _HELLO, "node": self.node,
                                           "protocol": PROTOCOL,
                                           "listen": self._advertised()},
                                          self.max_message_bytes))
                received = await channel.read_message()
            name = self._check_hello(received)["node"]
            if name == self.node:
                raise _Misconfigured(f"it is this node itself (named '{name}'): remove this "
                                     "node's own address from its peers")
            for other in self._peers.values():
                if other is not peer and other.name == name:
                    other.name = None  # the name moved: the handshake is authoritative
            peer.name = channel.node = name
            self._heard[name] = time.monotonic()
            self._unlisted.pop(name, None)
            self._outgoing[address] = channel
            peer.connected = True
            peer.problem = None
            up.append(True)
            log.info("peer %s (node '%s'): connected", address, name)
            while True:
                received = await channel.read_message()
                if received is None:
                    return
                self._on_reply(address, channel, received[0])
        finally:
            peer.connected = False
            if channel is not None:
                channel.closed = True
                if self._outgoing.get(address) is channel:
                    del self._outgoing[address]
                for future in channel.pending.values():
                    if not future.done():
                        future.set_exception(PeerLinkError(
                            address, f"peer {address}: connection lost before it replied"))
                channel.pending.clear()
            conn.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout_s):
                    await conn.wait_closed()

    def _advertised(self) -> str | None:
        """This node's address as peers would list it (sent in the hello)."""
        if self.advertise is not None:
            return self.advertise
        return format_address(*self.listen_address) if self.listen_address else None

    def _check_hello(self, received: tuple[dict[str, Any], int] | None) -> dict[str, Any]:
        """The other end's hello, checked; raises RemoteProtocolError if it is not one."""
        if received is None:
            raise ConnectionResetError("it closed the connection during the handshake")
        hello = received[0]
        if hello.get("type") != _HELLO:
            raise RemoteProtocolError(f"expected its hello, got a {hello.get('type')!r}")
        if hello.get("protocol") != PROTOCOL:
            raise _Misconfigured(f"it speaks peer link protocol {hello.get('protocol')!r}; "
                                 f"this node speaks {PROTOCOL}: run the same tieline version "
                                 "on every node")
        if not hello["node"]:
            raise RemoteProtocolError("its hello names no node")
        return hello

    def _on_reply(self, address: str, channel: _Channel, message: dict[str, Any]) -> None:
        if message["node"] != channel.node:
            raise RemoteProtocolError(f"a message names node {message['node']!r}, but this "
                                      f"connection is from {channel.node!r}")
        request_id = message.get("reply_to")
        if request_id is None:
            raise RemoteProtocolError(f"a {message['type']!r} message on the reply path (only "
                                      "replies come back on an outgoing connection)")
        self._heard[message["node"]] = time.monotonic()
        future = channel.pending.pop(request_id, None) if isinstance(request_id, int) else None
        if future is None or future.done():
            log.debug("peer %s: reply to request %r that nobody waits for (timed out?)",
                      address, request_id)
            return
        future.set_result(message)

    # -- incoming connections ------------------------------------------------------------
    def _session_started(self, process: Any) -> None:
        """asyncssh's process factory: serve one incoming session in a tracked task."""
        conn = process.channel.get_connection()
        host, port = (process.get_extra_info("peername") or ("?", 0))[:2]
        if self._closing or process.subsystem != SUBSYSTEM:
            log.debug("peer link: refused a session from %s:%s that is not a peer link "
                      "(%r)", host, port, process.subsystem or process.command or "shell")
            process.exit(1)
            return
        channel = _Channel(self, conn, process.stdin, process.stdout,
                           f"incoming connection from {format_address(host, port)}", host, port)
        self._spawn(self._serve_incoming(channel), f"peer link from {host}:{port}")

    async def _serve_incoming(self, channel: _Channel) -> None:
        try:
            # our hello first: a node that dialled itself learns so from it
            channel.send_line(_encode({"type": _HELLO, "node": self.node,
                                       "protocol": PROTOCOL}, self.max_message_bytes))
            async with asyncio.timeout(self.login_timeout_s):
                hello = self._check_hello(await channel.read_message())
            node = hello["node"]
            if node == self.node:
                raise _Misconfigured(
                    f"it says it is node '{node}', the name of this node: two nodes share a "
                    "name, or a node lists itself as a peer")
            channel.node = node
            channel.label = f"node '{node}' ({channel.where})"
            self._learn(node, hello.get("listen"))
            self._heard[node] = time.monotonic()
            log.info("peer link: %s connected", channel.label)
            for address, peer in self._peers.items():
                # that node is up: if our connection to it waits in backoff, try now
                if peer.name == node and not peer.connected and address in self._kicks:
                    self._kicks[address].set()
            self._spawn(self._handle_in_order(channel), f"peer link handler for '{node}'",
                        channel.tasks)
            while True:
                received = await channel.read_message()
                if received is None:
                    reason = "it closed the connection"
                    break
                self._received(channel, *received)
        except RemoteProtocolError as exc:
            reason = f"dropped: {exc}"
            self._problems.log(("protocol", channel.node or channel.host), logging.WARNING,
                               "peer link: %s sent something that is not a peer link "
                               "message (%s); dropping the connection", channel.label, exc)
        except _Misconfigured as exc:
            reason = f"refused: {exc}"
            self._problems.log(("config", channel.host, str(exc)), logging.WARNING,
                               "peer link: refused %s: %s", channel.label, exc)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = _describe(exc)
        finally:
            channel.closed = True
            if channel.handler_stuck:
                for task in list(channel.tasks):
                    task.cancel()
            else:  # what was received is handled, then the handler ends
                channel.inbox.put_nowait(None)
            for key in [k for k, v in self._open_requests.items() if v[0] is channel]:
                del self._open_requests[key]
            channel.conn.abort()
        if channel.node is not None:
            log.info("peer link: %s disconnected (%s)", channel.label, reason)

    def _learn(self, node: str, listen: object) -> None:
        """An incoming hello: name the configured peer it came from, if not known yet."""
        if any(peer.name == node for peer in self._peers.values()):
            return
        if isinstance(listen, str):
            peer = self._peers.get(listen)
            if peer is not None and peer.name is None:
                peer.name = node
                self._unlisted.pop(node, None)

    def _received(self, channel: _Channel, message: dict[str, Any], size: int) -> None:
        """One message from an incoming connection: record, then queue for the handler."""
        node = channel.node
        if message["node"] != node:
            raise RemoteProtocolError(f"a message names node {message['node']!r}, but this "
                                      f"connection is from {node!r}")
        if message["type"].startswith(RESERVED_PREFIX) or "reply_to" in message:
            raise RemoteProtocolError(f"unexpected {message['type']!r} message")
        self._heard[node] = time.monotonic()
        if "id" in message:
            if channel.requests >= self.max_concurrent_requests:
                channel.send_line(_encode({
                    "type": "error", "reply_to": message["id"], "node": self.node,
                    "error": {"code": "busy", "message": f"node '{self.node}' is handling "
                              f"{self.max_concurrent_requests} requests from '{node}'"},
                }, self.max_message_bytes))
                return
            self._open_requests[id(message)] = (channel, message["id"], message)
            channel.requests += 1
            self._spawn(self._handle_request(channel, message),
                        f"peer link request {message['type']!r} from '{node}'", channel.tasks)
            return
        if channel.inbox_bytes + size > self.max_queue_bytes:
            channel.handler_stuck = True
            raise RemoteProtocolError(
                f"{channel.inbox_bytes} bytes of messages wait for this node's handler "
                f"(limit {self.max_queue_bytes}): the handler is not keeping up")
        channel.inbox_bytes += size
        channel.inbox.put_nowait((message, size))

    async def _handle_in_order(self, channel: _Channel) -> None:
        """Hand a connection's messages (not requests) to ``on_message``, in order."""
        while (item := await channel.inbox.get()) is not None:
            message, size = item
            try:
                await self._call(channel, message)
            except Exception as exc:  # a bug in the handler: keep serving the others
                self._problems.log(("handler", message["type"], type(exc)), logging.ERROR,
                                   "peer link: the handler of %r messages failed",
                                   message["type"], exc_info=exc)
            finally:
                channel.inbox_bytes -= size

    async def _handle_request(self, channel: _Channel, message: dict[str, Any]) -> None:
        error: dict[str, Any] | None = None
        try:
            result = await self._call(channel, message)
        except RequestError as exc:
            error = exc.to_dict()
        except TielineError as exc:
            error = {"code": "error", "message": str(exc)}
        except Exception as exc:  # a bug in the handler: answer, log, keep serving
            self._problems.log(("handler", message["type"], type(exc)), logging.ERROR,
                               "peer link: the handler of %r requests failed",
                               message["type"], exc_info=exc)
            error = {"code": "internal", "message": f"node '{self.node}' failed to handle "
                     f"{message['type']!r} ({type(exc).__name__}); see its log"}
        finally:
            channel.requests -= 1
        if error is not None:
            self.reply(message, {"type": "error", "error": error})
        elif isinstance(result, Mapping):
            self.reply(message, result)

    async def _call(self, channel: _Channel, message: dict[str, Any]) -> Any:
        assert channel.node is not None
        result = self.on_message(self._peer_for(channel.node), message)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _refused(self, address: str, user: str | None, wrong_key: bool,
                 exc: Exception | None, timed_out: bool = False) -> None:
        """An incoming connection ended without authenticating with the cluster key."""
        if self._closing:
            return
        if isinstance(exc, asyncssh.DisconnectError):
            detail = exc.reason or type(exc).__name__
        else:
            detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc or "") \
                or "closed"
        fix = _KEY_FIX
        if wrong_key:
            reason, why = "wrong key", "it offered a key that is not the cluster key"
        elif isinstance(exc, asyncssh.HostKeyNotVerifiable):
            reason, why = "host key", ("it does not trust this node's host key: it holds "
                                       "another cluster key")
        elif isinstance(exc, (asyncssh.ProtocolNotSupported, asyncssh.ProtocolError)):
            reason, why = "not ssh", f"it does not speak SSH ({detail})"
            fix = "whatever it is, it is not a tieline node: check what connects to this port"
        elif timed_out:
            reason, why = "timeout", (f"it did not log in within {self.login_timeout_s:g} s "
                                      "(a stalled client, or something that is not SSH)")
            fix = "check what connects to this port"
        elif user is not None:
            reason, why = "no key", f"it did not authenticate with the cluster key ({detail})"
        else:
            reason, why = "left", (f"it left before authenticating ({detail}): a port scan, "
                                   "a health check, or a client that gave up")
            fix = "nothing to do if this is expected"
        who = f" (user '{user}')" if user else ""
        self._refusals.log(reason, logging.WARNING,
                           "peer link: refused a connection from %s%s: %s; %s",
                           address, who, why, fix)
