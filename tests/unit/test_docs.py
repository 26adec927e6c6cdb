"""The documentation in docs/ stays true to the code (STYLE.md points 4 and 7).

- every key of every settings schema, and of every settings block a bundled plugin
  provides, is documented in docs/settings.md as a table row, with its default, its
  allowed values and its bounds; the example files in the docs pass validation;
- docs/api.md is exactly what docs/gen_api_reference.py writes from schemas/api/, names
  every message type; its examples are what a real node answers, and the permission level
  it gives each request is the one the server enforces;
- every hookspec is documented like pytest's;
- every ``tieline`` command is mentioned in docs/getting-started.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import inspect
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import ClientConnection, connect

from tieline import hookspecs
from tieline.settings import catalog
from tieline.cli import main as cli_main
from tieline.node import Node
from tieline.plugin_manager import Plugins
from tieline.settings.loader import load_settings
from tieline.kit.testing import running_node

from ..conftest import self_signed_pem

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATOR = DOCS / "gen_api_reference.py"
SETTINGS_FILES = ("tieline.schema.json", "users.schema.json", "salvos.schema.json",
                  "labels.schema.json")


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tieline_docs_gen_api_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -------------------------------------------------------------------------------------------
# Settings keys
# -------------------------------------------------------------------------------------------


def schema_keys(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every key of ``schema`` in dotted form, with its schema.

    Objects add ``.key``, array items ``[]``, and values of free-form objects
    (``additionalProperties``/``patternProperties`` with keys of their own) ``.*``;
    local ``$ref``s are followed. ``{"routers": {"items": {"properties": {"id": …}}}}``
    gives ``routers`` and ``routers[].id``.
    """
    found: dict[str, dict[str, Any]] = {}

    def resolve(ref: str) -> dict[str, Any]:
        target: Any = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return target

    def walk(node: Any, path: str, refs: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and ref not in refs:
            walk(resolve(ref), path, refs | {ref})
        for key, sub in node.get("properties", {}).items():
            here = f"{path}.{key}" if path else key
            merged = dict(sub) if isinstance(sub, dict) else {}
            if isinstance(merged.get("$ref"), str) and merged["$ref"].startswith("#/"):
                merged = {**resolve(merged["$ref"]), **merged}
            found.setdefault(here, merged)
            walk(sub, here, refs)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, f"{path}[]", refs)
        extra = [node.get("additionalProperties"), *node.get("patternProperties", {}).values()]
        for sub in extra:
            if isinstance(sub, dict):
                walk(sub, f"{path}.*" if path else "*", refs)
        for word in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(word, []):
                walk(sub, path, refs)
        for word in ("then", "else"):
            walk(node.get(word), path, refs)

    walk(schema, prefix, frozenset())
    return found


def test_schema_keys_walks_refs_items_and_free_form_objects() -> None:
    schema = {
        "properties": {
            "routers": {"type": "array", "items": {"$ref": "#/$defs/router"}},
            "labels": {"additionalProperties": {"properties": {"sources": {}}}},
        },
        "$defs": {"router": {"properties": {"id": {}, "transport": {
            "properties": {"type": {}}}}}},
    }
    assert sorted(schema_keys(schema)) == [
        "labels", "labels.*.sources", "routers", "routers[].id", "routers[].transport",
        "routers[].transport.type",
    ]
    assert sorted(schema_keys({"properties": {"host": {}}}, "routers[].transport")) == [
        "routers[].transport.host",
    ]


