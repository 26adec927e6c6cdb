"""``tieline plugin new``: the template renderer (core/kit/template.py) and its command."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tieline.cli import main
from tieline.kit.template import KINDS, PluginKitError, new_plugin, render, template


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_driver_template_renders_names_into_paths_and_contents(tmp_path):
    folder = new_plugin("acme_matrix", "driver", tmp_path)
    assert folder == tmp_path / "tieline-acme-matrix"
    assert files_of(folder) == [
        ".gitignore", "README.md", "acme_matrix/__init__.py", "acme_matrix/codec.py",
        "acme_matrix/driver.py", "acme_matrix/emulator.py", "pyproject.toml",
        "tests/test_codec.py", "tests/test_driver.py"]
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "cookiecutter" not in text, path
            if path.suffix == ".py":
                ast.parse(text, str(path))  # valid Python once rendered
    pyproject = (folder / "pyproject.toml").read_text()
    assert 'name = "tieline-acme-matrix"' in pyproject
    assert '[project.entry-points.tieline]\nacme_matrix = "acme_matrix"' in pyproject
    assert 'name = "acme_matrix"' in (folder / "acme_matrix" / "driver.py").read_text()
    assert "from acme_matrix.codec import" in (folder / "tests" / "test_codec.py").read_text()


def test_values_override_the_defaults(tmp_path):
    folder = new_plugin("studio_x", output=tmp_path,
                        values={"project_name": "studio-x-driver", "version": "2.0.1",
                                "author": "Ada"})
    assert folder.name == "studio-x-driver"
    pyproject = (folder / "pyproject.toml").read_text()
    assert 'version = "2.0.1"' in pyproject and '{ name = "Ada" }' in pyproject
    assert (folder / "studio_x" / "codec.py").exists()
    with pytest.raises(PluginKitError, match="the template has no key.*colour"):
        new_plugin("studio_y", output=tmp_path, values={"colour": "red"})


@pytest.mark.parametrize("values,words", [
    ({"author": 'Ada "the" L.'}, "without double quotes"),
    ({"description": "a\nb"}, "printable text"),
    ({"author": "C:\\x"}, "backslashes"),
    ({"author": "{{cookiecutter.version}}"}, "braces"),
    ({"project_name": "../outside"}, "not a folder name"),
    ({"project_name": ".."}, "not a folder name"),
    ({"plugin_name": "other"}, "plugin_name is the plugin's NAME"),
])
def test_values_that_would_break_the_files_are_refused(tmp_path, values, words):
    (tmp_path / "out").mkdir()
    with pytest.raises(PluginKitError, match=words):
        new_plugin("studio_z", output=tmp_path / "out", values=values)
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name", ["Acme", "acme-matrix", "1acme", "_acme", "", "class",
                                  "acme matrix", "tieline", "acme.matrix"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(PluginKitError, match="plugin name"):
        new_plugin(name, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,words", [
    ("class", "is a Python keyword"),
    ("videohub", "is taken by the installed plugin of 'tieline'"),
    ("thirdparty_example", "is taken by the installed plugin of 'tieline-thirdparty-example'"),
])
def test_keywords_and_installed_plugin_names_are_refused(tmp_path, name, words):
    with pytest.raises(PluginKitError, match=words):
        new_plugin(name, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path):
    folder = new_plugin("acme_matrix", output=tmp_path)
    (folder / "acme_matrix" / "codec.py").write_text("# mine\n")
    with pytest.raises(PluginKitError, match="exists already; nothing was written"):
        new_plugin("acme_matrix", output=tmp_path)
    assert (folder / "acme_matrix" / "codec.py").read_text() == "# mine\n"


def test_only_plain_substitutions_are_rendered(tmp_path):
    source = tmp_path / "tpl"
    (source / "{{cookiecutter.project}}" / "{{ cookiecutter.pkg }}").mkdir(parents=True)
    (source / "cookiecutter.json").write_text(json.dumps({
        "pkg": "my_pkg", "project": "{{ cookiecutter.pkg.replace('_', '-') }}"}))
    (source / "{{cookiecutter.project}}" / "{{ cookiecutter.pkg }}" / "x.txt").write_text(
        "{{cookiecutter.pkg}} / {{ cookiecutter.project }}\n")
    out = tmp_path / "out"
    out.mkdir()
    folder = render(source, out, {"pkg": "a_b"})
    assert (folder / "a_b" / "x.txt").read_text() == "a_b / a-b\n"
    (source / "{{cookiecutter.project}}" / "y.txt").write_text("{{ cookiecutter.nope }}")
    with pytest.raises(PluginKitError, match="cookiecutter.json has no 'nope'"):
        render(source, tmp_path / "out2", {})
    (source / "{{cookiecutter.project}}" / "y.txt").write_text(
        "{% if cookiecutter.pkg %}x{% endif %}{{ cookiecutter.pkg|upper }}")
    (tmp_path / "out3").mkdir()
    with pytest.raises(PluginKitError, match="other than a plain"):
        render(source, tmp_path / "out3", {})
    assert list((tmp_path / "out3").iterdir()) == []  # nothing half-written


def test_kinds_and_template_folders_agree():
    assert KINDS == ("driver", "api", "strategy")
    for kind in KINDS:
        assert template(kind).joinpath("cookiecutter.json").is_file()
    with pytest.raises(PluginKitError, match="no plugin template of kind 'panel'"):
        template("panel")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_to_an_installable_package(tmp_path, kind):
    folder = new_plugin("acme_thing", kind, tmp_path)
    names = files_of(folder)
    assert {"README.md", "pyproject.toml", ".gitignore", "acme_thing/__init__.py"} <= set(names)
    assert any(n.startswith("tests/test_") for n in names)
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "cookiecutter" not in text, path
            if path.suffix == ".py":
                ast.parse(text, str(path))
    pyproject = (folder / "pyproject.toml").read_text()
    assert '[project.entry-points.tieline]\nacme_thing = "acme_thing"' in pyproject
    init = ast.parse((folder / "acme_thing" / "__init__.py").read_text())
    hooks = [f.name for f in init.body if isinstance(f, ast.FunctionDef)]
    assert hooks and all(h.startswith("tieline_") for h in hooks)  # hookimpls only


def test_api_template_files(tmp_path):
    folder = new_plugin("acme_panel", "api", tmp_path)
    assert files_of(folder) == [
        ".gitignore", "README.md", "acme_panel/__init__.py", "acme_panel/codec.py",
        "acme_panel/server.py", "pyproject.toml", "tests/test_api.py", "tests/test_codec.py"]
    assert 'name = "acme_panel"' in (folder / "acme_panel" / "server.py").read_text()
    assert '"type": "acme_panel"' in (folder / "README.md").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_cookiecutter_renders_the_same_files(tmp_path, kind):
    """The templates are real cookiecutter templates: cookiecutter itself writes byte for
    byte what ``tieline plugin new`` writes."""
    from cookiecutter.main import cookiecutter

    (tmp_path / "cc").mkdir()
    (tmp_path / "tl").mkdir()
    theirs = Path(cookiecutter(str(template(kind)), no_input=True, output_dir=str(tmp_path / "cc"),
                               extra_context={"plugin_name": "acme_thing", "author": "Ada"}))
    ours = new_plugin("acme_thing", kind, tmp_path / "tl", values={"author": "Ada"})
    assert theirs.name == ours.name == "tieline-acme-thing"
    assert files_of(theirs) == files_of(ours)
    for name in files_of(ours):
        assert (theirs / name).read_bytes() == (ours / name).read_bytes(), name


def test_strategy_template_files(tmp_path):
    folder = new_plugin("acme_lock", "strategy", tmp_path)
    assert files_of(folder) == [
        ".gitignore", "README.md", "acme_lock/__init__.py", "acme_lock/record.py",
        "acme_lock/strategy.py", "pyproject.toml", "tests/test_record.py",
        "tests/test_strategy.py"]
    assert 'name = "acme_lock"' in (folder / "acme_lock" / "strategy.py").read_text()
    assert '"strategy": "acme_lock"' in (folder / "README.md").read_text()


def test_plugin_new_command(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["plugin", "new", "acme_matrix"])
    assert result.exit_code == 0, result.output
    assert "wrote the driver plugin 'acme_matrix' to tieline-acme-matrix" in result.output
    assert "pip install -e" in result.output and "tieline emulate acme_matrix" in result.output
    assert (tmp_path / "tieline-acme-matrix" / "acme_matrix" / "driver.py").exists()
    again = runner.invoke(main, ["plugin", "new", "acme_matrix"])
    assert again.exit_code == 1 and "exists already" in again.output
    bad = runner.invoke(main, ["plugin", "new", "Acme-Matrix", "--output", "never"])
    assert bad.exit_code == 1 and "not a lower-case Python identifier" in bad.output
    assert not (tmp_path / "never").exists()
    kind = runner.invoke(main, ["plugin", "new", "x", "--kind", "panel"])
    assert kind.exit_code == 2 and "'panel' is not one of 'driver', 'api', 'strategy'" in \
        kind.output
    strategy = runner.invoke(main, ["plugin", "new", "acme_lock", "--kind", "strategy"])
    assert strategy.exit_code == 0, strategy.output
    assert "wrote the strategy plugin 'acme_lock'" in strategy.output
    assert 'a failover block with "strategy": "acme_lock"' in strategy.output
    assert "tieline emulate" not in strategy.output
    assert (tmp_path / "tieline-acme-lock" / "acme_lock" / "strategy.py").exists()
    valued = runner.invoke(main, ["plugin", "new", "acme_vals", "--set", "author=Ada L.",
                                  "--set", "version=2.1.0"])
    assert valued.exit_code == 0, valued.output
    pyproject = (tmp_path / "tieline-acme-vals" / "pyproject.toml").read_text()
    assert 'version = "2.1.0"' in pyproject and '{ name = "Ada L." }' in pyproject
    malformed = runner.invoke(main, ["plugin", "new", "acme_vals2", "--set", "author"])
    assert malformed.exit_code == 2 and "write KEY=VALUE" in malformed.output
    unknown = runner.invoke(main, ["plugin", "new", "acme_vals3", "--set", "colour=red"])
    assert unknown.exit_code == 1 and "the template has no key(s) colour" in unknown.output
    other = tmp_path / "elsewhere" / "deeper"  # created
    moved = runner.invoke(main, ["plugin", "new", "acme_matrix", "--output", str(other)])
    assert moved.exit_code == 0, moved.output
    assert (other / "tieline-acme-matrix" / "pyproject.toml").exists()
