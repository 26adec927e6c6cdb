"""The plugin manager: entry points, failure isolation, disabling, check_pending; hooks are
called through pluggy, so hook wrappers and pluggy's tracing see them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tieline import Crosspoint, Permission, Principal, RouteRequest
from tieline.cli import main
from tieline.errors import SettingsError
from tieline.kit.testing import running_node
from tieline.plugin_manager import Plugins
from tieline.settings.loader import load_settings


def make_dist(root: Path, dist: str, module: str, code: str, entry: str | None = None) -> None:
    """A real installed distribution on sys.path: a module and a .dist-info with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text(f"[tieline]\n{entry or module} = {module}\n")


@pytest.fixture
def extra_dists(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def add(dist: str, module: str, code: str, entry: str | None = None) -> None:
        make_dist(root, dist, module, code, entry)

    add.root = root  # type: ignore[attr-defined]  (for PYTHONPATH)
    return add


SIMPLE_SETTINGS = {
    "node": {"name": "n"},
    "routers": [{"id": "r", "driver": "simulator", "levels": ["v"], "sources": 4,
                 "destinations": 4}],
}


def test_bundled_and_third_party_plugins_load():
    plugins = Plugins()
    infos = plugins.infos
    assert infos["simulator"].distribution == "tieline"
    assert infos["websocket_api"].hooks == ["tieline_client_apis"]
    third = infos["thirdparty_example"]
    assert (third.distribution, third.version, third.status) == (
        "tieline-thirdparty-example", "1.2.3", "loaded")
    assert "tieline_route_requested" in third.hooks
    assert set(plugins.drivers()) >= {"simulator", "echo_matrix"}
    assert plugins.drivers()["echo_matrix"][0] == "thirdparty_example"


def test_plugins_command_json():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert listed["thirdparty_example"]["distribution"] == "tieline-thirdparty-example"
    assert listed["thirdparty_example"]["version"] == "1.2.3"
    assert "tieline_router_drivers" in listed["simulator"]["hooks"]
    text = CliRunner().invoke(main, ["plugins"]).output
    assert "thirdparty_example" in text and "tieline-thirdparty-example 1.2.3" in text


def test_plugin_failing_at_import_is_reported_and_the_rest_works(extra_dists, tmp_path, caplog):
    extra_dists("broken-plugin", "broken_plugin", "raise ImportError('needs libfoo')\n")
    with caplog.at_level(logging.ERROR):
        plugins = Plugins()
    assert plugins.infos["broken_plugin"].status == "failed"
    assert "ImportError: needs libfoo" in plugins.infos["broken_plugin"].error
    assert "plugin 'broken_plugin'" in caplog.text
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "tieline.json").write_text(json.dumps(SIMPLE_SETTINGS))
    assert load_settings(folder, plugins).routers[0].spec.id == "r"  # settings do not need it
    bad = dict(SIMPLE_SETTINGS, routers=[dict(SIMPLE_SETTINGS["routers"][0], driver="foo")])
    (folder / "tieline.json").write_text(json.dumps(bad))
    with pytest.raises(SettingsError) as info:
        load_settings(folder, plugins)
    message = str(info.value.problems[0])
    assert "unknown driver 'foo'" in message
    assert "'broken_plugin' (failed to import broken_plugin: ImportError: needs libfoo)" in message


def test_misspelt_hook_fails_check_pending_by_name(extra_dists):
    extra_dists("typo-plugin", "typo_plugin", """
        import tieline

        @tieline.hookimpl
        def tieline_router_driver():
            return []
    """)
    plugins = Plugins()
    info = plugins.infos["typo_plugin"]
    assert info.status == "failed"
    assert "tieline_router_driver" in info.error and "misspelt" in info.error
    assert plugins.pm.get_plugin("typo_plugin") is None
    assert "simulator" in plugins.drivers()


