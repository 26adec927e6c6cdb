"""Settings: a folder of JSON files, validated as a whole before anything starts.

The folder (``--settings DIR`` or ``TIELINE_SETTINGS``) holds:

``tieline.json``
    the node, its routers, APIs, auth, plugins and failover (``schemas/settings/tieline.schema.json``);
``users.json``
    users and token hashes, when ``auth.users_file`` names it (``users.schema.json``);
``salvos.json``
    salvos, optional (``salvos.schema.json``);
``labels.json``
    port labels kept in settings, optional (``labels.schema.json``).

Each file is checked against its JSON Schema (draft 2020-12); each plugin block (a router's
driver keys and transport, an API entry, the failover strategy, a plugin's top-level block)
against the schema of the plugin that provides it; then the rules no schema can say
(duplicate ids, unknown drivers, salvos naming ports the router does not have …); then every
file the settings name is loaded as the node will load it (the users file, TLS certificates
and keys, the cluster key, SSH keys and known_hosts). Every problem is collected and
reported with file, line:column, JSON path and what was expected; one problem anywhere means
nothing is loaded.

Schemas are checked with :func:`schema_validator`: draft 2020-12 where an ``"integer"`` is written
without a fraction (``8``, not ``8.0``) and the string formats of
:data:`tieline.addresses.FORMATS` (``host``, ``listen-address``, ``host-port``, ``ws-url``)
are checked by the very functions that later bind or connect. The JSON itself is strict
(:mod:`tieline.settings.jsonfile`): no ``NaN``, no ``Infinity``, no repeated key.

Writes go through :class:`SettingsStore`: the new content is validated first, then written
atomically (``jsonfile.write_json_atomic``); the previous version is kept as ``<name>.prev``.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from . import catalog
from ..addresses import FORMATS, parse_hostport
from ..apis import TlsFileError, server_tls_context
from ..auth import User
from ..ops.discovery import parse_interfaces
from ..errors import InvalidRequest, NotSaved, SettingsError, SettingsProblem
from ..failover import Role
from ..logs import RateLimitedLog
from .jsonfile import JsonDocument, JsonFileError, json_path, load_json, write_json_atomic
from ..model import Crosspoint, Permission, PortKind, RouterSpec, Salvo

log = logging.getLogger(__name__)

MAIN_FILE = "tieline.json"
SALVOS_FILE = "salvos.json"
LABELS_FILE = "labels.json"

#: keys every router block may have, whatever its driver (see tieline.schema.json).
ROUTER_KEYS = ("id", "driver", "description", "levels", "sources", "destinations",
               "transport", "label_store", "confirm_timeout_ms", "standby_link")
#: keys every API entry may have, whatever its type.
API_KEYS = ("type", "listen")


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, parse in FORMATS.items():
        def check(instance: object, parse: Callable[[str], object] = parse) -> bool:
            if isinstance(instance, str):
                parse(instance)  # raises ValueError: the message names value and fix
            return True

        checker.checks(name, raises=ValueError)(check)
    return checker


def _is_integer(checker: Any, instance: Any) -> bool:
    """An integer as settings write one: ``8``, never ``8.0`` (which JSON Schema would call
    an integer, and the code would get as a float)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: The settings schemas' validator class: draft 2020-12, integers without a fraction.
StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)
#: Checks ``format`` in settings schemas, with the parsers of :mod:`tieline.addresses`.
FORMAT_CHECKER = _format_checker()


def schema_validator(schema: dict[str, Any]) -> Any:
    """A validator of settings against ``schema``: :data:`StrictValidator` with
    :data:`FORMAT_CHECKER`."""
    return StrictValidator(schema, format_checker=FORMAT_CHECKER)


def core_schema(name: str) -> dict[str, Any]:
    """A bundled settings schema by file name (``tieline.schema.json``)."""
    return catalog.load("settings", name)


