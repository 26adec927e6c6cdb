"""A node: settings -> plugins -> devices -> APIs -> failover -> ops, run in one TaskGroup.

Start order: plugins are loaded and settings checked before a Node exists (see
:func:`build_node`); then every device link starts (each reads its device's whole state:
tieline never pushes remembered routes), then every client API binds its port, then
``tieline_node_started`` runs. Stop runs in reverse: ``tieline_node_stopping``, APIs close,
device links stop, each step bounded by a timeout.

The node's operations come from its settings, however it is started (``tieline run`` or
:func:`build_node` in Python): mDNS advertising when ``discovery.mdns`` is on (from when
the node has started until it stops), and the service manager's notifications (``READY=1``
once started, status changes, the watchdog, ``STOPPING=1``) when ``$NOTIFY_SOCKET`` says a
service manager listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .apis import ApiCommand, ClientApi
from .auth import Authenticator
from .devices import DeviceLink
from .errors import PluginError, TielineError
from .events import (
    DeviceOnline,
    EventBus,
    LabelsChanged,
    SalvosChanged,
    SettingsChanged,
    Subscription,
)
from .failover import (ActionRunner, EpochStore, Failover, NodeStatus, Role, State, Strategy,
                       peer_status_text)
from .model import RouterState
from .ops.discovery import advertising
from .ops.systemd import ServiceNotifier
from .plugin_manager import Plugins
from .routing import RouterRuntime, RoutingService
from .settings.loader import Settings, SettingsStore, load_settings, read_disabled_plugins

log = logging.getLogger(__name__)

#: the folder, inside the settings folder, of the node's runtime state (never replicated).
STATE_FOLDER = ".tieline-state"

class Node:
    """One running tieline process.

    :param settings: the checked settings folder.
    :param plugins: the node's plugin manager.
    """

    stop_timeout_s = 5.0
    #: memory settling (see _settle_memory): after this long without changes …
    settle_quiet_s = 1.0
    #: … or this long after the first one, whichever comes first
    settle_max_delay_s = 10.0

    def __init__(self, settings: Settings, plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self.bus = EventBus()
        state = State.ACTIVE if settings.role is Role.STANDALONE else State.STANDBY
        #: the node's runtime state (the epoch): beside the settings, never replicated.
        self.state_folder = settings.folder / STATE_FOLDER
        self.epochs = EpochStore(self.state_folder / "epoch.json")
        self.failover = Failover(
            NodeStatus(settings.node_name, settings.role, state, epoch=self.epochs.epoch),
            self.bus.publish,
        )
        self.store = SettingsStore(settings, self.failover.require_settings_writable,
                                   self._written)
        self.routing = RoutingService(
            self.bus, self.failover, policy=plugins.route_requested,
            label_writer=self.store.save_label,
        )
        self.auth = Authenticator(settings.users, settings.loopback_anonymous_level)
        self.links: list[DeviceLink] = []
        #: routers whose link a standby node leaves closed (``standby_link`` cold)
        self.cold_routers = {rs.spec.id for rs in settings.routers if rs.standby_link == "cold"}
        drivers = plugins.drivers()
        transports = plugins.transports()
        for rs in settings.routers:
            driver_cls = drivers[rs.spec.driver][1]
            transport = None
            if rs.transport is not None:
                transport_cls = transports[rs.transport["type"]][1]
                transport = transport_cls(
                    rs.transport, defaults=driver_cls.transport_defaults.get(transport_cls.name, {}),
                    folder=settings.folder)
            driver = driver_cls(rs.spec, rs.options, transport)
            runtime = RouterRuntime(
                state=RouterState(rs.spec), driver=driver,
                confirm_timeout_s=rs.confirm_timeout_s, label_store=rs.label_store,
                settings_labels=settings.labels.get(rs.spec.id, {}),
            )
            runtime.link = DeviceLink(driver, self.routing)
            self.links.append(runtime.link)
            self.routing.add_router(runtime)
        self.routing.salvos = {s.name: s for s in settings.salvos}
        api_classes = plugins.client_apis()
        self.commands = self._api_commands(api_classes)
        self.apis: list[ClientApi] = [
            api_classes[entry["type"]][1](self, entry) for entry in settings.apis
        ]
        self.strategy: Strategy | None = None
        #: failover actions (a virtual IP …), run after the node's state
        self.actions: ActionRunner | None = None
        if settings.failover is not None:
            action_classes = plugins.failover_actions()
            actions = [action_classes[k][1](self, v) for k, v in settings.failover.items()
                       if k in action_classes]
            elector = {k: v for k, v in settings.failover.items() if k not in action_classes}
            strategy_cls = plugins.strategies()[settings.failover["strategy"]][1]
            self.strategy = strategy_cls(self, elector)
            if actions:
                for action in actions:
                    action.preflight()  # a missing privilege stops the node here, not later
                self.actions = ActionRunner(actions)
                runner = self.actions
                self.failover.listeners.append(lambda status: runner.want(status.state))
        self._stop = asyncio.Event()
        self._settle_wanted = asyncio.Event()
        #: how many times the memory was settled (see _settle_memory)
        self.settles = 0
        self.started = asyncio.Event()
        #: tells a service manager (systemd) about the node; idle without $NOTIFY_SOCKET
        self.notifier = ServiceNotifier(self)
        self._tg: asyncio.TaskGroup | None = None
        self._link_tasks: dict[DeviceLink, asyncio.Task[None]] = {}

    # -- device links for failover ---------------------------------------------------------
    def _warm(self, link: DeviceLink) -> bool:
        """Whether the link runs now: always on the active node; on a standby node when the
        router's ``standby_link`` is warm (the device allows a second controller)."""
        return (link.router not in self.cold_routers
                or self.failover.status.state is State.ACTIVE)

    def _start_link(self, link: DeviceLink) -> None:
        task = self._link_tasks.get(link)
        if (task is None or task.done()) and self._tg is not None:
            self._link_tasks[link] = self._tg.create_task(link.run(), name=f"link {link.router}")

    def routers_online(self) -> bool:
        """Whether every router's link is up with its state read (the node reaches them)."""
        return not self.offline_routers()

    def offline_routers(self) -> list[str]:
        """The ids of the routers whose state this node does not have now, sorted."""
        return sorted(r for r, rt in self.routing.routers.items() if not rt.state.online)

    async def connect_all_links(self, timeout: float, *, cold: bool = True) -> bool:
        """Start every link (also those a standby leaves closed, unless ``cold`` is false)
        and wait until those routers are online, their whole state read; a candidate calls
        this before it takes over.

        :returns: whether every router came online within ``timeout``.
        """
        links = [link for link in self.links if cold or link.router not in self.cold_routers]
        for link in links:
            self._start_link(link)
            if not self.routing.routers[link.router].state.online:
                link.retry_now()
        try:
            async with asyncio.timeout(timeout):
                while not all(self.routing.routers[link.router].state.online for link in links):
                    await asyncio.sleep(0.01)
            return True
        except TimeoutError:
            return False

    async def close_cold_links(self) -> None:
        """On becoming standby: close the links of devices that allow one controller only,
        so that the active node can connect."""
        for link in self.links:
            task = self._link_tasks.get(link)
            if link.router in self.cold_routers and task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                del self._link_tasks[link]

    def api_urls(self) -> list[str]:
        """How tieline's clients reach this node: the failover block's ``advertise``, else
        the URL each client API gives (:meth:`ClientApi.client_url`)."""
        advertised = (self.settings.failover or {}).get("advertise")
        if advertised:
            return [advertised]
        return [url for api in self.apis if (url := api.client_url()) is not None]

    def _api_commands(self, api_classes: dict[str, tuple[str, Any]]) -> dict[str, ApiCommand]:
        """The plugins' API commands; a name that an installed client API answers itself
        (its ``commands``) is refused, naming the plugin."""
        built_in = {name: api_type for api_type, (_, cls) in api_classes.items()
                    for name in cls.commands}
        commands: dict[str, ApiCommand] = {}
        for name, (plugin, command) in self.plugins.api_commands().items():
            if name in built_in:
                log.error("%s", PluginError(plugin, f"API command '{name}' is built into the "
                                            f"'{built_in[name]}' API; choose another name"))
                continue
            commands[name] = ApiCommand(
                command.name, command.schema, command.level, command.handler,
                command.description, plugin,
            )
        return commands

    @property
    def status(self) -> NodeStatus:
        """What the node says of itself (``Failover.effective``): never active while it
        would refuse to act."""
        return self.failover.effective

    def status_report(self) -> dict[str, Any]:
        """What a client API answers when asked for the node's status: the node's own status
        (:attr:`status`), each router and whether it is online, and in a cluster each peer as
        the failover strategy sees it, with its status text ("Backup is idle")."""
        strategy = self.strategy
        peers = [{**p, "status": peer_status_text(p.get("role"), p.get("state"))}
                 for p in (strategy.peers_status() if strategy is not None else [])]
        return {**self.status.to_dict(),
                "routers": [{"id": rid, "online": rt.state.online}
                            for rid, rt in self.routing.routers.items()],
                "peers": peers}

    def reload(self) -> list[str]:
        """Re-read the settings folder and apply what can change while running.

        Users, the anonymous loopback level, salvos and labels kept in settings apply at
        once. Anything else that changed (routers, APIs, node, failover, plugins) needs a
        restart; it is listed in the result and the log. An invalid folder changes nothing.

        :returns: the keys that changed but need a restart.
        :raises SettingsError: when the folder is invalid (the running settings stay).
        """
        new = load_settings(self.settings.folder, self.plugins)
        old = self.settings
        self.auth = Authenticator(new.users, new.loopback_anonymous_level)
        if new.salvos != old.salvos:
            self.routing.salvos = {s.name: s for s in new.salvos}
            self.bus.publish(SalvosChanged(tuple(self.routing.salvos)))
        for rid, rt in self.routing.routers.items():
            if rt.label_store != "settings":
                continue
            labels = new.labels.get(rid, {})
            for kind, texts in labels.items():
                old_texts = rt.settings_labels.get(kind, {})
                changed = tuple((i, t) for i, t in texts.items()
                                if old_texts.get(i) != t and rt.state.set_label(kind, i, t))
                rt.settings_labels[kind] = dict(texts)
                if changed:
                    self.bus.publish(LabelsChanged(rid, kind, changed))
        self.store = SettingsStore(new, self.failover.require_settings_writable, self._written)
        self.routing.label_writer = self.store.save_label
        self.bus.publish(SettingsChanged(self.shared_files()))
        restart = [
            name for name, before, after in (
                ("node", (old.node_name, old.role), (new.node_name, new.role)),
                ("routers", old.routers, new.routers),
                ("apis", old.apis, new.apis),
                ("failover", old.failover, new.failover),
                ("plugins", old.disabled_plugins, new.disabled_plugins),
                ("plugin blocks", old.blocks, new.blocks),
            ) if before != after
        ]
        self.settings = new
        log.info("settings reloaded from %s", new.folder)
        if restart:
            log.warning("settings changed that apply only after a restart: %s",
                        ", ".join(restart))
        return restart

    def shared_files(self) -> tuple[str, ...]:
        """The settings files every node of a cluster shares (the main replicates them):
        the users file, salvos.json, labels.json. tieline.json is each node's own."""
        files = ["salvos.json", "labels.json"]
        if self.settings.users_file:
            files.insert(0, self.settings.users_file)
        return tuple(files)

    def _written(self, name: str) -> None:
        self.bus.publish(SettingsChanged((name,)))

    def stop(self) -> None:
        """Ask the node to stop (safe from a signal handler)."""
        self.notifier.stopping()
        self._stop.set()

    async def run(self, ready: Callable[[Node], Any] | None = None) -> None:
        """Run until :meth:`stop` is called or the task is cancelled, with the operations
        its settings ask for (see the module docstring).

        :param ready: called with the node once it has started (before ``READY=1`` goes to
            a service manager).
        """
        discovery = self.settings.discovery
        mdns = (advertising(self, discovery.get("interfaces") or None)
                if discovery.get("mdns") else contextlib.nullcontext())
        async with self.notifier, mdns:
            await self._run(ready)

    async def _run(self, ready: Callable[[Node], Any] | None) -> None:
        observed = None
        if self.plugins.pm.hook.tieline_event.get_hookimpls():
            # subscribed before any link runs, so observers see every event from the start
            observed = self.bus.subscribe("observer plugins", maxsize=100_000)
        onlines = self.bus.subscribe("memory settling", maxsize=100_000)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for link in self.links:
                if self._warm(link):
                    self._start_link(link)
            observer = tg.create_task(self._observe(observed), name="observers")
            settler = tg.create_task(self._settle_memory(onlines), name="memory settling")
            actions_task = None
            if self.actions is not None:
                # standby: clears a crashed run's claim
                self.actions.want(self.failover.status.state)
                actions_task = tg.create_task(self.actions.run(), name="failover actions")
            strategy_task = None
            started: list[ClientApi] = []
            try:
                if self.strategy is not None:
                    strategy_task = tg.create_task(self.strategy.run(), name="failover")
                for api in self.apis:
                    await api.start()
                    started.append(api)
                    log.info("serving %s", api.describe())
                await self.plugins.notify("tieline_node_started", node=self)
                self.started.set()
                if ready is not None:
                    ready(self)
                self.notifier.ready()  # after ready(): READY=1 means clients can connect
                await self._stop.wait()
            finally:
                tasks = [observer, settler, *self._link_tasks.values()]
                if strategy_task is not None:
                    strategy_task.cancel()
                    await asyncio.gather(strategy_task, return_exceptions=True)
                    await self.strategy.close()  # type: ignore[union-attr]
                if actions_task is not None:
                    actions_task.cancel()  # deactivates on its way out
                    await asyncio.gather(actions_task, return_exceptions=True)
                await self._shutdown(started, tasks)
                self._tg = None

    async def _shutdown(self, apis: list[ClientApi], tasks: list[asyncio.Task]) -> None:
        log.info("node '%s' stopping", self.settings.node_name)
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                await self.plugins.notify("tieline_node_stopping", node=self)
        except TimeoutError:
            log.warning("tieline_node_stopping hooks took longer than %s s", self.stop_timeout_s)
        for api in reversed(apis):
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    await api.close()
            except TimeoutError:
                log.warning("%s did not close within %s s", api.describe(), self.stop_timeout_s)
        for task in tasks:
            task.cancel()

    def settle_memory_soon(self) -> None:
        """Ask for the memory to be settled once things are quiet (see
        :meth:`_settle_memory`): a client API calls this when a long-lived client (a
        subscriber) comes or goes."""
        self._settle_wanted.set()

    async def _settle_memory(self, events: Subscription) -> None:
        """Settle the memory once started, and again a second after things went quiet
        following a router's whole state read or subscribers coming or going (at most
        ``settle_max_delay_s`` after the first such change).

        Settling collects every garbage cycle, then freezes the survivors (modules,
        schemas, router state, the clients' connections) out of the cyclic garbage
        collector's walks, and hands freed heap back to the system. A full collection at
        any other moment then walks only what came since: short enough not to stall a
        fan-out to a thousand clients (docs/performance.md). Each settle unfreezes first, so
        what was frozen and has become garbage since (a client gone) is collected then."""
        async def watch() -> None:
            async for event in events:
                if isinstance(event, DeviceOnline):
                    self.settle_memory_soon()

        watcher = asyncio.create_task(watch(), name="memory settling: routers")
        try:
            await self.started.wait()
            _settle()
            self.settles += 1
            while True:
                await self._settle_wanted.wait()
                deadline = asyncio.get_running_loop().time() + self.settle_max_delay_s
                while True:  # quiet for settle_quiet_s, or the deadline
                    self._settle_wanted.clear()
                    left = min(self.settle_quiet_s,
                               deadline - asyncio.get_running_loop().time())
                    if left <= 0:
                        break
                    try:
                        async with asyncio.timeout(left):
                            await self._settle_wanted.wait()
                    except TimeoutError:
                        break
                _settle()
                self.settles += 1
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            events.close("node stopping")

    async def _observe(self, subscription: Subscription | None) -> None:
        """Feed every event to ``tieline_event`` hook implementations, in order."""
        if subscription is None:
            return
        try:
            async for event in subscription:
                await self.plugins.notify("tieline_event", event=event)
        finally:
            subscription.close("node stopping")


def check_settings(folder: Path | str) -> tuple[Settings, Plugins]:
    """Load the plugins and check the settings folder, every file it names loaded: what
    ``tieline validate`` does, and the first step of :func:`build_node` (so ``tieline run``
    refuses exactly what ``tieline validate`` refuses).

    :returns: the settings and the plugin manager they were checked with.
    :raises SettingsError: listing every problem, each with file, line and JSON path.
    """
    folder = Path(folder)
    plugins = Plugins(disabled=read_disabled_plugins(folder))
    return load_settings(folder, plugins), plugins


def _settle() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if _malloc_trim is not None:
        _malloc_trim(0)  # hand what a state read took back to the system (glibc)


def _find_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None


_malloc_trim = _find_malloc_trim()


def build_node(folder: Path | str) -> Node:
    """Load plugins and settings from ``folder`` (:func:`check_settings`) and build a node
    (not yet running).

    :raises SettingsError: when the folder is invalid (nothing is started).
    :raises TielineError: when this machine cannot run the node (a failover action's
        preflight, the node's epoch file damaged).
    """
    settings, plugins = check_settings(folder)
    return Node(settings, plugins)


__all__ = ["Node", "build_node", "check_settings", "TielineError"]