def test_hook_that_raises_is_reported_and_skipped(extra_dists, caplog):
    extra_dists("raising-plugin", "raising_plugin", """
        import tieline

        @tieline.hookimpl
        def tieline_router_drivers():
            raise RuntimeError("boom")
    """)
    plugins = Plugins()
    with caplog.at_level(logging.ERROR):
        drivers = plugins.drivers()
    assert "simulator" in drivers
    assert "plugin 'raising_plugin': hook tieline_router_drivers raised RuntimeError: boom" in caplog.text


def test_duplicate_driver_name_is_refused(extra_dists):
    extra_dists("dup-plugin", "dup_plugin", """
        import tieline
        from tieline.plugins.simulator.driver import SimulatorDriver

        class Impostor(SimulatorDriver):
            pass

        @tieline.hookimpl
        def tieline_router_drivers():
            return [Impostor]
    """)
    plugins = Plugins()
    drivers = plugins.drivers()
    assert drivers["simulator"][0] == "simulator"
    assert "already provided by plugin 'simulator'" in plugins.infos["dup_plugin"].error


def test_disabled_plugin_is_not_loaded(extra_dists):
    extra_dists("loud-plugin", "loud_plugin", "raise SystemExit('must not be imported')\n")
    plugins = Plugins(disabled=["loud_plugin", "thirdparty_example"])
    assert plugins.infos["loud_plugin"].status == "disabled"
    assert plugins.infos["thirdparty_example"].status == "disabled"
    assert "echo_matrix" not in plugins.drivers()


def test_policy_plugin_that_raises_refuses_with_its_name(extra_dists):
    extra_dists("bad-policy", "bad_policy", """
        import tieline

        @tieline.hookimpl
        def tieline_route_requested(request):
            raise ValueError("policy database unreachable")
    """)
    plugins = Plugins()
    reason = plugins.route_requested(object())
    assert reason == ("policy plugin 'bad_policy' failed: ValueError: policy database "
                      "unreachable")


def test_a_third_party_plugin_never_hides_a_bundled_one_of_the_same_name(extra_dists, caplog):
    """A distribution whose entry point takes a bundled plugin's name (prepended on
    sys.path, so found first) is listed as failed, and the bundled plugin still loads."""
    extra_dists("tieline-videohub", "my_videohub", """
        from tieline import hookimpl

        @hookimpl
        def tieline_router_drivers():
            return []
    """, entry="videohub")
    with caplog.at_level(logging.ERROR):
        plugins = Plugins()
    bundled = plugins.infos["videohub"]
    assert (bundled.distribution, bundled.status) == ("tieline", "loaded")
    assert "videohub" in plugins.drivers() and "videohub" in plugins.client_apis()
    clash = plugins.infos["videohub (tieline-videohub)"]
    assert clash.status == "failed"
    assert clash.error == (
        "not loaded: the plugin name 'videohub' is already used by the distribution "
        "'tieline'; rename this plugin's entry point in the group 'tieline' (its "
        "pyproject.toml) and reinstall it")
    assert "plugin 'videohub (tieline-videohub)'" in caplog.text


def test_two_third_party_plugins_of_one_name_the_first_loads(extra_dists):
    extra_dists("tieline-acme-one", "acme_one", "", entry="acme")
    extra_dists("tieline-acme-two", "acme_two", "", entry="acme")
    plugins = Plugins()
    first, second = plugins.infos["acme"], [
        info for key, info in plugins.infos.items() if key.startswith("acme (")]
    assert first.status == "loaded"
    (other,) = second
    assert other.status == "failed" and {first.distribution, other.distribution} == {
        "tieline-acme-one", "tieline-acme-two"}
    assert f"already used by the distribution '{first.distribution}'" in other.error


# -------------------------------------------------------------------------------------------
# Hooks are called through pluggy: wrappers, tracing, and failure isolation by the guards
# -------------------------------------------------------------------------------------------

REQUEST = RouteRequest(Principal("alice", Permission.ROUTE), "r", (Crosspoint(0, 1, 2),))


