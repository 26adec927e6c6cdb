"""The RoutingService: the one path every route, protect, lock, label and salvo request takes.

For each request, in this order: the node must be active; the router, levels and ports must
exist; the principal's permission level must allow it; no protect or lock may stand in the
way; policy plugins (``tieline_route_requested``) may refuse; the device must be online. Then
it hands the router's device link a command (:meth:`tieline.devices.DeviceLink.submit`) and
waits for that command's own outcome: the request is acknowledged only when the device's
own report confirms it (tally for routes, protect report for device-held protects, label
report for device labels), refused with the device's reason when the device refuses it, and
an error that says so when no confirmation comes within the router's
``confirm_timeout_ms``.

The service is also the device links' sink: it applies their reports to RouterState and
publishes the resulting events. It never touches a driver session: the link alone does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .devices import (
    Command,
    DeviceLink,
    DeviceReport,
    Driver,
    LabelCommand,
    LabelReport,
    Outcome,
    ProtectCommand,
    ProtectReport,
    ReleaseCommand,
    RouteCommand,
    TallyReport,
)
from .errors import (
    ConfirmTimeout,
    InvalidRequest,
    NodeStandby,
    NotFound,
    PermissionDenied,
    Protected,
    Refused,
    RequestError,
    RouterOffline,
)
from .events import (
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    EventBus,
    LabelsChanged,
    ProtectChanged,
)
from .failover import Failover
from .model import (
    Crosspoint,
    Permission,
    PortKind,
    Principal,
    Protect,
    ProtectKind,
    RouterState,
    Salvo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a policy plugin sees of a route or salvo crosspoint request.

    :param principal: who asks.
    :param router: the router's id.
    :param crosspoints: what would be set, 0-based.
    :param salvo: the salvo's name when the request is part of one.
    """

    principal: Principal
    router: str
    crosspoints: tuple[Crosspoint, ...]
    salvo: str | None = None


@dataclass(frozen=True, slots=True)
class RefusedCrosspoint:
    """One crosspoint of a salvo that was not made, and why."""

    crosspoint: Crosspoint
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class SalvoResult:
    """The outcome of taking a salvo: what the device confirmed and what was refused."""

    name: str
    router: str
    taken: tuple[Crosspoint, ...]
    refused: tuple[RefusedCrosspoint, ...]


@dataclass
class RouterRuntime:
    """Everything the service holds for one router."""

    state: RouterState
    driver: Driver
    link: DeviceLink | None = None
    confirm_timeout_s: float = 2.0
    label_store: str = "device"  #: "device" or "settings"
    settings_labels: dict[PortKind, dict[int, str]] = field(
        default_factory=lambda: {PortKind.SOURCE: {}, PortKind.DESTINATION: {}}
    )

    @property
    def id(self) -> str:
        return self.state.spec.id


LabelWriter = Callable[[str, PortKind, int, str], None]


def _write_request(method: Any) -> Any:
    """Count a write request as in flight while it is served (see RoutingService.drain)."""

    @functools.wraps(method)
    async def counted(self: RoutingService, *args: Any, **kwargs: Any) -> Any:
        self.in_flight += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()
                self._idle = None

    return counted