@dataclass(frozen=True)
class RouterSettings:
    """One router block, checked."""

    spec: RouterSpec
    options: dict[str, Any]
    transport: dict[str, Any] | None
    label_store: str
    confirm_timeout_s: float
    #: "warm": a standby node keeps its link open and follows the tallies; "cold": a
    #: standby leaves the line closed (the device takes one controller) and a candidate
    #: connects and reads the whole state before it takes over
    standby_link: str = "warm"


@dataclass(frozen=True)
class Settings:
    """A whole settings folder, checked. Numbers are 0-based from here on."""

    folder: Path
    node_name: str
    role: Role
    routers: tuple[RouterSettings, ...]
    apis: tuple[dict[str, Any], ...]
    users: tuple[User, ...]
    users_file: str | None
    loopback_anonymous_level: int
    salvos: tuple[Salvo, ...]
    labels: dict[str, dict[PortKind, dict[int, str]]]
    failover: dict[str, Any] | None
    disabled_plugins: tuple[str, ...]
    #: ``{"mdns": bool, "interfaces": [IPv4, …]}`` (empty: not advertised)
    discovery: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)

    def router(self, router_id: str) -> RouterSettings | None:
        return next((r for r in self.routers if r.spec.id == router_id), None)


# -------------------------------------------------------------------------------------------
# Validation messages
# -------------------------------------------------------------------------------------------

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean",
               int: "integer", float: "number", type(None): "null"}


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _message(err: ValidationError) -> str:
    """A validation error as a sentence saying what was expected."""
    v, s, inst = err.validator, err.validator_value, err.instance
    if v == "type":
        wanted = " or ".join(s) if isinstance(s, list) else s
        return f"expected {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}, got {_type_name(inst)} {_shown(inst)}"
    if v == "minimum":
        return f"expected a number ≥ {s}, got {_shown(inst)}"
    if v == "maximum":
        return f"expected a number ≤ {s}, got {_shown(inst)}"
    if v == "exclusiveMinimum":
        return f"expected a number > {s}, got {_shown(inst)}"
    if v == "exclusiveMaximum":
        return f"expected a number < {s}, got {_shown(inst)}"
    if v == "enum":
        return f"expected one of {', '.join(_shown(x) for x in s)}; got {_shown(inst)}"
    if v == "const":
        return f"expected {_shown(s)}, got {_shown(inst)}"
    if v == "minLength":
        return "expected a non-empty string" if s == 1 else f"expected at least {s} characters"
    if v == "maxLength":
        return f"expected at most {s} characters, got {len(inst)}"
    if v == "minItems":
        return f"expected at least {s} item(s), got {len(inst)}"
    if v == "maxItems":
        return f"expected at most {s} item(s), got {len(inst)}"
    if v == "uniqueItems":
        return "expected no repeated items"
    if v == "pattern":
        wanted = err.schema.get("description", "").rstrip(".") or f"text matching {s}"
        return f"{_shown(inst)} has the wrong form; expected: {wanted}"
    if v == "propertyNames":
        return err.message
    if v == "format" and err.cause is not None:
        return str(err.cause)  # the parser's own words: what is wrong, what to write
    return err.message


def _unknown_key_message(key: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    text = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        text += f"; did you mean '{close[0]}'?"
    if allowed:
        text += f" (expected one of: {', '.join(allowed)})"
    return text


class _Problems:
    """Collects problems across the files of one folder."""

    def __init__(self) -> None:
        self.items: list[SettingsProblem] = []

    def add(self, doc: JsonDocument, path: tuple, message: str, *, key: bool = False) -> None:
        self.items.append(doc.problem(path, message, key=key))

    def schema(
        self, doc: JsonDocument, schema: dict[str, Any], instance: Any, base: tuple = (),
        hint: str = "",
    ) -> bool:
        """Validate ``instance`` (found at ``base`` in ``doc``); return whether it is valid."""
        ok = True
        for err in schema_validator(schema).iter_errors(instance):
            ok = False
            for path, message, key in _explain(err):
                self.add(doc, base + path, message + (hint if key else ""), key=key)
        return ok


def _explain(err: ValidationError) -> list[tuple[tuple, str, bool]]:
    """(path, message, is-a-key) for one validation error."""
    path = tuple(err.absolute_path)
    if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        err.instance, dict
    ):
        props = err.schema.get("properties", {})
        patterns = [re.compile(p) for p in err.schema.get("patternProperties", {})]
        extras = [k for k in err.instance if k not in props
                  and not any(p.search(k) for p in patterns)]
        return [(path + (k,), _unknown_key_message(k, props), True) for k in extras]
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return [(path, f"missing required key '{k}'", False) for k in missing]
    if err.validator in ("anyOf", "oneOf") and err.context:
        best = max(err.context, key=lambda e: len(e.absolute_path))
        return _explain(best)
    return [(path, _message(err), False)]