def _bundled_blocks() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(what, the heading of its section in settings.md, dotted prefix, schema) of every
    settings block the tieline distribution ships."""
    plugins = Plugins()

    def ours(plugin: str) -> bool:
        return plugins.infos[plugin].distribution == "tieline"

    blocks = []
    for name, (plugin, cls) in plugins.drivers().items():
        if ours(plugin):
            blocks.append((f"driver '{name}'", f"(`routers[]`, driver `{name}`)", "routers[]",
                           cls.settings_schema))
    for name, (plugin, cls) in plugins.transports().items():
        if ours(plugin):
            blocks.append((f"transport '{name}'", f"(`routers[].transport`, type `{name}`)",
                           "routers[].transport", cls.settings_schema))
    for name, (plugin, cls) in plugins.client_apis().items():
        if ours(plugin):
            blocks.append((f"client API '{name}'", f"(`apis[]`, type `{name}`)", "apis[]",
                           cls.settings_schema))
    for name, (plugin, cls) in plugins.strategies().items():
        if ours(plugin):
            blocks.append((f"failover strategy '{name}'", f"(`failover`, strategy `{name}`)",
                           "failover", getattr(cls, "settings_schema", {})))
    for name, (plugin, cls) in plugins.failover_actions().items():
        if ours(plugin):
            blocks.append((f"failover action '{name}'", f"(`failover.{name}`)",
                           f"failover.{name}", cls.settings_schema))
    for key, (plugin, schema) in plugins.settings_schemas().items():
        if ours(plugin):
            blocks.append((f"settings block '{key}'", f"(`{key}`)", "",
                           {"properties": {key: schema}}))
    return blocks


def _documented_keys() -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """(where, section heading or None for the whole file, dotted key, schema) of every key
    settings.md must document; a plugin's keys are documented in the plugin's section."""
    out: list[tuple[str, str | None, str, dict[str, Any]]] = []
    for name in SETTINGS_FILES:
        for key, sub in schema_keys(catalog.load("settings", name)).items():
            out.append((f"schemas/settings/{name}", None, key, sub))
    for what, heading, prefix, schema in _bundled_blocks():
        for key, sub in schema_keys(schema, prefix).items():
            out.append((what, heading, key, sub))
    return out


def test_bundled_plugin_blocks_are_found() -> None:
    found = {what for what, _, _, _ in _bundled_blocks()}
    assert {"driver 'simulator'", "transport 'tcp'", "client API 'websocket'",
            "failover strategy 'peer_sync'", "failover action 'vip'"} <= found


@functools.cache
def _settings_rows(heading: str | None) -> dict[str, str]:
    """Table rows of settings.md by the dotted key in their first cell: in the ``### ``
    section whose heading ends with ``heading``, or anywhere (the first row) for None."""
    text = _read("settings.md")
    if heading is not None:
        sections = [part for part in text.split("\n### ")[1:]
                    if part.split("\n", 1)[0].endswith(heading)]
        if len(sections) != 1:
            return {}
        text = sections[0].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows.setdefault(match.group(1), line)
    return rows


DOCUMENTED_KEYS = _documented_keys()


@pytest.mark.parametrize("where,heading,key,schema", DOCUMENTED_KEYS,
                         ids=[f"{where}:{key}" for where, _, key, _ in DOCUMENTED_KEYS])
def test_settings_key_is_documented(where: str, heading: str | None, key: str,
                                    schema: dict[str, Any]) -> None:
    rows = _settings_rows(heading)
    place = "docs/settings.md" + (f", section '### … {heading}'" if heading else "")
    assert key in rows, (
        f"{where}: key `{key}` is not documented in {place}; add a table row whose "
        f"first cell is `{key}` (type, default, allowed values, meaning)"
    )
    row = rows[key]
    expected = []
    if "default" in schema:
        expected.append(("default", json.dumps(schema["default"])))
    for value in schema.get("enum", []):
        expected.append(("allowed value", json.dumps(value)))
    for bound in ("minimum", "maximum"):
        if bound in schema:
            expected.append((bound, str(schema[bound])))
    missing = [f"{what} {text}" for what, text in expected if text not in row]
    assert not missing, (
        f"{place}, row of `{key}` does not give the schema's "
        f"{', '.join(missing)} ({where}):\n{row}"
    )


def _json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


@pytest.mark.parametrize("doc", ["settings.md", "getting-started.md"])
def test_settings_examples_are_valid(doc: str, tmp_path: Path) -> None:
    """The example files of a page, put together in one folder, pass ``tieline validate``."""
    files: dict[str, Any] = {}
    routers, apis = [], []
    for block in _json_blocks(_read(doc)):
        if "node" in block:
            files.setdefault("tieline.json", block)
        elif "users" in block:
            files.setdefault("users.json", block)
        elif "salvos" in block:
            files.setdefault("salvos.json", block)
        elif isinstance(block.get("routers"), dict):
            files.setdefault("labels.json", block)
        elif "strategy" in block:
            continue  # a failover block: its key file is not in the example folder
        elif "driver" in block:
            routers.append(block)  # one more router block
        elif "listen" in block:
            apis.append(block)  # one more API entry
    assert "tieline.json" in files, f"docs/{doc} has no example tieline.json"
    main = files["tieline.json"]
    main["routers"] += routers
    main["apis"] = main.get("apis", []) + apis
    files.setdefault("users.json", {"users": []})
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    for api in main["apis"]:
        if "tls" in api:  # validate loads them: a certificate and its key
            pem = dict(zip(("certificate", "key"), self_signed_pem()))
            for which, path in api["tls"].items():
                (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / path).write_bytes(pem[which])
    settings = load_settings(tmp_path, Plugins())
    assert settings.routers and settings.apis


# -------------------------------------------------------------------------------------------
# The API reference
# -------------------------------------------------------------------------------------------


def test_api_reference_is_generated_from_the_current_schemas() -> None:
    assert _read("api.md") == _generator().render(), (
        "docs/api.md is out of date with schemas/api/ or docs/gen_api_reference.py; "
        "run `python docs/gen_api_reference.py` and commit docs/api.md"
    )


def _sections(text: str) -> dict[str, str]:
    """Level-2 sections of a Markdown text by title."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def test_api_reference_names_every_message_type() -> None:
    sections = _sections(_read("api.md"))
    for title, types in (("Requests", catalog.api_request_schemas()),
                         ("Server messages", catalog.api_server_schemas())):
        assert title in sections, f"docs/api.md has no '## {title}' section"
        missing = [t for t in sorted(types) if f"### `{t}`" not in sections[title]]
        assert not missing, f"docs/api.md, '{title}' has no section for: {', '.join(missing)}"