def test_a_hook_wrapper_sees_every_call_of_tielines_hooks(extra_dists):
    extra_dists("spy-plugin", "spy_plugin", """
        import tieline

        seen = []

        @tieline.hookimpl(wrapper=True)
        def tieline_router_drivers():
            drivers = yield
            seen.append(("tieline_router_drivers", {c.name for found in drivers for c in found}))
            return drivers

        @tieline.hookimpl(wrapper=True)
        def tieline_route_requested(request):
            reason = yield
            seen.append(("tieline_route_requested", request, reason))
            return reason
    """)
    plugins = Plugins()
    spy = plugins.pm.get_plugin("spy_plugin")
    assert plugins.infos["spy_plugin"].hooks == ["tieline_route_requested",
                                                 "tieline_router_drivers"]
    drivers = plugins.drivers()
    assert drivers["simulator"][0] == "simulator"
    ((hook, names),) = spy.seen
    assert hook == "tieline_router_drivers" and {"simulator", "echo_matrix"} <= names
    assert plugins.route_requested(REQUEST) is None
    assert spy.seen[1] == ("tieline_route_requested", REQUEST, None)


def test_a_hook_wrapper_can_change_the_outcome(extra_dists):
    """What a wrapper returns is the hook's result; a driver it adds is its plugin's."""
    extra_dists("freeze-plugin", "freeze_plugin", """
        import tieline
        from tieline.plugins.simulator.driver import SimulatorDriver

        class Frozen(SimulatorDriver):
            name = "frozen_simulator"

        @tieline.hookimpl(wrapper=True)
        def tieline_router_drivers():
            return [*(yield), [Frozen]]

        @tieline.hookimpl(wrapper=True)
        def tieline_route_requested(request):
            return (yield) or "maintenance: routes are frozen until 06:00"
    """)
    plugins = Plugins()
    drivers = plugins.drivers()
    assert drivers["frozen_simulator"][0] == "freeze_plugin"
    assert drivers["simulator"][0] == "simulator"
    assert drivers["echo_matrix"][0] == "thirdparty_example"
    assert plugins.route_requested(REQUEST) == "maintenance: routes are frozen until 06:00"


def test_an_old_style_hookwrapper_works_too(extra_dists, caplog):
    """pluggy's older ``hookwrapper=True`` (sent a pluggy.Result) is guarded alike."""
    extra_dists("old-wrapper", "old_wrapper", """
        import tieline
        from tieline.plugins.simulator.driver import SimulatorDriver

        class Legacy(SimulatorDriver):
            name = "legacy_simulator"

        @tieline.hookimpl(hookwrapper=True)
        def tieline_router_drivers():
            outcome = yield
            outcome.force_result([*outcome.get_result(), [Legacy]])

        @tieline.hookimpl(hookwrapper=True)
        def tieline_emulators():
            yield
            raise RuntimeError("legacy teardown")
    """)
    plugins = Plugins()
    drivers = plugins.drivers()
    assert drivers["legacy_simulator"][0] == "old_wrapper"
    assert drivers["simulator"][0] == "simulator"
    with caplog.at_level(logging.ERROR):
        assert "simulator" in plugins.emulators()
    assert "plugin 'old_wrapper': hook tieline_emulators raised RuntimeError: legacy" in (
        caplog.text)


def test_pluggy_tracing_records_the_hook_calls():
    plugins = Plugins()
    lines: list[str] = []
    plugins.pm.trace.root.setwriter(lines.append)
    undo = plugins.pm.enable_tracing()
    try:
        plugins.drivers()
        plugins.route_requested(REQUEST)
    finally:
        undo()
    trace = "".join(lines)
    assert "tieline_router_drivers [hook]" in trace
    assert "finish tieline_router_drivers -->" in trace
    assert "tieline_route_requested [hook]" in trace and "request: RouteRequest(" in trace