def _closed(common: Iterable[str], plugin_schema: dict[str, Any]) -> dict[str, Any]:
    """A closed object schema: the common keys (checked elsewhere) plus a plugin's own keys."""
    properties: dict[str, Any] = {k: True for k in common}
    properties.update(plugin_schema.get("properties", {}))
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    for key in ("required", "$defs", "allOf", "dependentRequired"):
        if key in plugin_schema:
            schema[key] = plugin_schema[key]
    return schema


# -------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------


def read_disabled_plugins(folder: Path) -> list[str]:
    """``plugins.disabled`` from tieline.json, read leniently (full checks come later)."""
    try:
        data = load_json(folder / MAIN_FILE).data
    except JsonFileError:
        return []
    block = data.get("plugins") if isinstance(data, dict) else None
    disabled = block.get("disabled") if isinstance(block, dict) else None
    if isinstance(disabled, list):
        return [d for d in disabled if isinstance(d, str)]
    return []


def load_settings(folder: Path | str, plugins: Any, *,
                  replace: Mapping[str, str | None] | None = None) -> Settings:
    """Load and check a whole settings folder.

    :param folder: the settings folder.
    :param plugins: the node's :class:`tieline.plugins.Plugins` (drivers, APIs, strategies,
        transports and settings blocks, with their schemas).
    :param replace: file texts to check instead of the folder's (None: as if absent), e.g.
        settings received from another node, checked before they are written.
    :raises SettingsError: listing every problem found.
    """
    folder = Path(folder)
    return _Loader(folder, plugins, replace).load()


def _spec(block: dict[str, Any]) -> RouterSpec | None:
    """The router's shape if its id, driver, levels and sizes are well-typed (else None)."""
    rid, driver, levels = block.get("id"), block.get("driver"), block.get("levels")
    sources, destinations = block.get("sources"), block.get("destinations")
    if not (isinstance(rid, str) and isinstance(driver, str) and isinstance(levels, list)
            and levels and all(isinstance(x, str) for x in levels)):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65536
               for n in (sources, destinations)):
        return None
    return RouterSpec(rid, driver, tuple(levels), sources, destinations)