def test_api_reference_gives_each_request_its_permission_level() -> None:
    requests = _sections(_read("api.md"))["Requests"]
    for name, schema in catalog.api_request_schemas().items():
        level = schema["x-permission-level"]
        section = requests.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert f"Permission level: {level} (" in section or (
            level == 0 and "Permission level: any connection" in section
        ), f"docs/api.md does not give `{name}` permission level {level}"


def _validator(kind: str, name: str) -> Draft202012Validator:
    schemas = catalog.api_request_schemas() if kind == "request" else catalog.api_server_schemas()
    return Draft202012Validator(schemas[name])


def test_api_examples_match_their_schemas() -> None:
    gen = _generator()
    messages: list[tuple[str, str, dict[str, Any]]] = [
        ("server", "hello", gen.SERVER_HELLO_EXAMPLE),
        ("server", "heartbeat", gen.HEARTBEAT_EXAMPLE),
    ]
    for request, response in gen.EXAMPLE_FLOW:
        if response["ok"] or response["error"]["code"] != "invalid":  # invalid on purpose
            messages.append(("request", request["type"], request))
        messages.append(("server", "response", response))
    for event in gen.EXAMPLE_EVENTS + gen.OTHER_EVENT_EXAMPLES:
        messages.append(("server", "event", event))
    for kind, name, message in messages:
        errors = list(_validator(kind, name).iter_errors(message))
        assert not errors, f"example {kind} {name} {message} fails its schema: {errors[0].message}"