async def test_hookcall_monitoring_sees_a_running_nodes_hooks(settings_dir):
    calls: list[tuple[str, list[str]]] = []

    def before(hook_name, hook_impls, kwargs):
        calls.append((hook_name, [impl.plugin_name for impl in hook_impls]))

    def after(outcome, hook_name, hook_impls, kwargs):
        pass

    folder = settings_dir({"tieline.json": SIMPLE_SETTINGS})
    async with running_node(
        folder, prepare=lambda node: node.plugins.pm.add_hookcall_monitoring(before, after),
    ) as node:
        await node.routing.route(Principal("alice", Permission.ROUTE), "r", 1, 2)
        async with asyncio.timeout(5):
            while "tieline_event" not in {name for name, _ in calls}:
                await asyncio.sleep(0.01)
    hooks = [name for name, _ in calls]
    assert (hooks.index("tieline_node_started") < hooks.index("tieline_route_requested")
            < hooks.index("tieline_node_stopping"))
    assert dict(calls)["tieline_route_requested"] == ["thirdparty_example"]


def test_a_raising_plugin_is_isolated_and_the_others_results_remain(extra_dists, caplog):
    """The wrapper sees the call without the failing plugin's part; the failure is logged
    once, by plugin, with its traceback."""
    extra_dists("raising-drivers", "raising_drivers", """
        import tieline

        @tieline.hookimpl
        def tieline_router_drivers():
            raise RuntimeError("driver registry corrupt")
    """)
    extra_dists("watching-plugin", "watching_plugin", """
        import tieline

        seen = []

        @tieline.hookimpl(wrapper=True)
        def tieline_router_drivers():
            drivers = yield
            seen.append({c.name for found in drivers for c in found})
            return drivers
    """)
    plugins = Plugins()
    with caplog.at_level(logging.ERROR):
        drivers = plugins.drivers()
    assert {"simulator", "echo_matrix"} <= set(drivers)
    assert plugins.pm.get_plugin("watching_plugin").seen == [set(drivers)]
    (record,) = [r for r in caplog.records if "raising_drivers" in r.getMessage()]
    assert record.getMessage() == ("plugin 'raising_drivers': hook tieline_router_drivers "
                                   "raised RuntimeError: driver registry corrupt")
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert plugins.infos["raising_drivers"].status == "loaded"  # as before: logged, not failed


def test_validate_and_plugins_report_a_raising_hook(extra_dists, settings_dir):
    """The commands, as processes: ``tieline validate`` accepts settings that do not need
    the plugin and prints the failure on stderr once; ``tieline plugins`` lists the plugin
    as loaded, with its hooks."""
    extra_dists("raising-schemas", "raising_schemas", """
        import tieline

        @tieline.hookimpl
        def tieline_settings_schemas():
            raise RuntimeError("schema file missing")
    """)
    env = dict(os.environ, PYTHONPATH=str(extra_dists.root))
    tieline = [str(Path(sys.executable).with_name("tieline"))]
    folder = settings_dir({"tieline.json": SIMPLE_SETTINGS})
    validate = subprocess.run([*tieline, "validate", "--settings", str(folder)],
                              capture_output=True, text=True, env=env, timeout=60)
    assert validate.returncode == 0, validate.stderr
    assert "valid (1 router(s)" in validate.stdout
    assert validate.stderr.count(
        "ERROR plugin 'raising_schemas': hook tieline_settings_schemas raised RuntimeError: "
        "schema file missing") == 1
    listed = subprocess.run([*tieline, "plugins", "--json"], capture_output=True, text=True,
                            env=env, timeout=60)
    (plugin,) = [p for p in json.loads(listed.stdout)["plugins"]
                 if p["name"] == "raising_schemas"]
    assert (plugin["status"], plugin["hooks"], plugin["error"]) == (
        "loaded", ["tieline_settings_schemas"], None)


