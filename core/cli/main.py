"""The ``tieline`` command: its group, its options, and the commands that run on this
machine (the commands that talk to a running node are in :mod:`.remote`).

Exit status: 0 done; 1 the request was refused or the settings are invalid (the message
says why); 2 usage error; 3 no server could be reached.

Start-up: this module imports only click and what the help texts need. Each command
imports what it uses when it runs (the node, the client, asyncio, the plugins), so that
``tieline --help`` and ``tieline status`` do not load the device, transport and plugin
machinery; tests/unit/cli/test_imports.py holds that.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..kit.template import KINDS as PLUGIN_KINDS

#: the usual port of the failover peer link
DEFAULT_PEER_PORT = 7401
SERVER_HELP = "Server URL(s), comma-separated, tried in order."
DEFAULT_SERVER = "ws://127.0.0.1:8181"


def _settings_folder(settings: str | None) -> Path | None:
    value = settings or os.environ.get("TIELINE_SETTINGS")
    return Path(value) if value else None


settings_option = click.option(
    "--settings", "settings", metavar="DIR", envvar="TIELINE_SETTINGS",
    help="Settings folder (default: $TIELINE_SETTINGS).",
)
server_option = click.option(
    "--server", "server", metavar="URL[,URL…]", envvar="TIELINE_SERVER", default=DEFAULT_SERVER,
    show_default=True, help=SERVER_HELP,
)
token_option = click.option(
    "--token", "token", envvar="TIELINE_TOKEN", metavar="TOKEN",
    help="Authentication token (default: $TIELINE_TOKEN).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(__version__, prog_name="tieline")
def main() -> None:
    """tieline: control broadcast routers, and keep control alive when a controller fails."""
    _quiet_dependency_warnings()


def _quiet_dependency_warnings() -> None:
    """Keep the ``CryptographyDeprecationWarning`` lines that asyncssh's modules raise when
    they are imported (DSA in type hints, with recent cryptography releases) off the
    terminal of every command: the failover plugins import asyncssh when plugins load.
    Only that category from asyncssh's modules, and only when no ``-W`` option or
    ``PYTHONWARNINGS`` decides."""
    if sys.warnoptions:
        return
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # no cryptography: no asyncssh either, nothing to filter
        return
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                            module=r"asyncssh\.")


# -- run ---------------------------------------------------------------------------------------


@main.command()
@settings_option
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def run(settings: str | None, log_level: str) -> None:
    """Run a node. Without settings, run the demo (a simulated 32x32 router).

    SIGHUP re-reads the settings: users, salvos and labels apply at once.
    """
    import asyncio
    import gc
    import signal

    from ..ops.demo import ensure_demo
    from ..errors import SettingsError, TielineError
    from ..node import build_node

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if log_level.upper() != "DEBUG":  # one line per reconnect attempt otherwise
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    folder = _settings_folder(settings)
    if folder is None:
        folder = ensure_demo()
        click.echo(f"tieline: no --settings given; running the demo from {folder}")
    try:
        node = build_node(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except TielineError as exc:  # the node cannot run here (a failover action's preflight)
        click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)

    def ready(node: Any) -> None:  # the node tells a service manager once this returns
        gc.freeze()  # start-up objects leave the collector's generations: shorter full GCs
        for api in node.apis:
            page = api.page_url()
            click.echo(f"tieline: node '{node.settings.node_name}' serving {api.describe()} "
                       f"(settings: {folder})" + (f"; open {page} in a browser" if page else ""))
        sys.stdout.flush()

    def reload() -> None:
        try:
            node.reload()
        except SettingsError as exc:
            logging.getLogger("tieline").error("settings not reloaded (the running ones "
                                               "stay): %s", exc)

    async def serve() -> None:  # mDNS and systemd notify: the node does both (its settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        loop.add_signal_handler(signal.SIGHUP, reload)
        await node.run(ready)

    try:
        asyncio.run(serve())
    except* TielineError as group:
        for exc in group.exceptions:
            click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo("tieline: stopped")


# -- validate and plugins ----------------------------------------------------------------------


@main.command()
@settings_option
def validate(settings: str | None) -> None:
    """Check a settings folder without starting anything.

    It refuses exactly what `tieline run` refuses in the settings (the same checks, every
    file they name loaded); run also needs what only the machine it runs on can give:
    addresses to listen on, free ports, privileges, serial devices.
    """
    from ..errors import SettingsError
    from ..node import check_settings

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        loaded, _ = check_settings(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(
        f"{folder}: valid ({len(loaded.routers)} router(s), {len(loaded.apis)} API(s), "
        f"{len(loaded.salvos)} salvo(s), {len(loaded.users)} user(s))"
    )


@main.command()
@settings_option
@json_option
def plugins(settings: str | None, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, hooks."""
    from ..plugin_manager import Plugins
    from ..settings.loader import read_disabled_plugins

    folder = _settings_folder(settings)
    logging.basicConfig(level="CRITICAL")
    manager = Plugins(disabled=read_disabled_plugins(folder) if folder else ())
    infos = sorted(manager.infos.values(), key=lambda i: i.name)
    if as_json:
        click.echo(json.dumps({"plugins": [i.to_dict() for i in infos]}, indent=2))
        return
    for info in infos:
        line = f"{info.name:<20} {info.distribution} {info.version}  [{info.status}]"
        click.echo(line)
        if info.hooks:
            click.echo(f"{'':<20} hooks: {', '.join(info.hooks)}")
        if info.error:
            click.echo(f"{'':<20} error: {info.error}")