class RoutingService:
    """Checks, sends and confirms every request; applies every device report.

    :param bus: where events are published.
    :param failover: the node's status and write guards.
    :param policy: ``tieline_route_requested`` caller (``Plugins.route_requested``).
    :param label_writer: stores a label in settings (raises ReadOnly when it may not).
    """

    def __init__(
        self,
        bus: EventBus,
        failover: Failover,
        *,
        policy: Callable[[RouteRequest], str | None] = lambda request: None,
        label_writer: LabelWriter | None = None,
    ) -> None:
        self.bus = bus
        self.failover = failover
        self.policy = policy
        self.label_writer = label_writer
        self.routers: dict[str, RouterRuntime] = {}
        self.salvos: dict[str, Salvo] = {}
        #: write requests being served now (a planned handover waits for them).
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    async def drain(self, timeout: float) -> bool:
        """Wait until no write request is being served (new ones must be refused first).

        :returns: whether every request finished within ``timeout``.
        """
        if self.in_flight == 0:
            return True
        self._idle = self._idle or asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    def add_router(self, runtime: RouterRuntime) -> None:
        self.routers[runtime.id] = runtime
        if runtime.link is not None:
            # the fence, checked by the link when a command is handed to the driver and
            # before every write (a command may wait its turn; a driver may queue frames)
            runtime.link.guard = self.failover.require_active
        for kind, labels in runtime.settings_labels.items():
            for index, text in labels.items():
                runtime.state.set_label(kind, index, text)

    # -- lookups -----------------------------------------------------------------------
    def router(self, router_id: str) -> RouterRuntime:
        try:
            return self.routers[router_id]
        except KeyError:
            known = ", ".join(sorted(self.routers)) or "none"
            raise NotFound(
                f"no router '{router_id}'; this node has: {known}", field="router"
            ) from None

    def salvo(self, name: str) -> Salvo:
        try:
            return self.salvos[name]
        except KeyError:
            known = ", ".join(sorted(self.salvos)) or "none"
            raise NotFound(f"no salvo '{name}'; salvos: {known}", field="name") from None

    # -- sink for device links ---------------------------------------------------------
    def device_reports(self, router_id: str, reports: list[DeviceReport]) -> None:
        rt = self.routers[router_id]
        state = rt.state
        for report in reports:
            if isinstance(report, TallyReport):
                changed = [xp for xp in report.crosspoints if state.apply(xp)]
                if changed:
                    self.bus.publish(CrosspointsChanged(router_id, tuple(changed)))
            elif isinstance(report, ProtectReport):
                levels = range(len(state.spec.levels)) if report.level is None else [report.level]
                for level in levels:
                    # a device larger than settings say: only the configured part counts
                    if not (0 <= level < len(state.spec.levels)
                            and 0 <= report.destination < state.spec.destinations):
                        continue
                    if state.set_protect(level, report.destination, report.protect):
                        self.bus.publish(
                            ProtectChanged(router_id, level, report.destination, report.protect)
                        )
            elif isinstance(report, LabelReport):
                keep = rt.settings_labels[report.kind] if rt.label_store == "settings" else {}
                changed_labels = tuple(
                    (i, t) for i, t in report.labels
                    if i not in keep and state.set_label(report.kind, i, t)
                )
                if changed_labels:
                    self.bus.publish(LabelsChanged(router_id, report.kind, changed_labels))

    def device_online(self, router_id: str) -> None:
        self.routers[router_id].state.online = True
        self.bus.publish(DeviceOnline(router_id))

    def device_offline(self, router_id: str, reason: str) -> None:
        self.routers[router_id].state.online = False
        self.bus.publish(DeviceOffline(router_id, reason))

    # -- checks ------------------------------------------------------------------------
    @staticmethod
    def require(principal: Principal, level: Permission, action: str) -> None:
        """Raise PermissionDenied unless ``principal`` has ``level``."""
        if principal.level < level:
            raise PermissionDenied(
                f"{principal.name} (permission level {int(principal.level)}) may not {action}: "
                f"that needs permission level {int(level)}"
            )

    def _blocking(self, rt: RouterRuntime, principal: Principal, xp: Crosspoint) -> Protected | None:
        protect = rt.state.protect(xp.level, xp.destination)
        if protect is None or not protect.blocks(principal):
            return None
        spec = rt.state.spec
        return Protected(
            f"router '{spec.id}': destination {xp.destination + 1} "
            f"({rt.state.label(PortKind.DESTINATION, xp.destination)}) on level "
            f"{spec.levels[xp.level]} is {'locked' if protect.kind is ProtectKind.LOCK else 'protected'}"
            f" by {protect.owner}",
            owner=protect.owner,
            field="destination",
        )

    async def _submit(self, rt: RouterRuntime, command: Command) -> Outcome:
        """Hand ``command`` to the router's device link; its own outcome."""
        if rt.link is None:
            raise RouterOffline(f"router '{rt.id}' has no device link")
        return await rt.link.submit(command, rt.confirm_timeout_s)

    def _timeout_error(self, rt: RouterRuntime, what: str) -> ConfirmTimeout:
        return ConfirmTimeout(
            f"router '{rt.id}': the device did not confirm {what} within "
            f"{rt.confirm_timeout_s:g} s; it may be refusing it or the link may be slow "
            "(check the tally)"
        )

    # -- requests ----------------------------------------------------------------------
    @_write_request
    async def route(
        self, principal: Principal, router_id: str, destination: int, source: int,
        levels: Sequence[str] | None = None,
    ) -> tuple[Crosspoint, ...]:
        """Route ``source`` to ``destination`` (0-based) on ``levels`` (all when None).

        :returns: the crosspoints the device confirmed.
        :raises RequestError: when refused, offline, or not confirmed in time.
        """
        self.failover.require_active()
        rt = self.router(router_id)
        spec = rt.state.spec
        level_ids = spec.level_indexes(levels)
        spec.check_destination(destination)
        spec.check_source(source)
        self.require(principal, Permission.ROUTE, "route")
        crosspoints = tuple(Crosspoint(level, destination, source) for level in level_ids)
        for xp in crosspoints:
            blocked = self._blocking(rt, principal, xp)
            if blocked is not None:
                raise blocked
        reason = self.policy(RouteRequest(principal, router_id, crosspoints))
        if reason is not None:
            raise Refused(f"route refused by policy: {reason}")
        outcome = await self._submit(rt, RouteCommand(crosspoints, principal.name))
        for xp, error in zip(crosspoints, outcome.results):
            if isinstance(error, ConfirmTimeout):
                raise self._timeout_error(
                    rt, f"destination {destination + 1} ← source {source + 1} on level "
                    f"{spec.levels[xp.level]}",
                )
            if error is not None:
                raise error
        return crosspoints

    @_write_request
    async def take_salvo(self, principal: Principal, name: str) -> SalvoResult:
        """Take a salvo: every crosspoint not refused is sent at once, then confirmed.

        :returns: what the device confirmed, and every crosspoint refused with its reason.
        """
        self.failover.require_active()
        salvo = self.salvo(name)
        rt = self.router(salvo.router)
        self.require(principal, Permission.ROUTE, "take salvos")
        refused: list[RefusedCrosspoint] = []
        to_send: list[Crosspoint] = []
        for xp in salvo.crosspoints:
            blocked = self._blocking(rt, principal, xp)
            if blocked is None:
                reason = self.policy(RouteRequest(principal, rt.id, (xp,), salvo=name))
                if reason is not None:
                    blocked = Refused(f"refused by policy: {reason}")
            if blocked is not None:
                refused.append(RefusedCrosspoint(xp, blocked.code, blocked.message))
            else:
                to_send.append(xp)
        taken: list[Crosspoint] = []
        if to_send:
            outcome = await self._submit(rt, RouteCommand(tuple(to_send), principal.name))
            if isinstance(outcome.results[0], NodeStandby):  # not sent at all
                raise outcome.results[0]
            for xp, error in zip(to_send, outcome.results):
                if error is None:
                    taken.append(xp)
                elif isinstance(error, ConfirmTimeout):
                    refused.append(RefusedCrosspoint(
                        xp, error.code,
                        f"not confirmed by the device within {rt.confirm_timeout_s:g} s",
                    ))
                else:
                    refused.append(RefusedCrosspoint(xp, error.code, error.message))
        return SalvoResult(name, rt.id, tuple(taken), tuple(refused))

    @_write_request
    async def protect(
        self, principal: Principal, router_id: str, destination: int,
        levels: Sequence[str] | None = None, kind: ProtectKind = ProtectKind.PROTECT,
    ) -> None:
        """Protect or lock ``destination`` on ``levels`` for ``principal``."""
        self.failover.require_active()
        rt = self.router(router_id)
        spec = rt.state.spec
        level_ids = spec.level_indexes(levels)
        spec.check_destination(destination)
        self.require(principal, Permission.ROUTE, f"{kind} destinations")
        wanted = Protect(kind, principal.name)
        for level in level_ids:
            current = rt.state.protect(level, destination)
            if current is not None and current.owner != principal.name:
                raise Protected(
                    f"router '{router_id}': destination {destination + 1} on level "
                    f"{spec.levels[level]} is already {current.kind}ed by {current.owner}",
                    owner=current.owner, field="destination",
                )
        await self._set_protects(rt, principal, destination, level_ids, wanted, force=False)

    @_write_request
    async def release(
        self, principal: Principal, router_id: str, destination: int,
        levels: Sequence[str] | None = None, *, force: bool = False,
    ) -> None:
        """Release a protect or lock; someone else's only with ``force`` and permission level 3."""
        self.failover.require_active()
        rt = self.router(router_id)
        spec = rt.state.spec
        level_ids = spec.level_indexes(levels)
        spec.check_destination(destination)
        self.require(principal, Permission.ROUTE, "release destinations")
        for level in level_ids:
            current = rt.state.protect(level, destination)
            if current is not None and current.owner != principal.name:
                if not force:
                    raise Protected(
                        f"router '{router_id}': destination {destination + 1} on level "
                        f"{spec.levels[level]} is {current.kind}ed by {current.owner}; only "
                        "its owner may release it, or an administrator with force",
                        owner=current.owner, field="destination",
                    )
                self.require(principal, Permission.ADMIN, "release someone else's protect")
        levels_held = [lv for lv in level_ids if rt.state.protect(lv, destination) is not None]
        await self._set_protects(rt, principal, destination, levels_held, None, force=force)

    async def _set_protects(
        self, rt: RouterRuntime, principal: Principal, destination: int,
        level_ids: Sequence[int], wanted: Protect | None, *, force: bool,
    ) -> None:
        device_levels, local_levels = [], []
        for level in level_ids:
            current = rt.state.protect(level, destination)
            kind = wanted.kind if wanted is not None else (current.kind if current else None)
            if kind in rt.driver.device_protects:
                device_levels.append(level)
            else:
                local_levels.append(level)
        if device_levels:
            commands: list[Command] = [
                ReleaseCommand(level, destination, principal.name, force) if wanted is None
                else ProtectCommand(level, destination, wanted.kind, principal.name)
                for level in device_levels
            ]
            outcomes = await asyncio.gather(*(self._submit(rt, c) for c in commands))
            for error in (o.results[0] for o in outcomes):
                if isinstance(error, ConfirmTimeout):
                    raise self._timeout_error(rt, f"the protect on destination {destination + 1}")
                if error is not None:
                    raise error
        for level in local_levels:
            if rt.state.set_protect(level, destination, wanted):
                self.bus.publish(ProtectChanged(rt.id, level, destination, wanted))

    @_write_request
    async def set_label(
        self, principal: Principal, router_id: str, kind: PortKind, index: int, text: str
    ) -> None:
        """Label a port: on the device when it stores labels, in settings otherwise."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no file or device can take it
            raise InvalidRequest(
                f"label text holds {text[exc.start]!r} at character {exc.start + 1}, which is "
                "not Unicode text (a lone surrogate); send UTF-8 text", field="text") from None
        rt = self.router(router_id)
        spec = rt.state.spec
        if kind is PortKind.SOURCE:
            spec.check_source(index, field="index")
        else:
            spec.check_destination(index, field="index")
        self.require(principal, Permission.ADMIN, "change labels")
        if rt.label_store == "settings" or not rt.driver.device_labels:
            self.failover.require_settings_writable()
            if self.label_writer is None:
                raise Refused(f"router '{router_id}': labels cannot be stored on this node")
            self.label_writer(router_id, kind, index, text)
            rt.settings_labels[kind][index] = text
            if rt.state.set_label(kind, index, text):
                self.bus.publish(LabelsChanged(router_id, kind, ((index, text),)))
            return
        self.failover.require_active()
        outcome = await self._submit(rt, LabelCommand(kind, index, text))
        error = outcome.results[0]
        if isinstance(error, ConfirmTimeout):
            raise self._timeout_error(rt, f"the label of {kind} {index + 1}")
        if error is not None:
            raise error