def test_a_raising_hook_wrapper_steps_aside(extra_dists, caplog):
    extra_dists("bad-wrappers", "bad_wrappers", """
        import tieline

        @tieline.hookimpl(wrapper=True)
        def tieline_router_drivers():
            yield
            raise KeyError("after")

        @tieline.hookimpl(wrapper=True)
        def tieline_settings_schemas():
            raise ValueError("before")
            yield

        @tieline.hookimpl(wrapper=True)
        def tieline_route_requested(request):
            yield
            raise LookupError("policy table gone")
    """)
    plugins = Plugins()
    with caplog.at_level(logging.ERROR):
        drivers = plugins.drivers()
        schemas = plugins.settings_schemas()
        reason = plugins.route_requested(REQUEST)
    assert drivers["simulator"][0] == "simulator"
    assert schemas["thirdparty_example"][0] == "thirdparty_example"
    assert reason == "policy plugin 'bad_wrappers' failed: LookupError: policy table gone"
    assert "plugin 'bad_wrappers': hook tieline_router_drivers raised KeyError: 'after'" in (
        caplog.text)
    assert "plugin 'bad_wrappers': hook tieline_settings_schemas raised ValueError: before" in (
        caplog.text)


def test_a_failing_policy_refuses_and_wrappers_see_it(extra_dists, caplog):
    """A raising firstresult implementation ends the call (the later policies are not
    asked), as pluggy ends a call that raises; a wrapper sees the PluginError."""
    extra_dists("broken-policy", "broken_policy", """
        import tieline

        @tieline.hookimpl(tryfirst=True)
        def tieline_route_requested(request):
            raise ConnectionError("policy server unreachable")
    """)
    extra_dists("policy-audit", "policy_audit", """
        import tieline

        seen = []

        @tieline.hookimpl
        def tieline_route_requested(request):
            seen.append("asked")

        @tieline.hookimpl(wrapper=True)
        def tieline_route_requested(request):
            try:
                return (yield)
            except tieline.PluginError as exc:
                seen.append(exc.plugin)
                raise
    """)
    plugins = Plugins()
    with caplog.at_level(logging.ERROR):
        reason = plugins.route_requested(REQUEST)
    assert reason == ("policy plugin 'broken_policy' failed: ConnectionError: policy server "
                      "unreachable")
    assert plugins.pm.get_plugin("policy_audit").seen == ["broken_policy"]
    assert caplog.text.count("plugin 'broken_policy': hook tieline_route_requested raised "
                             "ConnectionError: policy server unreachable") == 1


async def test_async_hooks_are_awaited_and_their_failures_isolated(extra_dists, settings_dir,
                                                                   caplog):
    """Hooks may hand back awaitables: the node awaits them in turn; one that raises is
    logged by plugin and the other observers still see every event."""
    extra_dists("async-observer", "async_observer", """
        import asyncio
        import tieline

        log = []

        @tieline.hookimpl
        async def tieline_node_started(node):
            await asyncio.sleep(0)
            log.append("started")

        @tieline.hookimpl
        async def tieline_event(event):
            await asyncio.sleep(0)
            if isinstance(event, tieline.DeviceOnline):
                raise RuntimeError("audit database locked")
            log.append(type(event).__name__)

        @tieline.hookimpl
        def tieline_node_stopping(node):
            async def close():
                await asyncio.sleep(0)
                log.append("stopped")
            return close()
    """)
    extra_dists("sync-observer", "sync_observer", """
        import tieline

        events = []

        @tieline.hookimpl
        def tieline_event(event):
            events.append(type(event).__name__)
    """)
    folder = settings_dir({"tieline.json": SIMPLE_SETTINGS})
    with caplog.at_level(logging.ERROR):
        async with running_node(folder) as node:
            await node.routing.route(Principal("alice", Permission.ROUTE), "r", 1, 2)
            sync = node.plugins.pm.get_plugin("sync_observer")
            async with asyncio.timeout(5):
                while "CrosspointsChanged" not in sync.events:
                    await asyncio.sleep(0.01)
    log = node.plugins.pm.get_plugin("async_observer").log
    assert log[0] == "started" and log[-1] == "stopped" and "CrosspointsChanged" in log
    assert "DeviceOnline" in sync.events and "DeviceOnline" not in log
    assert ("plugin 'async_observer': hook tieline_event raised RuntimeError: audit database "
            "locked") in caplog.text