# -- emulate -----------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--listen", metavar="HOST:PORT", help="Serve controllers over TCP here.")
@click.option("--serial", "serial_device", metavar="DEVICE",
              help="Serve one controller on this serial line (protocols that have one).")
@click.option("--inputs", type=click.IntRange(1, 65536), default=16, show_default=True)
@click.option("--outputs", type=click.IntRange(1, 65536), default=16, show_default=True)
@click.option("--levels", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--command-log", "command_log", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append every command received to FILE, one JSON line each.")
@click.option("--max-controllers", type=click.IntRange(1), metavar="N",
              help="Disconnect TCP controllers beyond N at once (a device or serial-to-IP "
                   "server that takes one connection: --max-controllers 1).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def emulate(name: str, listen: str | None, serial_device: str | None, inputs: int,
            outputs: int, levels: int, command_log: str | None, max_controllers: int | None,
            log_level: str) -> None:
    """Run the device emulator NAME (see `tieline plugins`): a router without hardware."""
    import asyncio
    import signal

    from ..errors import TielineError
    from ..plugin_manager import Plugins
    from ..transports import SerialTransport, parse_hostport

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    emulators = Plugins().emulators()
    if name not in emulators:
        raise click.UsageError(f"no emulator '{name}'; installed: {', '.join(sorted(emulators))}")
    cls = emulators[name][1]
    if not listen and not serial_device:
        raise click.UsageError("give --listen HOST:PORT and/or --serial DEVICE")
    if serial_device and not cls.serial:
        raise click.UsageError(f"the {name} protocol has no serial line")
    try:
        address = parse_hostport(listen) if listen else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    async def serve() -> None:
        device = cls.from_cli(inputs=inputs, outputs=outputs, levels=levels)
        device.max_controllers = max_controllers
        if command_log:
            device.command_log_file = open(command_log, "a", encoding="utf-8")  # noqa: SIM115
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        try:
            await device.start()
            if address is not None:
                server = await device.serve_tcp(*address)
                host, port = server.sockets[0].getsockname()[:2]
                click.echo(f"tieline: emulating {name} ({inputs}x{outputs}, {levels} level(s)) "
                           f"on tcp://{host}:{port}")
            if serial_device:
                stream = await SerialTransport(
                    {"type": "serial", "device": serial_device},
                    defaults=getattr(cls, "serial_defaults", {})).open()
                device.serve_stream(stream, serial_device)
                click.echo(f"tieline: emulating {name} on {serial_device}")
            sys.stdout.flush()
            await device.serve_forever()
        except asyncio.CancelledError:
            pass
        finally:
            await device.close()
            if device.command_log_file is not None:
                device.command_log_file.close()

    try:
        asyncio.run(serve())
    except* (OSError, TielineError, ValueError) as group:
        for exc in group.exceptions:
            click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo("tieline: stopped")


# -- plugin ------------------------------------------------------------------------------------


@main.group()
def plugin() -> None:
    """Write your own plugin: a driver, client API or failover strategy package."""


@plugin.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(PLUGIN_KINDS), default="driver", show_default=True,
              help="What the plugin provides.")
@click.option("--output", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."),
              help="Write the project folder here, created if needed (default: here).")
@click.option("--set", "values", metavar="KEY=VALUE", multiple=True,
              help="A template value (author, version, description, project_name …); "
                   "repeatable.")
