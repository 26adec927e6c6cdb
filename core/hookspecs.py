"""Hook specifications: everything a tieline plugin can provide or observe.

A plugin is a module or object registered under the entry-point group ``tieline``; it
implements any of the hooks below with :data:`tieline.hookimpl`. Hooks are called with
keyword arguments only, and a plugin may accept any subset of a hook's arguments.

Hooks are synchronous. Where noted, a hook may return an awaitable, which the core awaits
(``tieline.await_me_maybe``).

The core calls every hook through pluggy, so hook wrappers
(``@tieline.hookimpl(wrapper=True)``) and pluggy's tracing see each call. A hook that
raises (or whose awaitable raises) is reported by the plugin's name and contributes
nothing; the node keeps running unless its settings depend on what the plugin failed to
provide. A policy that raises in ``tieline_route_requested`` refuses the route (see
``tieline.plugin_manager``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .events import Event
    from .node import Node
    from .routing import RouteRequest

hookspec = pluggy.HookspecMarker("tieline")


# -------------------------------------------------------------------------------------------
# Registration hooks: called once while a node starts, after settings were read and before
# they are validated, so that plugins can contribute drivers, transports, APIs, strategies
# and the schemas that validate their own settings blocks.
# -------------------------------------------------------------------------------------------


@hookspec
def tieline_router_drivers() -> list[type] | None:
    """Return the router driver classes this plugin provides.

    Called once per node at start, and by ``tieline plugins`` and ``tieline validate``.

    Each class subclasses :class:`tieline.Driver` and sets its class attributes: ``name``
    (the value of ``"driver"`` in a router's settings), ``settings_schema`` (a JSON Schema
    for the driver's own keys in the router block), ``transports`` (the transport types it
    can run over), and ``allows_second_controller`` (whether the device tolerates another
    controller beside tieline).

    :returns: a list of driver classes, or None.

    Example::

        @tieline.hookimpl
        def tieline_router_drivers():
            return [VideohubDriver]
    """


@hookspec
def tieline_transports() -> dict[str, Any] | None:
    """Return transport factories by type name (``tcp``, ``serial``, ``ssh`` …).

    Called once per node at start. A factory is a subclass of :class:`tieline.Transport`;
    it is built with the ``"transport"`` block of a router's settings and opens a byte stream.

    :returns: a mapping ``{type name: transport class}``, or None.
    """


@hookspec
def tieline_client_apis() -> list[type] | None:
    """Return the client API server classes this plugin provides.

    Called once per node at start. Each class subclasses :class:`tieline.ClientApi` and sets
    ``name`` (the value of ``"type"`` in an ``apis`` entry) and ``settings_schema`` (and may
    override ``check`` for rules the schema cannot state); the node builds one instance per
    ``apis`` entry, awaits its ``start()`` once the device links run, and its ``close()``
    when it stops.

    :returns: a list of API classes, or None.
    """


@hookspec
def tieline_failover_strategies() -> list[type] | None:
    """Return the failover strategy classes this plugin provides.

    Called once per node at start. Two kinds of class may be returned:

    - an elector, a :class:`tieline.Strategy`, decides whether the node is active
      or standby; its ``name`` is the value of ``"strategy"`` in the ``failover`` block;
    - an action, a :class:`tieline.FailoverAction`, acts on transitions (claims a
      virtual IP) beside any elector; its ``name`` is a key of the ``failover`` block
      (``"vip"``), whose value its ``settings_schema`` validates.

    Each class sets ``name`` and ``settings_schema``.

    :returns: a list of strategy classes, or None.
    """


@hookspec
def tieline_api_commands() -> list[Any] | None:
    """Return extra commands for the client APIs.

    Called once per node at start. Each item is a :class:`tieline.ApiCommand`: the command
    name (the message ``"type"``), the JSON Schema of its message, the permission level it
    requires, and an async handler ``handler(node, principal, message) -> dict`` whose result
    is sent back to the client. A command name that a built-in command or another plugin
    already uses is refused with an error naming both plugins.

    :returns: a list of ApiCommand, or None.
    """


@hookspec
def tieline_emulators() -> list[type] | None:
    """Return the device emulator classes this plugin provides.

    Called by ``tieline emulate NAME`` and by tests. Each class subclasses
    :class:`tieline.DeviceEmulator`, is built on the plugin's own codec (device
    role), sets ``name`` (the NAME of ``tieline emulate``) and ``serial`` (whether it can
    serve a serial line), and builds itself from ``--inputs``, ``--outputs`` and
    ``--levels`` in ``from_cli``.

    :returns: a list of emulator classes, or None.

    Example::

        @tieline.hookimpl
        def tieline_emulators():
            return [VideohubEmulator]
    """


@hookspec
def tieline_settings_schemas() -> dict[str, dict] | None:
    """Return JSON Schemas for extra top-level blocks of ``tieline.json``.

    Called once per node at start, before settings are validated. The block named by each
    key is validated against its schema; a key no plugin claims is an unknown key.

    :returns: a mapping ``{top-level key: JSON Schema}``, or None.

    Example::

        @tieline.hookimpl
        def tieline_settings_schemas():
            return {"audit": {"type": "object", "properties": {"file": {"type": "string"}}}}
    """


# -------------------------------------------------------------------------------------------
# Running hooks: called while the node runs.
# -------------------------------------------------------------------------------------------


@hookspec
def tieline_node_started(node: Node) -> Any:
    """Called once the node's devices, APIs and failover strategy are running.

    :param node: the running :class:`tieline.Node`.
    :returns: None, or an awaitable that the node awaits.
    """


@hookspec
def tieline_event(event: Event) -> Any:
    """Observe every event published on the node's event bus.

    Called for each event, in order, from one observer task (never from the device link),
    so a slow observer delays only other observers. Use it for audit logs, metrics, tally
    to under-monitor displays.

    :param event: a :class:`tieline.Event` subclass instance.
    :returns: None, or an awaitable that the node awaits before the next event.
    """


@hookspec(firstresult=True)
def tieline_route_requested(request: RouteRequest) -> str | None:
    """Let a policy plugin refuse a route before it reaches the device.

    Called for every route and for every crosspoint of a salvo, after range, permission,
    protect and lock checks passed. Stops at first non-None result.

    :param request: a :class:`tieline.RouteRequest` (who, router, crosspoints).
    :returns: None to allow, or a reason (a sentence) to refuse; the client sees it.
    """


@hookspec
def tieline_node_stopping(node: Node) -> Any:
    """Called when the node begins to stop, before its APIs and device links close.

    :param node: the :class:`tieline.Node` that is stopping.
    :returns: None, or an awaitable that the node awaits (bounded by the stop timeout).
    """
