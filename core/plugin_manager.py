"""The plugin manager: one per node, loading the entry-point group ``tieline``.

Bundled plugins are entry points exactly like third-party ones. A plugin that fails at
import, fails pluggy's validation (a misspelt hook), or raises in a hook is reported by
name and left out; the node goes on unless its settings need what that plugin provides.

Every hook is called through pluggy (``pm.hook.<name>(...)``), so a plugin's hook wrappers
(``@tieline.hookimpl(wrapper=True)``) see every call, and pluggy's tracing
(``pm.trace.root.setwriter`` with ``pm.enable_tracing()``, or
``pm.add_hookcall_monitoring``) records it. Failures are isolated in one place,
:class:`IsolatingPluginManager`: when a plugin is registered, each of its hook
implementations is replaced in pluggy's ``HookImpl`` by a guard around it (the way pytest's
``PytestPluginManager`` adapts registration), so the call still runs in pluggy's
``_multicall``, between the wrappers, in pluggy's order. A guard that catches an exception
logs a :class:`~tieline.errors.PluginError` naming the plugin and the hook, with the
traceback, and then:

- an implementation contributes nothing (as if it had returned ``None``); the other
  plugins' results stand. An awaitable it returns is guarded the same way when awaited;
- on a ``firstresult`` hook (``tieline_route_requested``) it raises that PluginError
  instead, ending the call as pluggy ends a call that raises: skipping a broken policy
  would let the next one decide in its place. :meth:`Plugins.route_requested` turns it into
  a refusal naming the plugin;
- a hook wrapper that raises (before or after its ``yield``), never yields or yields twice
  steps aside: the call goes on, and the result is what it would have been without it.

Results carry no plugin name in pluggy; :meth:`Plugins.call_each` learns whose each result
is from the guards, which note what their implementation (or a wrapper, for what it adds)
returned during that call.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
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


#: What a guard notes of one hook call: ``id(result) -> (plugin name, result)``.
Owners = dict[int, tuple[str, Any]]


class IsolatingPluginManager(pluggy.PluginManager):
    """pluggy's PluginManager for the project ``tieline``, guarding every hook
    implementation and hook wrapper it registers (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("tieline")
        self._calls = threading.local()  # the calls of call_each under way: [(hook, owners)]

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` as pluggy does, then guard each of its hook functions."""
        registered = super().register(plugin, name)
        if registered is not None:  # (None: a blocked name)
            for caller in self.get_hookcallers(plugin) or ():
                firstresult = bool(caller.spec and caller.spec.opts.get("firstresult"))
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        # HookImpl.function is Final to pluggy's type checks, not at run time
                        impl.function = _guard(impl, caller.name, firstresult, self._note)
        return registered

    @contextlib.contextmanager
    def owners(self, hook_name: str) -> Iterator[Owners]:
        """While the block calls ``hook_name``, note which plugin returned each result."""
        calls = self._calls.__dict__.setdefault("stack", [])
        owners: Owners = {}
        calls.append((hook_name, owners))
        try:
            yield owners
        finally:
            calls.pop()

    def _note(self, hook_name: str, plugin: str, result: Any) -> None:
        calls = self._calls.__dict__.get("stack")
        if calls and calls[-1][0] == hook_name:
            calls[-1][1].setdefault(id(result), (plugin, result))  # (kept alive: ids unique)


def _guard(impl: pluggy.HookImpl, hook_name: str, firstresult: bool,
           note: Callable[[str, str, Any], None]) -> Callable[..., Any]:
    """The function pluggy calls in place of ``impl.function``: the one place where a
    plugin's failure in a hook is caught, reported and isolated."""
    function, plugin = impl.function, impl.plugin_name

    def failed(exc: BaseException) -> None:
        error = PluginError(plugin, f"hook {hook_name} raised {type(exc).__name__}: {exc}")
        log.error("%s", error, exc_info=exc)
        if firstresult:  # skipping it would let the next implementation decide in its place
            raise error from exc

    if impl.wrapper or impl.hookwrapper:

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[None, Any, Any]:
            try:
                teardown = function(*args, **kwargs)
                next(teardown)
            except StopIteration:
                failed(RuntimeError("the hook wrapper did not yield"))
                return (yield)
            except Exception as exc:  # a plugin's bug must not take the node down
                failed(exc)
                return (yield)
            try:
                outcome = yield
            except BaseException as exc:  # raised by an implementation or an inner wrapper
                result, bug = _resume(teardown, throw=exc)
                if bug is exc:
                    raise
                if bug is not None:
                    failed(bug)
                    raise
            else:  # a new-style wrapper is sent the result, an old-style one a pluggy.Result
                result, bug = _resume(teardown, send=outcome)
                if bug is not None:
                    failed(bug)
                    return outcome
                if impl.hookwrapper:  # its result is what it left in the pluggy.Result
                    result = outcome.get_result() if outcome.exception is None else None
            if not firstresult and isinstance(result, list):
                for item in result:  # what the wrapper added is its own
                    note(hook_name, plugin, item)
            return None if impl.hookwrapper else result

        return wrapper

    async def awaited(awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:  # a plugin's bug must not take the node down
            failed(exc)
            return None

    @functools.wraps(function)
    def implementation(*args: Any, **kwargs: Any) -> Any:
        try:
            result = function(*args, **kwargs)
        except Exception as exc:  # a plugin's bug must not take the node down
            failed(exc)
            return None
        if result is not None:
            if inspect.isawaitable(result):
                result = awaited(result)
            note(hook_name, plugin, result)
        return result

    return implementation


def _resume(teardown: Generator[None, Any, Any], *, send: Any = None,
            throw: BaseException | None = None) -> tuple[Any, BaseException | None]:
    """Run a hook wrapper after its ``yield``: ``(its result, None)``, or ``(None, what
    went wrong)`` when it raised (maybe ``throw`` itself) or yielded again."""
    try:
        if throw is not None:
            teardown.throw(throw)
        else:
            teardown.send(send)
    except StopIteration as stop:
        return stop.value, None
    except Exception as exc:  # a plugin's bug must not take the node down
        return None, exc
    with contextlib.suppress(Exception):
        teardown.close()
    return None, RuntimeError("the hook wrapper yielded twice")


class Plugins:
    """The plugins of one node: an :class:`IsolatingPluginManager` (``pm``), what each
    plugin is (``infos``), and what their hooks provide.

    :param disabled: names of entry points not to load (from settings ``plugins.disabled``).
    :param entry_points: load the ``tieline`` entry-point group (False in a few unit tests
        that register plugins by hand).
    """

    def __init__(self, disabled: Iterable[str] = (), *, entry_points: bool = True) -> None:
        self.pm = IsolatingPluginManager()
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
        """Call a hook through pluggy; a failing implementation is reported and skipped.

        :returns: ``(plugin name, result)`` pairs in pluggy's call order, None results left
            out; a result a hook wrapper put in is the wrapper's plugin's.
        """
        with self.pm.owners(hook_name) as owners:
            results = getattr(self.pm.hook, hook_name)(**kwargs)
        return [(owners.get(id(result), ("?",))[0], result) for result in results]

    async def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a notification hook through pluggy, awaiting awaitable results in turn; a
        failure, in the call or in the awaitable, is logged by plugin (by the guards)."""
        for result in getattr(self.pm.hook, hook_name)(**kwargs):
            await await_me_maybe(result)

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
        try:
            reason = self.pm.hook.tieline_route_requested(request=request)
        except PluginError as exc:  # raised by a guard: the failure is logged already
            cause = exc.__cause__
            return f"policy plugin '{exc.plugin}' failed: {type(cause).__name__}: {cause}"
        return None if reason is None else str(reason)

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