def plugin_new(name: str, kind: str, output: Path, values: tuple[str, ...]) -> None:
    """Render a new plugin package NAME (a lower-case Python name, e.g. acme_matrix)."""
    from ..kit.template import PluginKitError, check_name, new_plugin

    given: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--set {item}: write KEY=VALUE, e.g. --set author='Ada L.'")
        given[key.strip()] = value
    try:
        check_name(name)  # before --output is created
        output.mkdir(parents=True, exist_ok=True)
        folder = new_plugin(name, kind, output, values=given)
    except OSError as exc:
        click.echo(f"tieline: cannot write the plugin into {output}: {exc.strerror or exc}"
                   f"{f' ({exc.filename})' if exc.filename else ''}", err=True)
        sys.exit(1)
    except PluginKitError as exc:
        click.echo(f"tieline: {exc}", err=True)
        sys.exit(1)
    click.echo(f"tieline: wrote the {kind} plugin '{name}' to {folder}")
    click.echo("next:")
    click.echo(f"  cd {folder}")
    click.echo("  pip install -e '.[test]'        # into the environment tieline runs in")
    click.echo(f"  pytest                          # its tests: {_KIND_TESTS[kind]}")
    click.echo(f"  tieline plugins                 # lists '{name}'")
    if kind == "driver":
        click.echo(f"  tieline emulate {name} --listen 127.0.0.1:7700   "
                   "# a device without hardware")
    click.echo(f"  then {_KIND_USE[kind].format(name=name)} (see README.md)")


_KIND_TESTS = {
    "driver": "the driver against its emulator",
    "api": "the API in a real node, over TCP",
    "strategy": "real nodes on one lock file, one killed",
}
_KIND_USE = {
    "driver": 'a router block with "driver": "{name}"',
    "api": 'an apis entry with "type": "{name}"',
    "strategy": 'a failover block with "strategy": "{name}"',
}


# -- service and discover ----------------------------------------------------------------------


@main.group()
def service() -> None:
    """Run a node as a systemd service."""


@service.command("install")
@settings_option
@click.option("--user", metavar="USER",
              help="Run the node as this user (default: $SUDO_USER under sudo, else you).")
@click.option("--name", metavar="NAME",
              help="The unit is tieline-NAME.service (default: the node's name).")