class _Loader:
    def __init__(self, folder: Path, plugins: Any,
                 replace: Mapping[str, str | None] | None = None) -> None:
        self.folder = folder
        self.replace = dict(replace or {})
        self.plugins = plugins
        self.problems = _Problems()
        self.drivers = plugins.drivers()
        self.transports = plugins.transports()
        self.apis = plugins.client_apis()
        self.strategies = plugins.strategies()
        self.failover_actions = plugins.failover_actions()
        self.blocks = plugins.settings_schemas()
        #: routers whose shape is valid (even if their driver block is not): for checking
        #: salvos and labels without repeating the router's own problems.
        self.specs: dict[str, RouterSpec] = {}

    def fail(self) -> SettingsError:
        self.problems.items.sort(key=lambda p: (p.file != MAIN_FILE, p.file, p.line, p.column))
        return SettingsError(self.folder, self.problems.items)

    def _exists(self, name: str) -> bool:
        if name in self.replace:
            return self.replace[name] is not None
        return (self.folder / name).is_file()

    def _read(self, name: str) -> JsonDocument | None:
        try:
            if name in self.replace and self.replace[name] is not None:
                return JsonDocument.from_text(self.replace[name], name)  # type: ignore[arg-type]
            return load_json(self.folder / name, name)
        except JsonFileError as exc:
            self.problems.items.append(exc.problem)
            return None

    def load(self) -> Settings:
        if not self.folder.is_dir():
            raise SettingsError(self.folder, [SettingsProblem(
                str(self.folder), 0, 0, "$",
                "settings folder not found; give an existing folder with --settings or "
                "TIELINE_SETTINGS, or run `tieline run` without them for the demo",
            )])
        main = self._read(MAIN_FILE)
        if main is None:
            raise self.fail()
        schema = copy.deepcopy(core_schema("tieline.schema.json"))
        for key, (_plugin, block_schema) in self.blocks.items():
            schema["properties"].setdefault(key, block_schema)
        data = main.data
        hint = " (if a plugin provides this block, is it installed and enabled?)"
        if not self.problems.schema(main, schema, data, hint=hint) and not isinstance(data, dict):
            raise self.fail()
        routers = self._routers(main)
        self._apis(main)
        role = self._node(main)
        users, users_file, anon = self._auth(main)
        salvos = self._salvos(self.specs)
        labels = self._labels(self.specs)
        self._discovery(main)
        if self.problems.items:
            raise self.fail()
        node = data["node"]
        return Settings(
            folder=self.folder,
            node_name=node["name"],
            role=role,
            routers=tuple(routers),
            apis=tuple(data.get("apis", [])),
            users=tuple(users),
            users_file=users_file,
            loopback_anonymous_level=anon,
            salvos=tuple(salvos),
            labels=labels,
            failover=data.get("failover"),
            disabled_plugins=tuple(data.get("plugins", {}).get("disabled", [])),
            discovery=dict(data.get("discovery", {})),
            blocks={k: data[k] for k in self.blocks if k in data},
            documents={MAIN_FILE: data},
        )

    # -- tieline.json ------------------------------------------------------------------
    def _discovery(self, main: JsonDocument) -> None:
        block = main.data.get("discovery")
        interfaces = block.get("interfaces") if isinstance(block, dict) else None
        for i, address in enumerate(interfaces if isinstance(interfaces, list) else []):
            if isinstance(address, str):
                try:
                    parse_interfaces(address)
                except ValueError as exc:
                    self.problems.add(main, ("discovery", "interfaces", i), str(exc))

    def _node(self, main: JsonDocument) -> Role:
        data = main.data
        node = data.get("node") if isinstance(data.get("node"), dict) else {}
        try:
            role = Role(node.get("role", "standalone"))
        except ValueError:
            return Role.STANDALONE  # reported by the schema
        failover = data.get("failover")
        if role is not Role.STANDALONE and not isinstance(failover, dict):
            self.problems.add(
                main, ("node", "role"),
                f"role '{role}' needs a 'failover' block naming a strategy; use role "
                "'standalone' for a single node",
            )
        if isinstance(failover, dict) and isinstance(failover.get("strategy"), str):
            name = failover["strategy"]
            if name not in self.strategies:
                self.problems.add(
                    main, ("failover", "strategy"),
                    f"unknown failover strategy '{name}'; "
                    + self._available("failover strategy", name, self.strategies),
                )
            else:
                cls = self.strategies[name][1]
                actions = [k for k in failover if k in self.failover_actions]
                elector = {k: v for k, v in failover.items() if k not in actions}
                if self.problems.schema(main, _closed(["strategy", *actions],
                                                      cls.settings_schema),
                                        failover, ("failover",)):
                    for key, message in cls.check(elector):
                        self.problems.add(main, ("failover", key) if key in failover
                                          else ("failover",), message)
                    for key in actions:
                        action_cls = self.failover_actions[key][1]
                        block = failover[key]
                        if self.problems.schema(main, _closed([], action_cls.settings_schema),
                                                block, ("failover", key)):
                            for sub, message in action_cls.check(block):
                                self.problems.add(main, ("failover", key, sub)
                                                  if sub in block else ("failover", key),
                                                  message)
                    if "listen" in failover:
                        self._cluster_key(main, failover)
        return role

    def _cluster_key(self, main: JsonDocument, failover: dict[str, Any]) -> None:
        """The peer link's cluster key, loaded as the strategy will load it."""
        from ..cluster.peerlink import ClusterKeyError, load_cluster_key

        key_file = failover.get("key", "cluster.key")
        where = ("failover", "key") if "key" in failover else ("failover",)
        if not (self.folder / key_file).is_file():
            self.problems.add(
                main, where,
                f"cluster key '{key_file}' not found in the settings folder; make it once "
                f"with `tieline keys generate {self.folder}` and copy it to every node of "
                "the cluster")
            return
        try:
            load_cluster_key(self.folder / key_file)
        except ClusterKeyError as exc:
            self.problems.add(main, where, str(exc))

    def _available(self, kind: str, name: str, found: dict[str, Any]) -> str:
        hint = self.plugins.plugin_for(kind, name)
        if found:
            hint += f"; available: {', '.join(sorted(found))}"
        return hint

    def _routers(self, main: JsonDocument) -> list[RouterSettings]:
        blocks = main.data.get("routers")
        if not isinstance(blocks, list):
            return []
        out: list[RouterSettings] = []
        seen: dict[str, int] = {}
        for i, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            base = ("routers", i)
            rid = block.get("id")
            if isinstance(rid, str):
                if rid in seen:
                    self.problems.add(
                        main, base + ("id",),
                        f"duplicate router id '{rid}' (also at $.routers[{seen[rid]}]); "
                        "router ids must be unique",
                    )
                seen.setdefault(rid, i)
            levels = block.get("levels")
            if isinstance(levels, list):
                names: dict[str, int] = {}
                for j, name in enumerate(levels):
                    if not isinstance(name, str):
                        continue  # reported by the schema
                    if name in names:
                        self.problems.add(main, base + ("levels", j),
                                          f"duplicate level name '{name}'")
                    names.setdefault(name, j)
            driver_name = block.get("driver")
            spec = _spec(block)
            if spec is not None:
                self.specs.setdefault(spec.id, spec)
            if not isinstance(driver_name, str):
                continue
            if driver_name not in self.drivers:
                self.problems.add(
                    main, base + ("driver",),
                    f"unknown driver '{driver_name}'; "
                    + self._available("driver", driver_name, self.drivers),
                )
                continue
            cls = self.drivers[driver_name][1]
            ok = self.problems.schema(main, _closed(ROUTER_KEYS, cls.settings_schema), block, base)
            transport = block.get("transport")
            if transport is None and cls.transport_required:
                self.problems.add(
                    main, base,
                    f"router '{rid}': driver '{driver_name}' needs a 'transport' block, e.g. "
                    f'{{"type": "{cls.transports[0]}", "host": "…"}}',
                )
                ok = False
            elif isinstance(transport, dict) and isinstance(transport.get("type"), str):
                ttype = transport["type"]
                if ttype not in cls.transports:
                    self.problems.add(
                        main, base + ("transport", "type"),
                        f"driver '{driver_name}' cannot run over '{ttype}'; it supports: "
                        + ", ".join(cls.transports),
                    )
                    ok = False
                elif ttype not in self.transports:
                    self.problems.add(
                        main, base + ("transport", "type"),
                        f"unknown transport '{ttype}'; "
                        + self._available("transport", ttype, self.transports),
                    )
                    ok = False
                else:
                    tcls = self.transports[ttype][1]
                    transport_ok = self.problems.schema(
                        main, _closed(["type"], tcls.settings_schema), transport,
                        base + ("transport",),
                    )
                    ok &= transport_ok
                    defaults = cls.transport_defaults.get(ttype, {})
                    checks = tcls.check(transport, defaults=defaults, folder=self.folder) \
                        if transport_ok else []
                    for key, message in checks:
                        if key in transport:
                            self.problems.add(main, base + ("transport", key), message)
                        else:
                            self.problems.add(main, base + ("transport",), f"'{key}': {message}")
                        ok = False
            if block.get("label_store") == "device" and not cls.device_labels:
                self.problems.add(
                    main, base + ("label_store",),
                    f"driver '{driver_name}' cannot store labels on the device; use "
                    "\"settings\" or leave label_store out",
                )
                ok = False
            ttype = transport.get("type") if isinstance(transport, dict) else None
            standby_link = block.get("standby_link", "cold" if ttype == "serial"
                                     or not cls.allows_second_controller else "warm")
            if standby_link == "warm" and not cls.allows_second_controller:
                self.problems.add(
                    main, base + ("standby_link",),
                    f"driver '{driver_name}': the device takes one controller at a time, so a "
                    "standby node cannot keep its link open; use \"cold\" or leave "
                    "standby_link out",
                )
                ok = False
            if ok and spec is not None:
                for key, message in cls.check(spec, block):
                    self.problems.add(main, base + ((key,) if key in block else ()),
                                      message)
                    ok = False
            if not ok or spec is None:
                continue
            store = block.get("label_store", "device" if cls.device_labels else "settings")
            out.append(RouterSettings(
                spec=spec, options=block, transport=transport, label_store=store,
                confirm_timeout_s=block.get("confirm_timeout_ms", 2000) / 1000,
                standby_link=standby_link,
            ))
        return out

    def _apis(self, main: JsonDocument) -> None:
        entries = main.data.get("apis")
        if not isinstance(entries, list):
            return
        listening: dict[tuple[str, int], int] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            base = ("apis", i)
            listen = entry.get("listen")
            if isinstance(listen, str):
                try:
                    addr = parse_hostport(listen)
                except ValueError:
                    pass  # reported by the schema's pattern
                else:
                    if addr in listening and addr[1] != 0:  # port 0: any free port
                        self.problems.add(
                            main, base + ("listen",),
                            f"{listen} is already used by $.apis[{listening[addr]}]; each API "
                            "needs its own port",
                        )
                    listening.setdefault(addr, i)
            api_type = entry.get("type")
            if not isinstance(api_type, str):
                continue
            if api_type not in self.apis:
                self.problems.add(main, base + ("type",), f"unknown API type '{api_type}'; "
                                  + self._available("API", api_type, self.apis))
                continue
            cls = self.apis[api_type][1]
            if not self.problems.schema(main, _closed(API_KEYS, cls.settings_schema), entry,
                                        base):
                continue
            for key, message in cls.check(entry, self.specs):
                path = key if isinstance(key, tuple) else (key,)  # a key, or a path below
                self.problems.add(main, base + (path if path[0] in entry else ()), message)
            tls = entry.get("tls")
            if isinstance(tls, dict) and isinstance(tls.get("certificate"), str) \
                    and isinstance(tls.get("key"), str):
                try:  # as the API will load them when it starts
                    server_tls_context(self.folder, tls["certificate"], tls["key"])
                except TlsFileError as exc:
                    self.problems.add(main, base + ("tls", exc.which), str(exc))

    def _auth(self, main: JsonDocument) -> tuple[list[User], str | None, int]:
        auth = main.data.get("auth")
        auth = auth if isinstance(auth, dict) else {}
        anon = auth.get("loopback_anonymous_level", 0)
        anon = anon if isinstance(anon, int) and 0 <= anon <= 3 else 0
        users_file = auth.get("users_file")
        if not isinstance(users_file, str) or not users_file:
            return [], None, anon
        if Path(users_file).is_absolute() or ".." in Path(users_file).parts:
            self.problems.add(main, ("auth", "users_file"),
                              "expected a file name inside the settings folder")
            return [], None, anon
        if not self._exists(users_file):
            self.problems.add(
                main, ("auth", "users_file"),
                f"users file '{users_file}' not found in the settings folder; create it with "
                f"`tieline users add NAME --level N --settings {self.folder}`",
            )
            return [], users_file, anon
        doc = self._read(users_file)
        if doc is None or not self.problems.schema(doc, core_schema("users.schema.json"), doc.data):
            return [], users_file, anon
        users: list[User] = []
        seen: set[str] = set()
        for i, item in enumerate(doc.data["users"]):
            if item["name"] in seen:
                self.problems.add(doc, ("users", i, "name"), f"duplicate user '{item['name']}'")
            seen.add(item["name"])
            users.append(User(item["name"], Permission(item["level"]), item["token_sha256"]))
        return users, users_file, anon

    # -- salvos.json and labels.json ---------------------------------------------------
    def _optional(self, name: str, schema_name: str) -> JsonDocument | None:
        if not self._exists(name):
            return None
        doc = self._read(name)
        if doc is None or not self.problems.schema(doc, core_schema(schema_name), doc.data):
            return None
        return doc

    def _router_ref(self, doc: JsonDocument, path: tuple, rid: str,
                    specs: dict[str, RouterSpec]) -> RouterSpec | None:
        spec = specs.get(rid)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            self.problems.add(doc, path, f"no router '{rid}' in {MAIN_FILE} (routers: {known})")
        return spec

    def _salvos(self, specs: dict[str, RouterSpec]) -> list[Salvo]:
        doc = self._optional(SALVOS_FILE, "salvos.schema.json")
        if doc is None:
            return []
        out: list[Salvo] = []
        names: set[str] = set()
        for i, item in enumerate(doc.data["salvos"]):
            base = ("salvos", i)
            if item["name"] in names:
                self.problems.add(doc, base + ("name",), f"duplicate salvo name '{item['name']}'")
            names.add(item["name"])
            spec = self._router_ref(doc, base + ("router",), item["router"], specs)
            if spec is None:
                continue
            crosspoints: list[Crosspoint] = []
            for j, xp in enumerate(item["crosspoints"]):
                at = base + ("crosspoints", j)
                ok = True
                if xp["destination"] > spec.destinations:
                    self.problems.add(
                        doc, at + ("destination",),
                        f"router '{spec.id}' has no destination {xp['destination']} "
                        f"(1–{spec.destinations})",
                    )
                    ok = False
                if xp["source"] > spec.sources:
                    self.problems.add(
                        doc, at + ("source",),
                        f"router '{spec.id}' has no source {xp['source']} (1–{spec.sources})",
                    )
                    ok = False
                levels = xp.get("levels") or list(spec.levels)
                for k, level in enumerate(levels):
                    if level not in spec.levels:
                        self.problems.add(
                            doc, at + ("levels", k),
                            f"router '{spec.id}' has no level '{level}' "
                            f"(levels: {', '.join(spec.levels)})",
                        )
                        ok = False
                if ok:
                    crosspoints += [
                        Crosspoint(spec.levels.index(lv), xp["destination"] - 1, xp["source"] - 1)
                        for lv in levels
                    ]
            out.append(Salvo(item["name"], spec.id, tuple(crosspoints)))
        return out

    def _labels(self, specs: dict[str, RouterSpec]) -> dict[str, dict[PortKind, dict[int, str]]]:
        doc = self._optional(LABELS_FILE, "labels.schema.json")
        out: dict[str, dict[PortKind, dict[int, str]]] = {
            rid: {PortKind.SOURCE: {}, PortKind.DESTINATION: {}} for rid in specs
        }
        if doc is None:
            return out
        for rid, block in doc.data["routers"].items():
            spec = self._router_ref(doc, ("routers", rid), rid, specs)
            if spec is None:
                continue
            for key, kind, count in (("sources", PortKind.SOURCE, spec.sources),
                                     ("destinations", PortKind.DESTINATION, spec.destinations)):
                for number, text in block.get(key, {}).items():
                    if int(number) > count:
                        self.problems.add(
                            doc, ("routers", rid, key, number),
                            f"router '{rid}' has no {kind} {number} (1–{count})", key=True,
                        )
                        continue
                    out[rid][kind][int(number) - 1] = text
        return out


