"""Running a node as a systemd service: sd_notify, and the unit file.

**sd_notify** (``sd_notify(3)``) is a datagram of ``KEY=VALUE`` lines sent to the unix socket
named by ``$NOTIFY_SOCKET`` (a path, or an abstract socket written with a leading ``@``).
tieline speaks it in pure Python, without libsystemd: :class:`ServiceNotifier` sends

- ``READY=1`` (with ``STATUS=``) once the node has started: its device links running and
  every client API listening;
- ``STATUS=<status text>`` whenever the node's status changes (``NodeStatusChanged``), so
  ``systemctl status`` shows "Main is active", "Backup is idle" …;
- ``WATCHDOG=1`` every ``$WATCHDOG_USEC``/2 from a task on the node's event loop: a loop
  that blocks stops the pings, and systemd restarts the service (``WatchdogSec=``);
- ``STOPPING=1`` as the node begins to stop.

Outside a service manager (no ``$NOTIFY_SOCKET``) all of this does nothing.

**The unit file**: :func:`unit_file` writes what ``tieline service install`` installs
(``Type=notify``, the watchdog, ``Restart=always``, reload by SIGHUP, and hardening that
leaves tieline's settings folder, network and serial lines usable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..events import NodeStatusChanged, Subscription
from ..settings.jsonfile import write_bytes_atomic

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)

#: the systemd folder ``tieline service install`` writes to when not given ``--output``.
SYSTEMD_FOLDER = Path("/etc/systemd/system")
#: ``WatchdogSec=`` of the unit: systemd restarts a node whose event loop is stuck this long.
WATCHDOG_S = 10


# -------------------------------------------------------------------------------------------
# sd_notify
# -------------------------------------------------------------------------------------------


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``"READY=1"``, several lines allowed) to the service manager.

    :param env: where to read ``NOTIFY_SOCKET`` (default: the process environment).
    :returns: True when sent; False when no service manager listens (no ``NOTIFY_SOCKET``).
    :raises OSError: when ``NOTIFY_SOCKET`` names a socket that cannot be reached.
    """
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        target: str | bytes = b"\0" + address[1:].encode()  # abstract namespace
    elif address.startswith("/"):
        target = address
    else:
        raise OSError(f"NOTIFY_SOCKET={address!r} is not a unix socket path or @abstract "
                      "name (tieline does not speak vsock)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), target)
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, as ``sd_watchdog_enabled``.

    :returns: None when the service manager wants no pings (no or invalid ``WATCHDOG_USEC``,
        or ``WATCHDOG_PID`` names another process).
    """
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


class ServiceNotifier:
    """Tells the service manager about one node (see the module docstring).

    Every node has one (``node.notifier``): :meth:`Node.run` runs inside it as an async
    context manager and calls :meth:`ready` once started; :meth:`Node.stop` calls
    :meth:`stopping`. A socket that cannot be reached is logged once and never stops the
    node.

    :param node: the node.
    :param env: where to read ``NOTIFY_SOCKET`` and the watchdog variables.
    """

    def __init__(self, node: Node, env: Mapping[str, str] | None = None) -> None:
        self.node = node
        self.env = dict(os.environ if env is None else env)
        self.enabled = bool(self.env.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval(self.env)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._stopping = False

    def send(self, message: str) -> None:
        """Send ``message``; log the first failure at WARNING, later ones at DEBUG."""
        if not self.enabled:
            return
        try:
            notify(message, self.env)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot tell the service manager %r through NOTIFY_SOCKET=%s: %s",
                            message.split("\n", 1)[0], self.env["NOTIFY_SOCKET"], exc)
            else:
                log.debug("sd_notify %r failed: %s", message, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("the service manager's NOTIFY_SOCKET works again")
            self._failing = False

    def ready(self) -> None:
        """The node has started: ``READY=1`` with its status."""
        self.send(f"READY=1\nSTATUS={self.node.status.text}")

    def stopping(self) -> None:
        """The node begins to stop: ``STOPPING=1`` (once)."""
        if not self._stopping:
            self._stopping = True
            self.send(f"STOPPING=1\nSTATUS=node '{self.node.settings.node_name}' stopping")

    async def __aenter__(self) -> ServiceNotifier:
        if self.enabled:
            # subscribed now, so that no status change after this point is missed
            subscription = self.node.bus.subscribe("service notifier", maxsize=100_000)
            self._task = asyncio.create_task(self._run(subscription), name="service notifier")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise  # we are cancelled too, not only our task

    async def _run(self, subscription: Subscription) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow_status(subscription), name="service notifier: status")
            if self.watchdog_s is not None:
                tg.create_task(self._watchdog(self.watchdog_s), name="service notifier: watchdog")

    async def _watchdog(self, interval: float) -> None:
        # a ping only goes out when the loop runs this task: a blocked loop stops them
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _follow_status(self, subscription: Subscription) -> None:
        try:
            while True:
                async for event in subscription:
                    if isinstance(event, NodeStatusChanged):
                        self.send(f"STATUS={event.status.text}")
                # dropped (it cannot fall behind in practice): follow again from now on
                subscription = self.node.bus.subscribe("service notifier", maxsize=100_000)
                self.send(f"STATUS={self.node.status.text}")
        finally:
            subscription.close("service notifier stopping")


# -------------------------------------------------------------------------------------------
# The unit file
# -------------------------------------------------------------------------------------------

_USER = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]+)$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def check_user(user: str) -> str:
    """``user`` if systemd accepts it as ``User=``; else :class:`ValueError` saying why."""
    if not _USER.match(user):
        raise ValueError(f"user {user!r} is not a valid user name (letters, digits, '_', '-', "
                         "'.', starting with a letter or '_') or a numeric uid")
    return user


def check_unit_name(name: str) -> str:
    """``name`` if ``tieline-NAME.service`` is a valid unit name; else :class:`ValueError`."""
    if not _UNIT_NAME.match(name):
        raise ValueError(f"name {name!r} cannot be part of a unit name; use letters, digits, "
                         "'_', '-', '.' and ':'")
    return name


def _escape(word: str, *, command: bool = False) -> str:
    """One word of a unit file setting: specifiers (``%``) escaped, and in a command line
    variables (``$``) too; quoted when it holds blanks, quotes, backslashes or ``;``."""
    word = word.replace("%", "%%")
    if command:
        word = word.replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tieline_executable() -> list[str]:
    """The command that runs this tieline: the ``tieline`` script being run, else the one
    next to the running Python, else ``python -m tieline``; always absolute paths."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "tieline" and os.access(argv0, os.X_OK):
        return [str(argv0.absolute())]
    script = Path(sys.executable).absolute().with_name("tieline")
    if os.access(script, os.X_OK):
        return [str(script)]
    return [str(Path(sys.executable).absolute()), "-m", "tieline"]


def unit_file(folder: Path, *, command: list[str], user: str, name: str,
              watchdog_s: int = WATCHDOG_S,
              capabilities: Mapping[str, str] | None = None) -> str:
    """The systemd unit that runs ``tieline run --settings FOLDER``.

    :param folder: the settings folder (made absolute here).
    :param command: the tieline command (:func:`tieline_executable`).
    :param user: ``User=`` of the service.
    :param name: the unit is ``tieline-NAME.service``.
    :param watchdog_s: ``WatchdogSec=``.
    :param capabilities: ``AmbientCapabilities=`` the node needs, so that it need not run as
        root: each capability with what for (a comment in the unit), as failover actions
        give them (:attr:`tieline.FailoverAction.capabilities`).
    """
    from .. import __version__

    folder = Path(folder).absolute()
    if any(ord(c) < 32 for c in str(folder)):
        raise ValueError(f"settings folder {str(folder)!r} has a control character in its "
                         "name; a unit file cannot name it")
    exec_start = " ".join(_escape(w, command=True) for w in [*command, "run", "--settings", str(folder)])
    caps = ""
    capabilities = capabilities or {}
    if capabilities:
        caps = ("".join(f"# {cap}: {why}.\n" for cap, why in capabilities.items())
                + f"AmbientCapabilities={' '.join(capabilities)}\n")
    return f"""\
# tieline node '{name}': written by `tieline service install` (tieline {__version__}).
# Settings: {folder}. After editing them: systemctl reload tieline-{name}
[Unit]
Description=tieline node {name} (broadcast router control)
After=network-online.target
Wants=network-online.target

[Service]
# tieline sends READY=1 once its router links run and its APIs listen, STATUS= on every
# status change, WATCHDOG=1 every WatchdogSec/2 and STOPPING=1 when it stops.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# SIGHUP re-reads the settings folder: users, salvos and labels apply at once.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=1
WatchdogSec={watchdog_s}
User={check_user(user)}
{caps}# Hardening that leaves tieline working: the settings folder stays writable (labels,
# users), the network and serial devices stay reachable.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={_escape(str(folder))}
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def write_unit(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (mode 0644), replacing any previous unit."""
    write_bytes_atomic(path, text.encode("utf-8"), mode=0o644)


__all__ = ["ServiceNotifier", "notify", "tieline_executable", "unit_file", "watchdog_interval",
           "write_unit"]
