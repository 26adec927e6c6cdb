"""The plugin manager: entry points, failure isolation, disabling, check_pending."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tieline.cli import main
from tieline.errors import SettingsError
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