@click.option("--output", metavar="PATH", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the unit here (default: /etc/systemd/system/tieline-NAME.service).")
def service_install(settings: str | None, user: str | None, name: str | None,
                    output: Path | None) -> None:
    """Write a systemd unit that runs `tieline run --settings DIR` (systemctl is not run)."""
    import getpass
    import pwd

    from ..errors import SettingsError
    from ..node import check_settings
    from ..ops.systemd import (SYSTEMD_FOLDER, check_unit_name, tieline_executable, unit_file,
                          write_unit)

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    folder = folder.absolute()
    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        loaded, plugins = check_settings(folder)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        click.echo("tieline: no unit written: a service would not start with these settings; "
                   "fix them (tieline validate --settings DIR) and run this again", err=True)
        sys.exit(1)
    name = name or loaded.node_name
    user = user or os.environ.get("SUDO_USER") or getpass.getuser()
    try:
        actions = plugins.failover_actions()  # what they need to run as USER, not root
        needs = {cap: f"{why} (failover.{key})" for key in (loaded.failover or {})
                 if key in actions for cap, why in actions[key][1].capabilities.items()}
        text = unit_file(folder, command=tieline_executable(), user=user,
                         name=check_unit_name(name), capabilities=needs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    unit = f"tieline-{name}.service"
    path = output or SYSTEMD_FOLDER / unit
    try:
        write_unit(path, text)
    except OSError as exc:
        click.echo(f"tieline: cannot write {path}: {exc.strerror or exc}; run it as root "
                   "(sudo) or give --output PATH", err=True)
        sys.exit(1)
    click.echo(f"tieline: wrote {path}: node '{loaded.node_name}' from {folder}, as user {user}")
    if not user.isdigit():
        try:
            pwd.getpwnam(user)
        except KeyError:
            click.echo(f"tieline: note: there is no user '{user}' on this machine yet; create "
                       "it, and let it read and write the settings folder, before starting")
    if folder.is_relative_to("/tmp") or folder.is_relative_to("/var/tmp"):
        click.echo(f"tieline: note: the unit has PrivateTmp=yes: the service sees its own "
                   f"empty /tmp, not {folder}; move the settings folder (e.g. to /srv)")
    click.echo("next:")
    if path.absolute().parent != SYSTEMD_FOLDER:
        click.echo(f"  sudo cp {path} {SYSTEMD_FOLDER / unit}")
    click.echo("  sudo systemctl daemon-reload")
    click.echo(f"  sudo systemctl enable --now {unit}")
    click.echo(f"  systemctl status {unit}    # and: journalctl -u {unit} -f")


@main.command()
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for answers.")
@click.option("--interface", "interfaces", metavar="ADDRESS", multiple=True,
              help="Ask only on the interface with this IPv4 address (repeatable; default: "
                   "every interface).")
@json_option
def discover(timeout: float, interfaces: tuple[str, ...], as_json: bool) -> None:
    """List the tieline nodes on the local network (mDNS)."""
    import asyncio

    from ..ops.discovery import browse, parse_interfaces
    from ..failover import NodeStatus, Role, State

    logging.basicConfig(level="ERROR", stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        chosen = parse_interfaces(",".join(interfaces))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        nodes = asyncio.run(browse(timeout, chosen))
    except (OSError, RuntimeError) as exc:
        click.echo(f"tieline: cannot send mDNS queries: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"nodes": nodes}))
        return
    if not nodes:
        click.echo(f"no tieline node answered within {timeout:g} s")
    for n in nodes:
        try:
            text = NodeStatus(n["node"], Role(n["role"]), State(n["state"])).text
        except ValueError:  # a newer tieline's role or state
            text = "status unknown"
        click.echo(f"{n['node']}: {text} (role {n['role']}, state {n['state']}, "
                   f"epoch {n['epoch']})")
        click.echo(f"  host {n['host']} {', '.join(n['addresses'])}")
        for url in n["apis"]:
            click.echo(f"  api {url}")
        if n["failover"]:
            click.echo(f"  failover {n['failover']}")


# -- users -------------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage the users file of a settings folder."""


def _users_file(folder: Path) -> tuple[Path, dict[str, Any]]:
    from ..settings.jsonfile import JsonFileError, load_json

    try:
        main_settings = load_json(folder / "tieline.json").data
    except JsonFileError as exc:
        raise click.ClickException(str(exc)) from exc
    name = (main_settings.get("auth") or {}).get("users_file")
    if not name:
        raise click.ClickException(
            f"{folder / 'tieline.json'} has no auth.users_file; add "
            '"auth": {"users_file": "users.json"} first')
    path = folder / name
    if not path.exists():
        return path, {"users": []}
    try:
        return path, load_json(path).data
    except JsonFileError as exc:
        raise click.ClickException(str(exc)) from exc


def _write_users(path: Path, data: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from ..settings.jsonfile import write_json_atomic
    from ..settings.loader import core_schema

    def check(value: object) -> None:
        errors = list(Draft202012Validator(core_schema("users.schema.json")).iter_errors(value))
        if errors:
            raise click.ClickException(f"refusing to write an invalid users file: {errors[0].message}")

    write_json_atomic(path, data, validate=check, new_mode=0o600)


@users.command("add")
@click.argument("name")
@click.option("--level", type=click.IntRange(1, 3), required=True,
              help="1 watch, 2 route, 3 administer.")
@settings_option
def users_add(name: str, level: int, settings: str | None) -> None:
    """Add a user (or give an existing one a new token) and print the token once."""
    from ..auth import hash_token, new_token

    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    path, data = _users_file(folder)
    token = new_token()
    entries = [u for u in data.get("users", []) if u.get("name") != name]
    entries.append({"name": name, "level": level, "token_sha256": hash_token(token)})
    _write_users(path, {"users": entries})
    click.echo(token)


@users.command("remove")
@click.argument("name")
@settings_option
def users_remove(name: str, settings: str | None) -> None:
    """Remove a user."""
    folder = _settings_folder(settings)
    if folder is None:
        raise click.UsageError("give --settings DIR or set TIELINE_SETTINGS")
    path, data = _users_file(folder)
    entries = [u for u in data.get("users", []) if u.get("name") != name]
    if len(entries) == len(data.get("users", [])):
        raise click.ClickException(f"no user '{name}' in {path}")
    _write_users(path, {"users": entries})


# -- keys --------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the cluster key that authenticates the nodes of a cluster to each other."""


@keys.command("generate")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="cluster.key", show_default=True,
              help="File name of the key (the failover block's \"key\").")
@click.option("--force", is_flag=True,
              help="Replace an existing key (then copy the new one to every node).")
def keys_generate(folder: Path, name: str, force: bool) -> None:
    """Make a new cluster key in DIR (NAME, mode 0600, and NAME.pub); copy it to every node."""
    from ..errors import TielineError
    from ..cluster.peerlink import generate_cluster_key, load_cluster_key

    try:
        path = generate_cluster_key(folder, name, force=force)
        fingerprint = load_cluster_key(path).get_fingerprint()
    except TielineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"tieline: cluster key written to {path} (and {path.name}.pub), "
               f"fingerprint {fingerprint}")
    click.echo("Copy it (keeping mode 0600) into the settings folder of every node of the "
               "cluster.")