# -------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------


def change_failover_peers(folder: Path, peers: list[str]) -> None:
    """Write a new ``failover.peers`` into tieline.json (atomic; the rest unchanged)."""
    path = folder / MAIN_FILE
    data = load_json(path).data
    data["failover"]["peers"] = list(peers)

    def validate(value: object) -> None:
        for peer in peers:  # as the peer link will read them
            try:
                parse_hostport(peer, port_zero=False)
            except ValueError as exc:
                raise InvalidRequest(f"peer address {exc}", field="address") from None
        errors = list(schema_validator(core_schema("tieline.schema.json")).iter_errors(value))
        if errors:
            raise InvalidRequest(f"refusing to write an invalid {MAIN_FILE}: {errors[0].message}")

    _write_file(path, data, validate=validate)


#: a write that fails for the machine's reasons (a full disk) is logged once a minute per
#: file and reason, without a traceback: it is not a bug, and a client may retry in a loop
_not_saved = RateLimitedLog(log, interval_s=60.0)


def _write_file(path: Path, data: object, **options: Any) -> None:
    """:func:`write_json_atomic`, with an OSError (full disk, read-only filesystem, lost
    permissions) refused as :class:`NotSaved` naming the file and the reason: the file is
    unchanged, and so is everything the request would have changed."""
    try:
        write_json_atomic(path, data, **options)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = (f"{path.name} not written in {path.parent}: {reason}; nothing changed. "
                   "Free space on (or make writable) the settings folder's filesystem, "
                   "then send the request again")
        _not_saved.log((str(path), exc.errno), logging.ERROR, "%s", message)
        raise NotSaved(message) from None


