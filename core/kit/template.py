"""Render the plugin templates: ``tieline plugin new NAME [--kind driver|api|strategy]``.

A template is a cookiecutter template (``cookiecutter.json`` plus one folder named
``{{cookiecutter.project_name}}``) shipped inside tieline as package data under
``tieline.plugin_template/<kind>/``. It uses only substitutions, so that cookiecutter
itself and this renderer produce the same files:

* ``{{cookiecutter.KEY}}`` (spaces inside the braces allowed), and
* ``{{cookiecutter.KEY.replace('a', 'b')}}``, the one string method the templates use.

Substitutions apply to file contents and to file and folder names. The values come from
``cookiecutter.json``, whose defaults may themselves use substitutions of earlier keys,
overridden by the values given.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TielineError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# importlib.metadata and importlib.resources are imported where used: the tieline command
# imports this module for KINDS (its --kind choices) at every start

#: the template kinds (``--kind``): a router driver, a client API, a failover strategy.
KINDS = ("driver", "api", "strategy")

_EXPRESSION = re.compile(
    r"\{\{\s*cookiecutter\.([A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\.replace\(\s*'([^'\\]*)'\s*,\s*'([^'\\]*)'\s*\))?\s*\}\}"
)
_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: a value given for a template key: it goes into TOML and Python strings and Markdown
_VALUE = re.compile(r"(?!.*\{\{)[^\x00-\x1f\x7f\"\\]*")
_SKIPPED = {"__pycache__", ".pytest_cache"}


class PluginKitError(TielineError):
    """A plugin cannot be rendered (a bad name, an existing folder, a broken template)."""


def check_name(name: str) -> str:
    """``name`` if it can name a new plugin (a Python package name that no installed
    plugin uses), else raise PluginKitError."""
    if keyword.iskeyword(name):
        raise PluginKitError(f"plugin name {name!r} is a Python keyword and cannot name a "
                             "package; choose another, e.g. 'acme_matrix'")
    if not _NAME.fullmatch(name):
        raise PluginKitError(
            f"plugin name {name!r} is not a lower-case Python identifier; use letters, digits "
            "and underscores, starting with a letter, e.g. 'acme_matrix'"
        )
    if name in {"tieline", "tests", "test"}:
        raise PluginKitError(f"plugin name {name!r} is taken; choose another, e.g. 'acme_matrix'")
    from importlib.metadata import entry_points

    for ep in entry_points(group="tieline"):
        if ep.name == name:
            owner = ep.dist.name if ep.dist else "another distribution"
            raise PluginKitError(f"plugin name {name!r} is taken by the installed plugin of "
                                 f"'{owner}' (tieline plugins lists it); choose another, "
                                 "e.g. 'acme_matrix'")
    return name


def template(kind: str) -> Traversable:
    """The template folder of ``kind`` inside the installed tieline."""
    if kind not in KINDS:
        raise PluginKitError(f"no plugin template of kind {kind!r}; kinds: {', '.join(KINDS)}")
    from importlib.resources import files

    return files("tieline.plugin_template") / kind


def substitute(text: str, context: Mapping[str, str], where: str = "text") -> str:
    """Replace every ``{{cookiecutter.KEY}}`` in ``text``; an unknown key is an error."""

    def replace(match: re.Match[str]) -> str:
        key, old, new = match.groups()
        if key not in context:
            raise PluginKitError(f"{where}: the template uses {{{{cookiecutter.{key}}}}} but "
                                 f"cookiecutter.json has no {key!r}")
        value = str(context[key])
        return value.replace(old, new) if old is not None else value

    result = _EXPRESSION.sub(replace, text)
    if "{{" in result and "cookiecutter" in result:
        raise PluginKitError(f"{where}: a template expression other than a plain "
                             "{{cookiecutter.KEY}} substitution; keep templates to those")
    return result


def context_for(folder: Traversable, values: Mapping[str, str]) -> dict[str, str]:
    """The values of every key: ``cookiecutter.json`` defaults (rendered in order) updated
    with ``values``; a key ``values`` has that the template does not is an error."""
    defaults = json.loads(folder.joinpath("cookiecutter.json").read_text(encoding="utf-8"))
    unknown = set(values) - set(defaults)
    if unknown:
        raise PluginKitError(f"the template has no key(s) {', '.join(sorted(unknown))}; "
                             f"its keys: {', '.join(k for k in defaults if not k.startswith('_'))}")
    context: dict[str, str] = {}
    for key, default in defaults.items():
        if key.startswith("_"):
            continue
        if key in values:
            context[key] = str(values[key])
        else:
            context[key] = substitute(str(default), context, f"cookiecutter.json {key!r}")
    return context


def render(folder: Traversable, destination: Path, values: Mapping[str, str]) -> Path:
    """Render the template ``folder`` into ``destination`` (which must exist).

    :returns: the new project folder.
    :raises PluginKitError: when the project folder exists already (nothing is overwritten)
        or the template is broken.
    """
    context = context_for(folder, values)
    roots = [entry for entry in folder.iterdir() if entry.is_dir() and "{{" in entry.name]
    if len(roots) != 1:
        raise PluginKitError(f"template {folder}: expected one {{{{cookiecutter.…}}}} folder")
    root = roots[0]
    project = substitute(root.name, context, root.name)
    if project in ("", ".", "..") or "/" in project or not project.isprintable():
        raise PluginKitError(f"project_name {project!r} is not a folder name; use letters, "
                             "digits, dashes and underscores, e.g. 'tieline-acme-matrix'")
    target = Path(destination) / project
    if target.exists():
        raise PluginKitError(f"{target} exists already; nothing was written. Remove it or "
                             "render elsewhere (--output DIR)")
    planned: list[tuple[Path, str | None]] = []  # every file rendered before one is written
    _plan(root, target, context, planned)
    for path, text in planned:
        if text is None:
            path.mkdir(parents=True)
        else:
            path.write_text(text, encoding="utf-8")
    return target


def _plan(source: Traversable, target: Path, context: Mapping[str, str],
          planned: list[tuple[Path, str | None]]) -> None:
    planned.append((target, None))
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name in _SKIPPED or entry.name.endswith(".pyc"):
            continue
        name = substitute(entry.name, context, entry.name)
        if entry.is_dir():
            _plan(entry, target / name, context, planned)
        else:
            text = entry.read_text(encoding="utf-8")
            planned.append((target / name, substitute(text, context, str(entry))))


def new_plugin(name: str, kind: str = "driver", output: Path | str = ".",
               values: Mapping[str, str] | None = None) -> Path:
    """Render the ``kind`` template for plugin ``name`` into the folder ``output``.

    :param name: the plugin's Python package and entry point name (``acme_matrix``); the
        distribution is ``tieline-acme-matrix`` unless ``values`` says otherwise.
    :returns: the new project folder.
    """
    check_name(name)
    values = dict(values or {})
    if values.get("plugin_name", name) != name:
        raise PluginKitError(f"plugin_name is the plugin's NAME ({name!r}); do not set it "
                             "apart")
    for key, value in values.items():
        if not _VALUE.fullmatch(value):
            raise PluginKitError(
                f"value of {key!r} ({value!r}) cannot go into the files: use printable text "
                "without double quotes, backslashes or braces '{{'")
    return render(template(kind), Path(output), {**values, "plugin_name": name})