class _Conversation:
    """One raw WebSocket connection: requests answered in order, events kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        """The next message that is not a heartbeat; events are also kept in ``events``."""
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "event":
                self.events.append(message)
            if message["type"] != "heartbeat":
                return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its response."""
        await self.ws.send(json.dumps(message))
        while True:
            answer = await self.receive()
            if answer["type"] != "event":
                return answer

    async def wait_for_events(self, count: int, timeout: float = 2.0) -> None:
        """Receive until ``count`` events arrived, or ``timeout`` seconds passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.events) < count:
                    await self.receive()


@contextlib.asynccontextmanager
async def _conversation(node: Node) -> AsyncIterator[tuple[_Conversation, dict[str, Any]]]:
    async with connect(node.apis[0].describe()) as ws:
        talk = _Conversation(ws)
        hello = await talk.receive()
        yield talk, hello


EXTRA_USERS = {1: ("viewer", "viewer-token-for-docs-tests"),
               2: ("operator", "operator-token-for-docs-tests")}


def _write_example_settings(folder: Path, example: dict[str, Any]) -> None:
    folder.mkdir()
    files = json.loads(json.dumps(example))
    for level, (name, token) in EXTRA_USERS.items():
        files["users.json"]["users"].append({
            "name": name, "level": level,
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        })
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2), encoding="utf-8")


async def test_api_examples_are_what_a_real_node_answers(tmp_path: Path) -> None:
    gen = _generator()
    folder = tmp_path / "settings"
    _write_example_settings(folder, gen.EXAMPLE_SETTINGS)
    async with asyncio.timeout(30), running_node(folder) as node:
        async with _conversation(node) as (talk, hello):
            assert hello["server"].startswith("tieline/")
            assert {**hello, "server": gen.SERVER_HELLO_EXAMPLE["server"]} == \
                gen.SERVER_HELLO_EXAMPLE, "the server's hello differs from docs/api.md's"
            for request, expected in gen.EXAMPLE_FLOW:
                answer = await talk.request(request)
                assert answer == expected, (
                    f"docs/gen_api_reference.py EXAMPLE_FLOW: {json.dumps(request)} is "
                    f"answered with\n{json.dumps(answer)}\nnot\n{json.dumps(expected)}"
                )
            # the flow ends unsubscribed: wait for the events already published
            await talk.wait_for_events(len(gen.EXAMPLE_EVENTS))
            assert talk.events == gen.EXAMPLE_EVENTS, (
                "docs/gen_api_reference.py EXAMPLE_EVENTS differ from the events received:\n"
                + "\n".join(json.dumps(e) for e in talk.events)
            )


async def test_documented_permission_levels_are_enforced(tmp_path: Path) -> None:
    """Each request is refused one level below its x-permission-level, and not at it."""
    gen = _generator()
    folder = tmp_path / "settings"
    _write_example_settings(folder, gen.EXAMPLE_SETTINGS)
    tokens = {level: token for level, (_, token) in EXTRA_USERS.items()}
    tokens[3] = gen.EXAMPLE_TOKEN
    examples = {}
    for request, response in gen.EXAMPLE_FLOW:
        if response["ok"]:
            examples.setdefault(request["type"], request)
    for request, _response in [*gen.EXAMPLE_FLOW, *gen.CLUSTER_EXAMPLES]:
        examples.setdefault(request["type"], request)  # refused here for another reason

    async def answer(node: Node, level: int, request: dict[str, Any]) -> dict[str, Any]:
        async with _conversation(node) as (talk, _):
            if level:
                hello = await talk.request({"type": "hello", "id": "h", "protocol": 1,
                                            "token": tokens[level]})
                assert hello["ok"], hello
            return await talk.request(request)

    async with asyncio.timeout(30), running_node(folder) as node:
        for name, schema in sorted(catalog.api_request_schemas().items()):
            level = schema["x-permission-level"]
            if name == "hello":
                assert level == 0
                continue
            request = examples[name]
            below = await answer(node, level - 1, request)
            assert not below["ok"] and below["error"]["code"] in ("forbidden",
                                                                   "unauthenticated"), (
                f"`{name}` is documented as needing level {level}, but a level {level - 1} "
                f"client got {below}"
            )
            at = await answer(node, level, request)
            assert at["ok"] or at["error"]["code"] not in ("forbidden", "unauthenticated"), (
                f"`{name}` is documented as needing level {level}, but a level {level} "
                f"client got {at}"
            )


# -------------------------------------------------------------------------------------------
# Hookspecs
# -------------------------------------------------------------------------------------------


def hookspec_problems(function: Any, firstresult: bool = False) -> list[str]:
    """What a hookspec's docstring lacks (STYLE.md point 4, pytest's hookspec.py)."""
    doc = inspect.getdoc(function)
    if not doc:
        return ["no docstring"]
    problems = []
    lines = doc.splitlines()
    if not lines[0].strip() or (len(lines) > 1 and lines[1].strip()):
        problems.append("no one-line summary (a first line, then a blank line)")
    params = list(inspect.signature(function).parameters)
    for name in params:
        if f":param {name}:" not in doc:
            problems.append(f"argument '{name}' has no ':param {name}:'")
    for name in re.findall(r":param (\w+):", doc):
        if name not in params:
            problems.append(f"':param {name}:' documents no argument")
    if ":returns:" not in doc:
        problems.append("no ':returns:'")
    if firstresult and "Stops at first non-None result" not in doc:
        problems.append("firstresult hook does not say 'Stops at first non-None result'")
    if "called" not in doc.lower():
        problems.append("does not say when it is called")
    return problems


def _hookspecs() -> list[tuple[str, Any, dict[str, Any]]]:
    return [(name, function, function.tieline_spec)
            for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(function, "tieline_spec")]


def test_hookspecs_are_found() -> None:
    names = {name for name, _, _ in _hookspecs()}
    assert {"tieline_router_drivers", "tieline_event", "tieline_route_requested"} <= names


@pytest.mark.parametrize("name,function,opts", _hookspecs(),
                         ids=[name for name, _, _ in _hookspecs()])
def test_hookspec_is_documented(name: str, function: Any, opts: dict[str, Any]) -> None:
    problems = hookspec_problems(function, bool(opts.get("firstresult")))
    assert not problems, f"core/hookspecs.py {name}: " + "; ".join(problems)


def test_hookspec_check_catches_what_is_missing() -> None:
    def tieline_example(node: Any, event: Any) -> None:
        """Observe something.
        More text right after the summary.

        :param node: the node.
        :param other: not an argument.
        """

    problems = hookspec_problems(tieline_example, firstresult=True)
    assert problems == [
        "no one-line summary (a first line, then a blank line)",
        "argument 'event' has no ':param event:'",
        "':param other:' documents no argument",
        "no ':returns:'",
        "firstresult hook does not say 'Stops at first non-None result'",
        "does not say when it is called",
    ]

    def undocumented() -> None:
        pass

    assert hookspec_problems(undocumented) == ["no docstring"]


# -------------------------------------------------------------------------------------------
# The command line
# -------------------------------------------------------------------------------------------


def cli_commands(group: click.Group, prefix: str = "tieline") -> Iterator[str]:
    """``tieline run``, ``tieline users add`` …: every command, subgroups included."""
    for name, command in sorted(group.commands.items()):
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from cli_commands(command, f"{prefix} {name}")


def test_every_cli_command_is_in_getting_started() -> None:
    commands = list(cli_commands(cli_main))
    assert "tieline users add" in commands
    text = _read("getting-started.md")
    missing = [c for c in commands if c not in text]
    assert not missing, (
        "docs/getting-started.md does not mention: " + ", ".join(missing)
    )


def test_every_hook_is_in_the_plugin_guide() -> None:
    """docs/plugins.md has a ``### `name` `` subsection for every hookspec, naming its
    arguments."""
    text = _read("plugins.md")
    specs = _hookspecs()
    assert specs, "no hookspecs found in tieline.hookspecs"
    problems = []
    for name, function, _opts in specs:
        heading = f"### `{name}`"
        if heading not in text:
            problems.append(f"no '{heading}' subsection")
            continue
        section = text.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        signature = next((line for line in section.splitlines()
                          if line.startswith(f"def {name}(")), None)
        if signature is None:
            problems.append(f"'{heading}' does not give the signature 'def {name}(…)'")
            continue
        for param in inspect.signature(function).parameters:
            if f"{param}:" not in signature and f"{param})" not in signature:
                problems.append(f"'{heading}': the signature lacks the argument '{param}'")
        if "Called" not in section:
            problems.append(f"'{heading}' does not say when it is called ('Called …')")
        if not re.search(r"\bReturns?\b|\breturn\b", section):
            problems.append(f"'{heading}' does not say what to return")
        examples = [block for block in re.findall(r"```python\n(.*?)```", section, re.S)
                    if "@hookimpl" in block and f"def {name}(" in block]
        if not examples:
            problems.append(f"'{heading}' has no example (a python block with @hookimpl "
                            f"and def {name}(…))")
    assert not problems, "docs/plugins.md: " + "; ".join(problems)


async def test_the_plugin_guides_testing_example_runs(tmp_path: Path) -> None:
    """The example under "Testing your plugin" in docs/plugins.md is a test that passes."""
    section = _read("plugins.md").split("## Testing your plugin", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/plugins.md (Testing your plugin)", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert len(tests) == 1
    await tests[0](tmp_path)
