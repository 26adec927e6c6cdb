"""The plugin manager: one per node, loading the entry-point group ``tieline``.

Bundled plugins are entry points exactly like third-party ones. A plugin that fails at
import, fails pluggy's validation (a misspelt hook), or raises in a hook is reported by
name and left out; the node goes on unless its settings need what that plugin provides.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

log = logging.getLogger(__name__)

#: Marker for hook implementations: ``@tieline.hookimpl``.
hookimpl = pluggy.HookimplMarker("tieline")

ENTRY_POINT_GROUP = "tieline"


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable; return it otherwise (datasette's helper)."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class PluginInfo:
    """What ``tieline plugins`` shows of one plugin."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    status: str = "loaded"  #: loaded, disabled or failed
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "status": self.status,
            "error": self.error,
        }


class Plugins:
    """A pluggy PluginManager for one node, with failure isolation per plugin.

    :param disabled: names of entry points not to load (from settings ``plugins.disabled``).
    :param entry_points: load the ``tieline`` entry-point group (False in a few unit tests
        that register plugins by hand).
    """

    def __init__(self, disabled: Iterable[str] = (), *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("tieline")
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled)
        self.infos: dict[str, PluginInfo] = {}
        from . import transports  # the core's own hook implementations

        self.pm.register(transports, name="tieline.core")
        self.infos["tieline.core"] = PluginInfo("tieline.core", "tieline", _version("tieline"))
        if entry_points:
            self._load_entry_points()
        self._check_pending()
        for name, info in self.infos.items():
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    # -- loading -----------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        found: dict[str, list[importlib.metadata.EntryPoint]] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            same_name = found.setdefault(ep.name, [])
            if all(_dist(other)[0] != _dist(ep)[0] for other in same_name):
                same_name.append(ep)  # (one distribution may be visible twice on sys.path)
        for name, eps in found.items():
            eps.sort(key=lambda ep: _dist(ep)[0] != "tieline")  # a bundled plugin keeps its name
            self._load(eps[0])
            for other in eps[1:]:  # never silently hidden: listed as failed, saying why
                dist, version = _dist(other)
                key = f"{name} ({dist})"
                self.infos[key] = PluginInfo(key, dist, version)
                self._fail(key, f"not loaded: the plugin name '{name}' is already used by "
                                f"the distribution '{_dist(eps[0])[0]}'; rename this plugin's "
                                "entry point in the group 'tieline' (its pyproject.toml) and "
                                "reinstall it")

    def _load(self, ep: importlib.metadata.EntryPoint) -> None:
        info = PluginInfo(ep.name, *_dist(ep))
        self.infos[ep.name] = info
        if ep.name in self.disabled:
            self.pm.set_blocked(ep.name)
            info.status = "disabled"
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure of third-party code
            self._fail(ep.name, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
            return
        self.register(plugin, ep.name, info)

    def register(self, plugin: object, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object by hand (tests, embedded use)."""
        self.infos.setdefault(name, info or PluginInfo(name, "?", "?"))
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._fail(name, str(exc))

    def _check_pending(self) -> None:
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                self.pm.unregister(exc.plugin)
                self._fail(name, f"{exc} (misspelt hook name?)")

    def _fail(self, name: str, message: str) -> None:
        error = PluginError(name, message)
        log.error("%s", error)
        info = self.infos.setdefault(name, PluginInfo(name, "?", "?"))
        info.status = "failed"
        info.error = message

    @property
    def failures(self) -> dict[str, str]:
        """Plugins that failed, with why."""
        return {n: i.error or "" for n, i in self.infos.items() if i.status == "failed"}

    # -- calling hooks -----------------------------------------------------------------
    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook separately; a failing one is reported and skipped.

        :returns: ``(plugin name, result)`` pairs in pluggy's call order, None results left out.
        """
        caller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # a plugin's bug must not take the node down
                self._hook_failed(impl.plugin_name, hook_name, exc)
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    async def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a notification hook, awaiting awaitable results; failures are logged by plugin."""
        for plugin_name, result in self.call_each(hook_name, **kwargs):
            try:
                await await_me_maybe(result)
            except Exception as exc:  # a plugin's bug must not take the node down
                self._hook_failed(plugin_name, hook_name, exc)

    def _hook_failed(self, plugin: str, hook: str, exc: Exception) -> None:
        log.error(
            "%s", PluginError(plugin, f"hook {hook} raised {type(exc).__name__}: {exc}"),
            exc_info=exc,
        )

    def _collect(self, hook_name: str, kind: str) -> dict[str, tuple[str, Any]]:
        """Merge ``name -> class`` results of a registration hook; duplicates are refused."""
        found: dict[str, tuple[str, Any]] = {}
        for plugin_name, result in self.call_each(hook_name):
            items = result.items() if isinstance(result, dict) else ((c.name, c) for c in result)
            for name, obj in items:
                if name in found:
                    self._fail(
                        plugin_name,
                        f"{kind} '{name}' is already provided by plugin '{found[name][0]}'",
                    )
                    continue
                found[name] = (plugin_name, obj)
        return found

    def drivers(self) -> dict[str, tuple[str, Any]]:
        """``driver name -> (plugin name, Driver class)``."""
        return self._collect("tieline_router_drivers", "driver")

    def transports(self) -> dict[str, tuple[str, Any]]:
        """``transport type -> (plugin name, Transport class)``."""
        return self._collect("tieline_transports", "transport")

    def client_apis(self) -> dict[str, tuple[str, Any]]:
        """``API type -> (plugin name, ClientApi class)``."""
        return self._collect("tieline_client_apis", "client API")

    def strategies(self) -> dict[str, tuple[str, Any]]:
        """``strategy name -> (plugin name, strategy class)``: the electors."""
        from .failover import FailoverAction

        return {name: found for name, found in self._failover_classes().items()
                if not issubclass(found[1], FailoverAction)}

    def failover_actions(self) -> dict[str, tuple[str, Any]]:
        """``key -> (plugin name, FailoverAction class)``: actions on transitions."""
        from .failover import FailoverAction

        return {name: found for name, found in self._failover_classes().items()
                if issubclass(found[1], FailoverAction)}

    def _failover_classes(self) -> dict[str, tuple[str, Any]]:
        return self._collect("tieline_failover_strategies", "failover strategy")

    def api_commands(self) -> dict[str, tuple[str, Any]]:
        """``command name -> (plugin name, ApiCommand)``."""
        return self._collect("tieline_api_commands", "API command")

    def emulators(self) -> dict[str, tuple[str, Any]]:
        """``emulator name -> (plugin name, DeviceEmulator class)``."""
        return self._collect("tieline_emulators", "emulator")

    def settings_schemas(self) -> dict[str, tuple[str, dict]]:
        """``top-level key -> (plugin name, JSON Schema)``."""
        return self._collect("tieline_settings_schemas", "settings block")

    def route_requested(self, request: Any) -> str | None:
        """Ask policy plugins about a route; the first reason given refuses it.

        A policy plugin that raises refuses the request too (a broken policy must not be
        bypassed silently); the reason names the plugin.
        """
        for impl in reversed(self.pm.hook.tieline_route_requested.get_hookimpls()):
            try:
                reason = impl.function(*[{"request": request}[a] for a in impl.argnames])
            except Exception as exc:  # a plugin's bug must not take the node down
                self._hook_failed(impl.plugin_name, "tieline_route_requested", exc)
                return f"policy plugin '{impl.plugin_name}' failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                return str(reason)
        return None

    def plugin_for(self, kind: str, name: str) -> str:
        """A hint for an unknown driver/API/strategy name: which plugins failed to load, and
        which are installed but disabled."""
        failed = self.failures
        disabled = sorted(n for n, info in self.infos.items() if info.status == "disabled")
        which = "loaded" if failed or disabled else "installed"
        hint = f"no {which} plugin provides {kind} '{name}'"
        if failed:
            hint += "; these plugins failed: " + "; ".join(
                f"'{n}' ({e})" for n, e in sorted(failed.items()))
        if disabled:
            hint += (f"; disabled by \"plugins\": {{\"disabled\": …}} in tieline.json: "
                     f"{', '.join(disabled)}"
                     + (f" (remove '{name}' there to use it)" if name in disabled else ""))
        return hint


def _dist(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    """The name and version of the distribution that declares ``ep``."""
    return (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"