class SettingsStore:
    """Writes settings files atomically, after validating them, when writes are allowed.

    :param folder: the settings folder.
    :param guard: raises :class:`tieline.errors.ReadOnly` (or NodeStandby) when settings may
        not be written now (a backup is active, the node is standby).
    :param settings: the loaded settings, the starting point of every change.
    """

    def __init__(self, settings: Settings, guard: Callable[[], None],
                 written: Callable[[str], None] = lambda name: None) -> None:
        self.folder = settings.folder
        self.guard = guard
        self.written = written
        self._labels = {
            rid: {kind: dict(labels) for kind, labels in kinds.items()}
            for rid, kinds in settings.labels.items()
        }

    def _write(self, name: str, schema_name: str, data: dict[str, Any],
               new_mode: int | None = None) -> None:
        def validate(value: object) -> None:
            errors = list(schema_validator(core_schema(schema_name)).iter_errors(value))
            if errors:
                detail = "; ".join(
                    f"{json_path(tuple(e.absolute_path))}: {_message(e)}" for e in errors[:5]
                )
                raise InvalidRequest(f"refusing to write an invalid {name}: {detail}")

        _write_file(self.folder / name, data, validate=validate, new_mode=new_mode)
        self.written(name)

    def save_label(self, router: str, kind: PortKind, index: int, text: str) -> None:
        """Store one port label in labels.json (the change is written before it applies)."""
        self.guard()
        labels = copy.deepcopy(self._labels)
        labels.setdefault(router, {PortKind.SOURCE: {}, PortKind.DESTINATION: {}})
        if text:
            labels[router][kind][index] = text
        else:
            labels[router][kind].pop(index, None)
        doc = {"routers": {
            rid: {
                "sources": {str(i + 1): t for i, t in sorted(kinds[PortKind.SOURCE].items())},
                "destinations": {
                    str(i + 1): t for i, t in sorted(kinds[PortKind.DESTINATION].items())
                },
            }
            for rid, kinds in sorted(labels.items())
        }}
        self._write(LABELS_FILE, "labels.schema.json", doc)
        self._labels = labels

    def save_users(self, users_file: str, users: Iterable[User]) -> None:
        """Replace the users file."""
        self.guard()
        self._write(users_file, "users.schema.json", {"users": [u.to_dict() for u in users]},
                    new_mode=0o600)
